"""Unix-socket proxies in front of the engine, for tests.

`UnixProxy` forwards bytes both ways unchanged; subclasses look at what the client sends
(`_client_data`) or choose, per connection, where it goes (`_upstream_for`).
`RecordingProxy` notes the method and path of every request (keep-alive included).
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path
from typing import Any

REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]")


class UnixProxy:
    def __init__(self, listen: Path, upstream: Path | None) -> None:
        self.listen, self.upstream = listen, upstream
        self._lock = threading.Lock()
        self._stop = threading.Event()
        listen.parent.mkdir(parents=True, exist_ok=True)
        listen.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(listen))
        self._server.listen(64)
        self._server.settimeout(0.5)
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"unix://{self.listen}"

    def _upstream_for(self, client: socket.socket) -> Path | None:
        """Where this connection goes; None: the subclass kept the client itself."""
        return self.upstream

    def _client_data(self, data: bytes, state: dict[str, Any]) -> None:
        """Called with each chunk the client sends, before it is forwarded."""

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = self._upstream_for(client)
            if upstream is not None:
                threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream_path: Path) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(upstream_path))
        except OSError:
            client.close()  # engine down: the client sees a closed connection
            upstream.close()
            return
        self._connected()
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _connected(self) -> None:
        """A connection now reaches the engine."""

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        state: dict[str, Any] = {}
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if from_client:
                    self._client_data(data, state)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self.listen.unlink(missing_ok=True)


class RecordingProxy(UnixProxy):
    def __init__(self, listen: Path, upstream: Path) -> None:
        self.requests: list[tuple[str, str]] = []
        super().__init__(listen, upstream)

    def _client_data(self, data: bytes, state: dict[str, Any]) -> None:
        # Whole lines only: a request line may be split across reads.
        *lines, tail = (state.get("tail", b"") + data).split(b"\r\n")
        state["tail"] = tail[-8192:]
        with self._lock:
            for line in lines:
                m = REQUEST_LINE.fullmatch(line)
                if m:
                    self.requests.append((m.group(1).decode(), m.group(2).decode()))

    def recorded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.requests)
