"""HTTP front door: the telemetry path, a landing page at /, and /healthz.

Only GET and HEAD are served. A scrape renders the registry, which reads the latest
snapshots in memory, so it never waits on Docker.

Hardening (docs/security.md): optional TLS and basic auth from `--web.config.file`, on every
path; the TLS handshake runs in the connection's worker thread with a deadline, so a client
that never finishes it cannot stall the accept loop; a client has `--web.read-header-timeout`
to send its request line and headers (in total, not per byte: a slowloris client is cut off);
a response write has WRITE_TIMEOUT; `--web.max-requests` requests are handled at once and
the rest answered 503 straight away.
"""

from __future__ import annotations

import gzip
import html
import io
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.model import SamplerStatus
from exporter.webaccess import BasicAuth, TLSContextHolder
from exporter.webconfig import WebConfig

REQUEST_TIMEOUT = 10.0  # default --web.read-header-timeout: handshake + request line + headers
WRITE_TIMEOUT = 30.0  # seconds one response write may take (a client reading slowly)
REALM = "docker-storage-exporter"

log = structlog.get_logger("exporter.server")


class _DeadlineReader(io.RawIOBase):
    """Socket reads that share one deadline, so trickling bytes does not extend it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request headers not received in time")
            self.sock.settimeout(left)
        return self.sock.recv_into(buf)


class _DeadlineWriter(io.RawIOBase):
    """Socket writes, each done within WRITE_TIMEOUT in total however slowly the peer reads."""

    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        deadline = time.monotonic() + self.timeout
        total = len(view)
        while view:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("response not sent in time")
            self.sock.settimeout(left)
            n = self.sock.send(view)
            view = view[n:]
        return total


def _drain(conn: socket.socket, seconds: float = 1.0) -> None:
    """Close gently after a refused handshake: with TLS 1.3 the client learns of the refusal
    (e.g. "certificate required") only when it reads the alert, after sending its request; an
    immediate close with that request unread would reset the connection and lose the alert."""
    try:
        socket.socket.shutdown(conn, socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left)
            if not socket.socket.recv(conn, 4096):
                break
    except (OSError, ValueError):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type,
        family: int,
        tls: TLSContextHolder | None = None,
        handshake_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.address_family = family
        self.tls = tls
        self.handshake_timeout = handshake_timeout
        super().__init__(address, handler, bind_and_activate=False)
        if family == socket.AF_INET6:
            # ":port" should listen on IPv4 and IPv6, as Go exporters do.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread (ThreadingMixIn), never in the accept loop.
        try:
            # Headers and body go out in separate writes (TLS records): without this, Nagle
            # and the client's delayed ACK add ~40 ms to every response, as Go avoids too.
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        ctx, reload_error = self.tls.get()
        if reload_error:
            log.warning("TLS certificate reload failed; keeping the previous one", error=reload_error)
        request.settimeout(self.handshake_timeout)
        try:
            conn = ctx.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError):
            return
        try:
            try:
                conn.do_handshake()
            except (OSError, ValueError) as exc:  # ssl.SSLError and timeouts are OSErrors
                log.debug("TLS handshake failed", client=client_address[0], error=str(exc))
                _drain(conn)
                return
            if not self.tls.config.peer_allowed(conn.getpeercert()):
                log.debug("client certificate SAN not allowed", client=client_address[0])
                return
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish or time out are normal; anything else is our bug: log it.
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # ssl.SSLError and TimeoutError included
            log.debug("connection failed", client=client_address[0], error=str(exc))
        else:
            log.exception("request failed", client=client_address[0])


def _family(host: str) -> tuple[str, int]:
    if host == "":
        return ("::", socket.AF_INET6) if socket.has_ipv6 else ("0.0.0.0", socket.AF_INET)
    return (host, socket.AF_INET6) if ":" in host else (host, socket.AF_INET)


def landing_page(telemetry_path: str, statuses: list[SamplerStatus]) -> str:
    rows = []
    for s in statuses:
        last = (
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s.last_success)) if s.last_success else "never"
        )
        if not s.available:
            state = "unavailable"
        else:
            state = "ok" if s.success else ("waiting" if s.runs == 0 else "failing")
        rows.append(
            "<tr>"
            f"<td>{html.escape(s.name)}</td><td>{state}</td><td>{last}</td>"
            f"<td>{s.duration_seconds:.3f}s</td><td>{s.runs}</td><td>{s.failures}</td>"
            f"<td>{html.escape(s.last_error)}</td>"
            "</tr>"
        )
    path = html.escape(telemetry_path)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Docker Storage Exporter</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.2em .8em;text-align:left}}
tr:nth-child(even){{background:#f3f3f3}}</style></head>
<body><h1>Docker Storage Exporter</h1>
<p>Where a Docker host's disk went, for Prometheus. Version {html.escape(__version__)}.</p>
<p><a href="{path}">Metrics</a> &middot; <a href="/healthz">Health</a></p>
<h2>Samplers</h2>
<table><tr><th>sampler</th><th>state</th><th>last success</th><th>duration</th>
<th>runs</th><th>failures</th><th>last error</th></tr>
{"".join(rows)}
</table></body></html>
"""


