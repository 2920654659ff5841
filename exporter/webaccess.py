"""Who may connect, as `--web.config.file` says (exporter.webconfig loads and checks it): the
live TLS context, re-read when a certificate file changes, and basic auth against bcrypt."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import ssl
import threading
import time
from collections import OrderedDict

from exporter.webconfig import TLSConfig, WebConfigError


class TLSContextHolder:
    """The SSLContext for new connections; rebuilt when a certificate file changes.

    Checked at most every `interval` seconds (a few stat calls). A renewed certificate
    (cert-manager, certbot) is used from the next connection on; a broken one is logged by
    the caller and the last good context stays.
    """

    def __init__(self, config: TLSConfig, interval: float = 5.0) -> None:
        self.config = config
        self.interval = interval
        self._lock = threading.Lock()
        self._ctx = config.context()
        self._sig = self._signature()
        self._checked = time.monotonic()
        self.last_error = ""

    def _signature(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for f in self.config.files():
            try:
                st = os.stat(f)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((0, 0, 0))
        return tuple(out)

    def get(self) -> tuple[ssl.SSLContext, str]:
        """The context, and an error when a reload failed just now ("" otherwise)."""
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self.interval:
                return self._ctx, ""
            self._checked = now
            sig = self._signature()
            if sig == self._sig:
                return self._ctx, ""
            self._sig = sig
            try:
                self._ctx = self.config.context()
            except WebConfigError as exc:
                self.last_error = str(exc)
                return self._ctx, self.last_error
            self.last_error = ""
            return self._ctx, ""


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes, caching successes briefly.

    bcrypt is slow by design (cost 10 is ~70 ms); Prometheus sends the same credentials
    every scrape. A success is remembered for `ttl` seconds under an HMAC of the user and
    password with a per-process random key: the plain password is never stored, and the
    cache is useless outside this process. Failures are not cached; each costs a bcrypt
    (bounded by --web.max-requests). An unknown user costs a bcrypt too, so response time
    does not tell which user names exist.
    """

    def __init__(self, users: tuple[tuple[str, str], ...], ttl: float = 300.0, size: int = 100) -> None:
        import bcrypt  # a dependency only needed when basic auth is configured

        self._bcrypt = bcrypt
        self._users = {u: h.encode() for u, h in users}
        self._decoy = next(iter(self._users.values())) if self._users else b""
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._size = size
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def credentials(header: str | None) -> tuple[bytes, bytes] | None:
        import base64
        import binascii

        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        user, sep, password = decoded.partition(b":")
        return (user, password) if sep else None

    def check(self, header: str | None) -> bool:
        creds = self.credentials(header)
        if creds is None:
            return False
        user, password = creds
        try:
            name = user.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        hashed = self._users.get(name)
        key = hmac.new(self._key, user + b"\0" + password + b"\0" + (hashed or b""), hashlib.sha256).digest()
        now = time.monotonic()
        with self._lock:
            expires = self._cache.get(key)
            if expires is not None and expires > now:
                self._cache.move_to_end(key)
                return True
        try:
            ok = self._bcrypt.checkpw(password, hashed or self._decoy)
        except ValueError:  # e.g. a password over bcrypt's 72 bytes
            ok = False
        ok = ok and hashed is not None
        if ok:
            with self._lock:
                self._cache[key] = now + self._ttl
                self._cache.move_to_end(key)
                while len(self._cache) > self._size:
                    self._cache.popitem(last=False)
        return ok
