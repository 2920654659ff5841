"""A real Prometheus (Debian's) on loopback, scraping the real exporter, loading our rules."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.harness.exporter import free_port


class PrometheusServer:
    def __init__(self, base: Path, targets: list[str], rule_files: list[Path], job: str) -> None:
        self.base = base
        self.port = free_port()
        base.mkdir(parents=True, exist_ok=True)
        self.config = base / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(p) for p in rule_files],
                    "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}],
                }
            )
        )
        self.log = base / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> PrometheusServer:
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.config}",
                f"--storage.tsdb.path={self.base / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=logf,
            stderr=subprocess.STDOUT,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready: {self.log.read_text()[-2000:]}")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def query(self, expr: str) -> Any:
        return self.api("query", query=expr)

    def wait_for(self, expr: str, timeout: float = 60) -> list[Any]:
        """Poll an instant query until it returns series; bounded in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            res = self.query(expr)
            if res.get("status") == "success" and res["data"]["result"]:
                return res["data"]["result"]
            time.sleep(0.5)
        raise TimeoutError(f"{expr} returned nothing in {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