def make_handler(
    registry: CollectorRegistry,
    telemetry_path: str,
    statuses: Callable[[], list[SamplerStatus]],
    web: WebConfig | None = None,
    max_requests: int = 0,
    read_header_timeout: float = REQUEST_TIMEOUT,
) -> type[BaseHTTPRequestHandler]:
    auth = BasicAuth(web.users) if web is not None and web.auth else None
    extra_headers = web.headers if web is not None else ()
    slots = threading.BoundedSemaphore(max_requests) if max_requests > 0 else None

    class Handler(BaseHTTPRequestHandler):
        server_version = f"docker-storage-exporter/{__version__}"
        timeout = read_header_timeout
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # access logs would be one line per scrape; not worth it

        def setup(self) -> None:
            super().setup()
            self.rfile.close()  # the socket's own file; left open it would keep the socket open
            self._reader = _DeadlineReader(self.connection)
            self.rfile = io.BufferedReader(self._reader)
            self.wfile = _DeadlineWriter(self.connection, WRITE_TIMEOUT)

        def handle_one_request(self) -> None:
            # The request line and headers (and the idle wait before them on a kept-alive
            # connection) share one deadline; we never read a body.
            self._reader.deadline = time.monotonic() + read_header_timeout
            super().handle_one_request()

        def end_headers(self) -> None:
            for name, value in extra_headers:  # on every response, errors included
                self.send_header(name, value)
            super().end_headers()

        def _send(self, code: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self) -> None:
            # Bounded without waiting: past the limit a scraper gets 503 at once, rather
            # than piling up threads behind a slow render or a storm of bcrypt checks.
            if slots is not None and not slots.acquire(blocking=False):
                self._send(
                    503, b"too many concurrent requests\n", "text/plain; charset=utf-8", {"Retry-After": "1"}
                )
                return
            try:
                if auth is not None and not auth.check(self.headers.get("Authorization")):
                    self._send(
                        401,
                        b"unauthorized\n",
                        "text/plain; charset=utf-8",
                        {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
                    )
                    return
                self._route()
            finally:
                if slots is not None:
                    slots.release()

        def _route(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == telemetry_path:
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(registry)
                extra = {}
                if "gzip" in self.headers.get("Accept-Encoding", ""):
                    body = gzip.compress(body, compresslevel=5)
                    extra["Content-Encoding"] = "gzip"
                self._send(200, body, ctype, extra)
            elif path == "/":
                page = landing_page(telemetry_path, statuses()).encode()
                self._send(200, page, "text/html; charset=utf-8")
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")

        do_HEAD = do_GET  # noqa: N815

        def _not_allowed(self) -> None:
            self._send(405, b"method not allowed\n", "text/plain; charset=utf-8", {"Allow": "GET, HEAD"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed  # noqa: N815

    return Handler


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        telemetry_path: str,
        statuses: Callable[[], list[SamplerStatus]],
        web: WebConfig | None = None,
        max_requests: int = 0,
        read_header_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        bind_host, family = _family(host)
        handler = make_handler(registry, telemetry_path, statuses, web, max_requests, read_header_timeout)
        tls = TLSContextHolder(web.tls) if web is not None and web.tls is not None else None
        self.tls = tls is not None

        def server(address: tuple[str, int], fam: int) -> _Server:
            return _Server(address, handler, fam, tls, read_header_timeout)

        try:
            self._server = server((bind_host, port), family)
        except OSError:
            if host != "" or family != socket.AF_INET6:
                raise
            self._server = server(("0.0.0.0", port), socket.AF_INET)  # no IPv6 here
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
