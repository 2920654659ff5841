"""A private Docker daemon for tests: its own data root, exec root, pidfile and socket.

It never touches the user's own daemon: `--bridge=none --iptables=false` (no host network
changes), and all test containers run with `--network none`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker

from tests.harness.procs import end

DOCKER_CLI = "/usr/bin/docker"  # Debian's 20.10 CLI: its classic and BuildKit builds work alone


def default_test_root() -> str:
    """/tmp/dse-<8 hex of this checkout's path>: short, and distinct per checkout."""
    import hashlib

    checkout = Path(__file__).resolve().parents[2]
    return f"/tmp/dse-{hashlib.sha256(str(checkout).encode()).hexdigest()[:8]}"


def _mounts_under(path: Path) -> list[str]:
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == str(path) or mp.startswith(str(path) + "/"):
                    out.append(mp)
    except OSError:
        pass
    return out


def unmount_all(path: Path) -> None:
    for mp in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


class PrivateEngine:
    def __init__(
        self, base: Path, storage_driver: str | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.base = base
        self.extra_args = extra_args  # more dockerd flags, e.g. a TLS tcp:// listener
        self.data_root = base / "root"
        self.exec_root = base / "exec"
        self.pidfile = base / "docker.pid"
        self.sock = base / "docker.sock"
        self.log = base / "dockerd.log"
        self.storage_driver = storage_driver
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def kill_stale(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"dockerd" in cmdline and str(self.sock).encode() in cmdline:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    break
                for _ in range(100):
                    if not Path(f"/proc/{pid}").exists():
                        break
                    time.sleep(0.1)

    def start(self, fresh: bool = True, timeout: float = 60.0) -> None:
        if fresh:
            self.kill_stale()
            unmount_all(self.base)
            shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True, exist_ok=True)
        cmd = [
            "dockerd",
            "--data-root", str(self.data_root),
            "--exec-root", str(self.exec_root),
            "--pidfile", str(self.pidfile),
            "-H", self.host,
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--log-level=warn",
            # Our own containerd namespaces: even if dockerd finds a system containerd, test
            # containers never mix with anyone else's.
            "--containerd-namespace", f"dse-{self.base.name}",
            "--containerd-plugins-namespace", f"dse-{self.base.name}-plugins",
        ]  # fmt: skip
        if self.storage_driver:
            cmd += ["--storage-driver", self.storage_driver]
        cmd += self.extra_args
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        client = docker.APIClient(base_url=self.host, version="1.41", timeout=2)
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"dockerd exited: {self.log.read_text()[-2000:]}")
                try:
                    if client.ping():
                        return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.2)
        finally:
            client.close()
        raise RuntimeError(f"dockerd not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL of the whole process group (containerd and shims too)."""
        if self.proc is None:
            return
        end(self.proc, timeout)
        self.proc = None
        unmount_all(self.base)

    def docker(
        self,
        *args: str,
        input: bytes | None = None,  # noqa: A002 - as subprocess.run names it
        buildkit: bool = False,
        check: bool = True,
    ) -> str:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.base / "cli"),
            "DOCKER_BUILDKIT": "1" if buildkit else "0",
        }
        res = subprocess.run([DOCKER_CLI, *args], input=input, env=env, capture_output=True, timeout=300)
        if check and res.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args)} failed ({res.returncode}): {res.stderr.decode()[-2000:]}"
            )
        return res.stdout.decode()

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version="1.41", timeout=30)
