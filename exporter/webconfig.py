"""`--web.config.file`: TLS, basic auth and extra headers, in the exporter-toolkit format.

The file Prometheus users already know (https://github.com/prometheus/exporter-toolkit,
docs/web-configuration.md)::

    tls_server_config:
      cert_file: server.crt            # relative paths: against the config file's dir
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert
      client_ca_file: ca.crt
      min_version: TLS12
    http_server_config:
      headers:
        Strict-Transport-Security: max-age=31536000
    basic_auth_users:
      prometheus: $2b$10$...           # bcrypt

`load()` reads and validates it once, at start, into a frozen `WebConfig` (it builds the TLS
context, so an unreadable or mismatched certificate fails there and then); a bad file raises
`WebConfigError` with one line saying what is wrong. Unlike exporter-toolkit the file is not
re-read on every request; the certificate files are (see `exporter.webaccess.TLSContextHolder`), so a renewed
certificate is picked up without a restart.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass
from typing import Any

import yaml

CLIENT_AUTH_TYPES = (
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
)
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# The headers exporter-toolkit lets a config set, with the values it accepts (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
# $2a$ / $2b$ / $2y$ (htpasswd -B), cost, 22 chars of salt + 31 of hash.
BCRYPT = re.compile(r"\$2[aby]?\$(\d\d)\$[./A-Za-z0-9]{53}")

TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "client_allowed_sans",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
)
HTTP_KEYS = ("headers", "http2")
# Known to exporter-toolkit, refused here rather than silently ignored: each is a security
# setting an operator expects to take effect.
UNSUPPORTED = {
    "rate_limit": "use --web.max-requests to bound concurrent requests",
    "tls_server_config.cert": "put the certificate in a file and use cert_file",
    "tls_server_config.key": "put the key in a file and use key_file",
    "tls_server_config.client_ca": "put the CA in a file and use client_ca_file",
    "tls_server_config.cipher_suites": "OpenSSL's defaults for the TLS versions allowed are used",
    "tls_server_config.curve_preferences": "OpenSSL's default groups are used",
}


class WebConfigError(Exception):
    """A bad web config file; str() is one line saying what is wrong (without the path)."""


@dataclass(frozen=True)
class TLSConfig:
    cert_file: str  # absolute
    key_file: str  # absolute
    client_auth_type: str = "NoClientCert"
    client_ca_file: str = ""  # absolute, or "" for none
    client_allowed_sans: tuple[str, ...] = ()
    min_version: str = "TLS12"
    max_version: str = ""  # "" = the newest the library has
    prefer_server_cipher_suites: bool = True

    @property
    def requires_client_cert(self) -> bool:
        return self.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert")

    def files(self) -> tuple[str, ...]:
        return tuple(f for f in (self.cert_file, self.key_file, self.client_ca_file) if f)

    def context(self) -> ssl.SSLContext:
        """A server-side SSLContext; raises WebConfigError naming the file at fault."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            ctx.minimum_version = TLS_VERSIONS[self.min_version]
            if self.max_version:
                ctx.maximum_version = TLS_VERSIONS[self.max_version]
        except (ValueError, ssl.SSLError) as exc:
            raise WebConfigError(f"tls_server_config: TLS version not available here: {exc}") from None
        if self.prefer_server_cipher_suites:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        for key, path in (("cert_file", self.cert_file), ("key_file", self.key_file)):
            _readable(f"tls_server_config.{key}", path)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_password)
        except ssl.SSLError as exc:
            raise WebConfigError(_chain_error(self.cert_file, self.key_file, exc)) from None
        except (OSError, ValueError, TypeError) as exc:
            raise WebConfigError(_chain_error(self.cert_file, self.key_file, exc)) from None
        if self.client_auth_type in ("NoClientCert", "RequestClientCert"):
            # RequestClientCert asks for a certificate it never verifies or uses: to us that
            # is no client certificate (Python's ssl cannot request one without verifying it).
            ctx.verify_mode = ssl.CERT_NONE
        else:
            _readable("tls_server_config.client_ca_file", self.client_ca_file)
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (ssl.SSLError, OSError, ValueError) as exc:
                raise WebConfigError(
                    f"tls_server_config.client_ca_file {self.client_ca_file}: no PEM CA certificate "
                    f"could be loaded ({_reason(exc)})"
                ) from None
            # VerifyClientCertIfGiven: a certificate is optional, but verified when sent.
            # RequireAnyClientCert is verified too (stricter than Go: see docs/security.md).
            ctx.verify_mode = (
                ssl.CERT_OPTIONAL
                if self.client_auth_type == "VerifyClientCertIfGiven"
                else (ssl.CERT_REQUIRED)
            )
        return ctx

    def peer_allowed(self, peer: dict[str, Any] | None) -> bool:
        """client_allowed_sans: the verified client certificate must carry one of them."""
        if not self.client_allowed_sans:
            return True
        sans = {str(v) for _, v in (peer or {}).get("subjectAltName", ())}
        return any(s in sans for s in self.client_allowed_sans)


