"""A private Distribution registry on loopback: Debian's `docker-registry` (2.8), plain HTTP on
127.0.0.1, which engines push to without TLS (loopback registries are insecure by default)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.harness.exporter import free_port

BINARY = "/usr/bin/docker-registry"  # Debian's docker-registry package


class LocalRegistry:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> LocalRegistry:
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        config = self.base / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: error}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.base / 'data'}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: '{self.host}'}}\n"
        )
        log = open(self.base / "registry.log", "ab")
        self.proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited: {(self.base / 'registry.log').read_text()[-2000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry not listening on {self.host} in {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
