"""TLS to a tcp:// engine, set up as the docker CLI does, and its failures said plainly.

- `DOCKER_TLS_VERIFY` non-empty: TLS, and the engine's certificate must be signed by
  `$DOCKER_CERT_PATH/ca.pem` (default `~/.docker`) — that CA and nothing else: no
  `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, `SSL_CERT_FILE` or system store is trusted for the
  engine (requests would let the first two replace the CA on every request; the client passes
  the CA with each request, which they cannot override).
- `DOCKER_TLS` non-empty (and no `DOCKER_TLS_VERIFY`): TLS without verifying the engine.
- Either way `cert.pem` and `key.pem` there are the client certificate when both exist.
- Neither: plain HTTP, as the CLI. `DOCKER_CERT_PATH` alone turns nothing on.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import docker.errors
import docker.tls
import requests.exceptions

from exporter.errors import cause


class EngineTLSError(docker.errors.DockerException):
    """The engine and the exporter did not agree on TLS; str() says why, in one line."""

    explained = True  # samplers log str() as it is (exporter.samplers.base.reason)


@dataclass(frozen=True)
class EngineTLS:
    cert_path: str  # the dir the files come from, for messages
    verify: bool
    ca: str  # the CA the engine's certificate must chain to; "" when not verifying
    cert: str = ""  # client certificate and key; "" when there is none
    key: str = ""

    def docker_config(self) -> docker.tls.TLSConfig:
        return docker.tls.TLSConfig(
            client_cert=(self.cert, self.key) if self.cert else None,
            ca_cert=self.ca or None,
            verify=self.verify,
        )

    @property
    def requests_verify(self) -> str | bool:
        """What each request passes as `verify`: the CA file, or False."""
        return self.ca if self.verify else False


def from_env(environ: Mapping[str, str]) -> EngineTLS | None:
    """The TLS set-up the environment asks for; ValueError (one line) when it cannot work."""
    verify = bool(environ.get("DOCKER_TLS_VERIFY"))
    if not verify and not environ.get("DOCKER_TLS"):
        return None
    cert_path = environ.get("DOCKER_CERT_PATH") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".docker"
    )
    ca, cert, key = (os.path.join(cert_path, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    if verify and not os.path.isfile(ca):
        raise ValueError(
            f"DOCKER_TLS_VERIFY is set but {ca} does not exist: put the engine's CA there "
            "(with cert.pem and key.pem if the engine wants a client certificate), or set "
            "DOCKER_CERT_PATH to the dir that has it"
        )
    for path in (ca if verify else "", cert, key):
        if path and os.path.exists(path) and not os.access(path, os.R_OK):
            raise ValueError(f"{path} is not readable by the exporter")
    client = os.path.isfile(cert) and os.path.isfile(key)
    return EngineTLS(cert_path, verify, ca if verify else "", cert if client else "", key if client else "")


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError under requests' and urllib3's wrappers."""
    found = cause(exc, lambda e: isinstance(e, ssl.SSLError))
    return found if isinstance(found, ssl.SSLError) else None


def explain(exc: BaseException, tls: EngineTLS | None, base_url: str) -> str | None:
    """One line saying what went wrong with TLS between us and the engine; None if it was
    not a TLS matter."""
    if isinstance(exc, docker.errors.APIError) and "HTTP request to an HTTPS server" in str(exc):
        return (
            f"the engine at {base_url} speaks TLS and was asked in plain HTTP: set "
            "DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the dir with ca.pem, cert.pem, key.pem"
        )
    if not isinstance(exc, requests.exceptions.RequestException | OSError):
        return None
    err = _ssl_error(exc)
    if err is None:
        if (
            tls is not None
            and isinstance(exc, requests.exceptions.ConnectionError)
            and ("reset" in str(exc).lower() or "aborted" in str(exc).lower())
        ):
            return f"TLS: the engine at {base_url} closed the connection during the handshake ({_short(exc)})"
        return None
    text = f"{err.reason or ''} {err}".upper()
    if isinstance(err, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        why = getattr(err, "verify_message", "") or err.reason or "certificate verify failed"
        ca = tls.ca if tls is not None and tls.ca else "the CA"
        return f"TLS: the engine's certificate is not trusted by {ca} ({why})"
    if tls is not None and not tls.cert and any(k in text for k in _CLIENT_CERT_ALERTS):
        return (
            "TLS: the engine wants a client certificate and there is none "
            f"(cert.pem and key.pem in {tls.cert_path})"
        )
    if any(k in text for k in _CLIENT_CERT_ALERTS):
        return f"TLS: the engine refused the client certificate{_cert(tls)} ({err.reason})"
    if tls is not None and tls.cert and isinstance(err, ssl.SSLEOFError):
        return f"TLS: the engine ended the handshake: it does not accept the client certificate{_cert(tls)}"
    if any(k in text for k in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")):
        return f"TLS: the engine at {base_url} does not speak TLS (unset DOCKER_TLS_VERIFY and DOCKER_TLS)"
    return f"TLS with the engine at {base_url} failed: {err.reason or _short(err)}"


_CLIENT_CERT_ALERTS = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "HANDSHAKE_FAILURE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "ACCESS_DENIED",
)


def _cert(tls: EngineTLS | None) -> str:
    return f" {tls.cert}" if tls is not None and tls.cert else ""


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:160]
