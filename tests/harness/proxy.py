"""A Unix-socket proxy in front of the engine that records every HTTP request line.

The exporter talks to the proxy; the proxy forwards bytes both ways unchanged and notes
the method and path of each request it sees from the client (keep-alive included).
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]")


class RecordingProxy:
    def __init__(self, listen: Path, upstream: Path) -> None:
        self.listen, self.upstream = listen, upstream
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
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

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.upstream))
        except OSError:
            client.close()  # engine down: the client sees a closed connection
            return
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()
        self._pump(client, upstream, True)

    def _pump(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        tail = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record:
                    # Whole lines only: a request line may be split across reads.
                    *lines, tail = (tail + data).split(b"\r\n")
                    tail = tail[-8192:]
                    with self._lock:
                        for line in lines:
                            m = REQUEST_LINE.fullmatch(line)
                            if m:
                                self.requests.append((m.group(1).decode(), m.group(2).decode()))
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

    def recorded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        self.listen.unlink(missing_ok=True)
