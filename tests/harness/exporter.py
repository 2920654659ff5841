"""The real exporter as a child process on a free loopback port, and scrape helpers."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse(text: str) -> Samples:
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for lbls, v in samples.get(name, []):
        if all(lbls.get(k) == want for k, want in labels.items()):
            return v
    return None


class ExporterProcess:
    def __init__(
        self, docker_host: str, log: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.log = log
        self.env = dict(env) if env is not None else None  # None: this process's environment
        self.cmd = [
            sys.executable, "-m", "exporter",
            "--docker.host", docker_host,
            "--web.listen-address", f"127.0.0.1:{self.port}",
            "--log.format", "json",
            *args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ExporterProcess:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd, stdout=logf, stderr=subprocess.STDOUT, env=self.env)
        logf.close()
        self.wait_until(lambda s: True, timeout=20, what="exporter serving")
        return self

    def get(self, path: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def scrape_text(self) -> str:
        return self.get("/metrics")[2].decode()

    def scrape(self) -> Samples:
        return parse(self.scrape_text())

    def wait_until(
        self, pred: Callable[[Samples], Any], timeout: float = 60, what: str = "condition"
    ) -> Samples:
        """Scrape every 0.2 s until pred(samples) is true; bounded in time."""
        deadline = time.monotonic() + timeout
        last_err: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"exporter exited {self.proc.returncode}: {self.tail()}")
            try:
                samples = self.scrape()
                if pred(samples):
                    return samples
            except OSError as e:
                last_err = e
            time.sleep(0.2)
        raise TimeoutError(f"{what} not reached in {timeout}s ({last_err}); log: {self.tail()}")

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text()[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def sampled_after(t: float, *samplers: str) -> Callable[[Samples], bool]:
    """A predicate: every named sampler has succeeded at or after unix time t."""

    def pred(s: Samples) -> bool:
        for name in samplers:
            last = value(s, "docker_storage_sampler_last_success_timestamp_seconds", sampler=name)
            if last is None or last < t:
                return False
        return True

    return pred
