"""`python -m exporter.healthcheck`: the image's HEALTHCHECK. Exit 0 if /healthz answers.

It finds the listen address the way the exporter did: the flags of the container's main
process (PID 1), then the environment variable, then the default; so a changed port needs
no second setting.

With a `--web.config.file` the server may speak TLS and want credentials the healthcheck
does not have. It tries plain HTTP, then HTTPS (without verifying the certificate: it only
asks the process on its own loopback whether it is alive, and sends nothing secret); a 401
counts as alive (the server answered), and so does a TLS alert demanding a client
certificate (the server's TLS layer answered in a worker thread).
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
import urllib.error
import urllib.request

from exporter.config import env_name, parse_listen_address

FLAG = "--web.listen-address"


def listen_address(cmdline: list[str], environ: dict[str, str]) -> str:
    for i, arg in enumerate(cmdline):
        if arg.startswith(FLAG + "="):
            return arg.split("=", 1)[1]
        if arg == FLAG and i + 1 < len(cmdline):
            return cmdline[i + 1]
    return environ.get(env_name("web.listen-address"), ":9818")


def main_cmdline() -> list[str]:
    try:
        with open("/proc/1/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def main() -> int:
    raw = listen_address(main_cmdline(), dict(os.environ))
    try:
        host, port = parse_listen_address(raw)
    except ValueError:
        print(f"healthcheck: cannot read listen address {raw!r}", file=sys.stderr)
        return 1
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    ok, detail = probe(host, port)
    if not ok:
        print(f"healthcheck: {detail}", file=sys.stderr)
    return 0 if ok else 1


ALIVE = (200, 401)  # 401: the server answered, it wants credentials we do not have


def probe(host: str, port: int, timeout: float = 5.0) -> tuple[bool, str]:
    """(alive, what happened) for /healthz on host:port, over HTTP or else HTTPS."""
    netloc = f"{'[' + host + ']' if ':' in host else host}:{port}"
    url = f"http://{netloc}/healthz"
    try:
        return _status(urllib.request.urlopen(url, timeout=timeout), url)
    except urllib.error.HTTPError as exc:
        return exc.code in ALIVE, f"{url}: HTTP {exc.code}"
    except (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError):
        pass  # a TLS listener drops a plain-HTTP request: try HTTPS
    except OSError as exc:
        return False, f"{url}: {exc}"
    url = f"https://{netloc}/healthz"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        return _status(urllib.request.urlopen(url, timeout=timeout, context=ctx), url)
    except urllib.error.HTTPError as exc:
        return exc.code in ALIVE, f"{url}: HTTP {exc.code}"
    except OSError as exc:
        reason = _ssl_reason(exc)
        if "CERTIFICATE_REQUIRED" in reason or "HANDSHAKE_FAILURE" in reason:
            return True, f"{url}: alive, wants a client certificate"
        return False, f"{url}: {exc}"


def _status(response: http.client.HTTPResponse, url: str) -> tuple[bool, str]:
    with response as r:
        return r.status in ALIVE, f"{url}: HTTP {r.status}"


def _ssl_reason(exc: BaseException) -> str:
    while exc is not None:
        if isinstance(exc, ssl.SSLError):
            return str(exc.reason or exc).upper()
        exc = getattr(exc, "reason", None) if isinstance(exc, urllib.error.URLError) else exc.__cause__
    return ""


if __name__ == "__main__":
    sys.exit(main())