@dataclass(frozen=True)
class WebConfig:
    path: str
    tls: TLSConfig | None = None
    headers: tuple[tuple[str, str], ...] = ()
    users: tuple[tuple[str, str], ...] = ()  # (username, bcrypt hash)

    @property
    def auth(self) -> bool:
        return bool(self.users)


def _no_password() -> bytes:
    # An encrypted key must fail to load, not prompt on a terminal.
    return b""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return exc.reason.lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise WebConfigError(f"{key} {path}: {_reason(exc)}") from None


def _chain_error(cert: str, key: str, exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason == "KEY_VALUES_MISMATCH":
        return f"tls_server_config: key_file {key} does not match cert_file {cert}"
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=cert)
    except (ssl.SSLError, OSError, ValueError):
        return f"tls_server_config.cert_file {cert}: not a PEM certificate"
    detail = "" if isinstance(exc, ssl.SSLError) and exc.reason == "PEM_LIB" else f"; {_reason(exc)}"
    return f"tls_server_config.key_file {key}: not a usable PEM private key (unencrypted keys only{detail})"


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebConfigError(f"{where} must be a mapping, not {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise WebConfigError(f"{where}: key {k!r} is not a string")
    return value


def _check_keys(mapping: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in mapping:
        full = f"{where}.{key}" if where else key
        if key in known:
            continue
        if full in UNSUPPORTED:
            raise WebConfigError(f"{full} is not supported by docker-storage-exporter: {UNSUPPORTED[full]}")
        raise WebConfigError(f"unknown key {full!r} (known here: {', '.join(known)})")


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebConfigError(f"{where} must be a string, not {type(value).__name__}")
    return value


def _bool(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise WebConfigError(f"{where} must be true or false")
    return value


def _path(value: Any, where: str, base: str) -> str:
    text = _string(value, where)
    if not text:
        return ""
    return os.path.normpath(os.path.join(base, os.path.expanduser(text)))


def _tls(raw: Any, base: str) -> TLSConfig | None:
    tls = _mapping(raw, "tls_server_config")
    _check_keys(tls, TLS_KEYS, "tls_server_config")
    cert = _path(tls.get("cert_file"), "tls_server_config.cert_file", base)
    key = _path(tls.get("key_file"), "tls_server_config.key_file", base)
    if not cert and not key:
        if any(tls.get(k) for k in ("client_auth_type", "client_ca_file", "client_allowed_sans")):
            raise WebConfigError("tls_server_config: cert_file and key_file are required for TLS")
        return None  # as exporter-toolkit: no certificate, no TLS
    if not cert:
        raise WebConfigError("tls_server_config.cert_file is missing (key_file is set)")
    if not key:
        raise WebConfigError("tls_server_config.key_file is missing (cert_file is set)")
    auth = _string(tls.get("client_auth_type"), "tls_server_config.client_auth_type") or "NoClientCert"
    if auth not in CLIENT_AUTH_TYPES:
        raise WebConfigError(
            f"tls_server_config.client_auth_type {auth!r} is invalid: "
            f"use one of {', '.join(CLIENT_AUTH_TYPES)}"
        )
    ca = _path(tls.get("client_ca_file"), "tls_server_config.client_ca_file", base)
    if ca and auth == "NoClientCert":
        raise WebConfigError(
            "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert; "
            "use RequireAndVerifyClientCert"
        )
    if not ca and auth in ("RequireAnyClientCert", "VerifyClientCertIfGiven", "RequireAndVerifyClientCert"):
        raise WebConfigError(f"tls_server_config: client_auth_type {auth} needs client_ca_file")
    sans_raw = tls.get("client_allowed_sans") or []
    if not isinstance(sans_raw, list) or not all(isinstance(s, str) and s for s in sans_raw):
        raise WebConfigError("tls_server_config.client_allowed_sans must be a list of strings")
    if sans_raw and auth not in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
        raise WebConfigError(
            "tls_server_config.client_allowed_sans needs client_auth_type RequireAndVerifyClientCert"
        )
    versions = {}
    for name, default in (("min_version", "TLS12"), ("max_version", "")):
        v = _string(tls.get(name), f"tls_server_config.{name}") or default
        if v and v not in TLS_VERSIONS:
            raise WebConfigError(
                f"tls_server_config.{name} {v!r} is invalid: use one of {', '.join(TLS_VERSIONS)}"
            )
        versions[name] = v
    lo, hi = versions["min_version"], versions["max_version"]
    if hi and list(TLS_VERSIONS).index(hi) < list(TLS_VERSIONS).index(lo):
        raise WebConfigError("tls_server_config: max_version is older than min_version")
    config = TLSConfig(
        cert_file=cert,
        key_file=key,
        client_auth_type=auth,
        client_ca_file=ca,
        client_allowed_sans=tuple(sans_raw),
        min_version=versions["min_version"],
        max_version=versions["max_version"],
        prefer_server_cipher_suites=_bool(
            tls.get("prefer_server_cipher_suites"), "tls_server_config.prefer_server_cipher_suites", True
        ),
    )
    config.context()  # every file readable, the key matching the certificate
    return config


def _headers(raw: Any) -> tuple[tuple[str, str], ...]:
    http = _mapping(raw, "http_server_config")
    _check_keys(http, HTTP_KEYS, "http_server_config")
    _bool(http.get("http2"), "http_server_config.http2", True)  # accepted; we speak HTTP/1.1 only
    out = []
    canonical = {h.lower(): h for h in HEADERS}
    for name, value in _mapping(http.get("headers"), "http_server_config.headers").items():
        where = f"http_server_config.headers.{name}"
        header = canonical.get(name.lower())
        if header is None:
            raise WebConfigError(
                f"{where}: this header can not be configured (allowed: {', '.join(HEADERS)})"
            )
        text = _string(value, where)
        if any(c in text for c in "\r\n\0"):
            raise WebConfigError(f"{where}: the value must be one line")
        if not text:
            continue  # "unset if blank"
        allowed = HEADERS[header]
        if allowed is not None and text.lower() not in allowed:
            raise WebConfigError(f"{where}: {text!r} is invalid: use {' or '.join(allowed)}")
        out.append((header, text))
    return tuple(out)


def _users(raw: Any) -> tuple[tuple[str, str], ...]:
    users = _mapping(raw, "basic_auth_users")
    out = []
    for name, hashed in users.items():
        where = f"basic_auth_users.{name}"
        if not name or ":" in name:
            raise WebConfigError(f"{where}: a user name must be non-empty and hold no ':'")
        text = _string(hashed, where).strip()
        m = BCRYPT.fullmatch(text)
        if not m or not 4 <= int(m.group(1)) <= 31:
            raise WebConfigError(
                f"{where}: not a bcrypt hash (expected $2b$<cost>$...; make one with "
                "`htpasswd -nBC 10 '' | tr -d ':\\n'`)"
            )
        out.append((name, text))
    return tuple(out)


def load(path: str) -> WebConfig:
    """Read and validate a web config file. Raises WebConfigError (one line, no path)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"cannot read the file: {_reason(exc)}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise WebConfigError(f"not valid YAML{where}: {problem}") from None
    top = _mapping(raw, "the file")
    _check_keys(top, TOP_KEYS, "")
    base = os.path.dirname(os.path.abspath(path))
    return WebConfig(
        path=os.path.abspath(path),
        tls=_tls(top.get("tls_server_config"), base),
        headers=_headers(top.get("http_server_config")),
        users=_users(top.get("basic_auth_users")),
    )
