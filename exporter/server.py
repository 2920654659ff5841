"""HTTP front door: the telemetry path, a landing page at /, and /healthz.

Only GET and HEAD are served. A scrape renders the registry, which reads the latest
snapshots in memory, so it never waits on Docker.
"""

from __future__ import annotations

import gzip
import html
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter import __version__
from exporter.model import SamplerStatus

REQUEST_TIMEOUT = 30.0  # seconds a client may take to send its request


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, family: int) -> None:
        self.address_family = family
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
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = f"docker-storage-exporter/{__version__}"
        timeout = REQUEST_TIMEOUT
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # access logs would be one line per scrape; not worth it

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
    ) -> None:
        bind_host, family = _family(host)
        handler = make_handler(registry, telemetry_path, statuses)
        try:
            self._server = _Server((bind_host, port), handler, family)
        except OSError:
            if host != "" or family != socket.AF_INET6:
                raise
            self._server = _Server(("0.0.0.0", port), handler, socket.AF_INET)  # no IPv6 here
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
