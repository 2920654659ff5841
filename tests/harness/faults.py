"""Helpers for the fault tests: a unix-socket stand-in for dockerd that can hang, forward or
hold a request at a gate, a watcher that scrapes /metrics with a short timeout the whole time
something bad happens, and process-tree helpers for checking that nothing is left behind.

Everything here is bounded: every wait has a timeout, every loop a count.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.engine import PrivateEngine, unmount_all
from tests.harness.exporter import Samples, parse
from tests.harness.proxy import UnixProxy

REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]", re.MULTILINE)


class FaultProxy(UnixProxy):
    """A unix socket where the exporter thinks dockerd is.

    - upstream None: accept every connection and hold it silently (read nothing, answer
      nothing): a dockerd that hangs.
    - upstream set (at start or later with `forward_to`): new connections are forwarded
      byte for byte to the real engine socket.
    - `hold(pattern)`: the next request whose request line matches is kept at a gate (not
      sent upstream) until `release()`; `held` is set while it waits. The exporter is then
      in the middle of a sample, with that request outstanding.
    """

    def __init__(self, listen: Path, upstream: Path | None = None) -> None:
        self.accepted = 0
        self.forwarded = 0
        self.held = threading.Event()
        self._release = threading.Event()
        self._gate: re.Pattern[bytes] | None = None
        self._hung: list[socket.socket] = []
        super().__init__(listen, upstream)

    def forward_to(self, upstream: Path) -> None:
        with self._lock:
            self.upstream = upstream

    def hold(self, pattern: str) -> None:
        with self._lock:
            self.held.clear()
            self._release.clear()
            self._gate = re.compile(pattern.encode())

    def release(self) -> None:
        self._release.set()

    def _upstream_for(self, client: socket.socket) -> Path | None:
        with self._lock:
            self.accepted += 1
            if self.upstream is None:
                self._hung.append(client)  # accepted, never read, never answered
            return self.upstream

    def _connected(self) -> None:
        with self._lock:
            self.forwarded += 1

    def _at_gate(self, data: bytes) -> bool:
        with self._lock:
            gate = self._gate
            if gate is None:
                return False
            for m in REQUEST_LINE.finditer(data):
                if gate.search(m.group(2)):
                    self._gate = None
                    return True
        return False

    def _client_data(self, data: bytes, state: dict[str, Any]) -> None:
        if self._at_gate(data):
            self.held.set()
            self._release.wait(60)

    def close(self) -> None:
        self._release.set()
        super().close()
        with self._lock:
            for s in self._hung:
                s.close()
            self._hung.clear()


class ScrapeWatcher:
    """Scrapes /metrics (and the landing page now and then) in a thread, each request with a
    short socket timeout, until stopped; records every failure, and whatever `check` finds
    wrong in each scrape. Bounded by count and time."""

    def __init__(
        self,
        url: str,
        check: Callable[[Samples], list[str]] | None = None,
        timeout: float = 2.0,
        max_scrapes: int = 5000,
        max_seconds: float = 240,
    ) -> None:
        self.url = url
        self.check = check
        self.problems: list[str] = []  # what `check` found wrong, first few
        self.timeout = timeout
        self.max_scrapes = max_scrapes
        self.max_seconds = max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.last: Samples | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ScrapeWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        for i in range(self.max_scrapes):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            path = "/" if i % 10 == 9 else "/metrics"
            try:
                with urllib.request.urlopen(self.url + path, timeout=self.timeout) as r:
                    body = r.read()
                    if r.status != 200:
                        self.failures.append(f"{path}: HTTP {r.status}")
                    elif path == "/metrics":
                        self.last = parse(body.decode())
                        self.ok += 1
                        if self.check is not None and len(self.problems) < 50:
                            self.problems += self.check(self.last)
            except (OSError, urllib.error.URLError, ValueError) as e:
                self.failures.append(f"{path}: {type(e).__name__}: {e}")
            self._stop.wait(0.05)


# -- processes ---------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out += [int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except (OSError, ValueError):
            pass
    return out


def descendants(pid: int, limit: int = 500) -> list[int]:
    """Every process below pid (children, grandchildren, ...), breadth first, bounded."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < limit:
        for c in children(todo.pop(0)):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    """Running in any way; a zombie (exited, waiting to be reaped) does not count."""
    state = proc_state(pid)
    return state is not None and state not in ("Z", "X")


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_recorded(pids: dict[int, str]) -> list[int]:
    """SIGKILL each recorded process (pid -> its command line when recorded) that is still
    alive with the same command line: e.g. the containerd of a dockerd the test SIGKILLed.
    By id only, and only processes the test started."""
    killed = []
    for pid, cmd in pids.items():
        if alive(pid) and cmdline(pid) == cmd:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


IN_OPEN, IN_MOVED_TO, IN_CREATE = 0x20, 0x80, 0x100


class FirstRead:
    """The moment a scan's layout read first reads a layerdb entry that does not exist yet.

    inotify(7) on the layer store for the entry's arrival (dockerd renames it in when a layer
    is committed), then on the entry for the opening of its `cache-id` file, which only the
    layout read does (dockerd reads it at start only). A thread reacts at once and runs
    `action` right there, before the scan gets to its walks. Bounded lifetime.
    """

    def __init__(self, layerdb: Path, chain: str, action: Callable[[], None] | None = None) -> None:
        import ctypes

        self.entry = layerdb / chain
        self.chain = chain
        self.action = action
        self.opened = threading.Event()
        self.done = threading.Event()  # action finished (or failed: see error)
        self.error: BaseException | None = None
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._parent_wd = self._watch(layerdb, IN_CREATE | IN_MOVED_TO)
        self._entry_wd: int | None = None
        self.existed = self.entry.exists()  # too late to see its first read
        if self.existed:
            self._entry_wd = self._watch(self.entry, IN_OPEN)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _watch(self, path: Path, mask: int) -> int:
        import ctypes

        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")
        return wd

    def _run(self, max_seconds: float = 120) -> None:
        import select
        import struct

        deadline = time.monotonic() + max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline and not self.opened.is_set():
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            off = 0
            while off + 16 <= len(data):
                wd, mask, _cookie, size = struct.unpack_from("iIII", data, off)
                name = data[off + 16 : off + 16 + size].rstrip(b"\0").decode(errors="replace")
                off += 16 + size
                if wd == self._parent_wd and name == self.chain and self._entry_wd is None:
                    try:
                        self._entry_wd = self._watch(self.entry, IN_OPEN)
                    except OSError as e:
                        self.error = e
                elif wd == self._entry_wd and mask & IN_OPEN and name == "cache-id":
                    self.opened.set()
                    break
        if self.opened.is_set() and self.action is not None:
            try:
                self.action()
            except BaseException as e:  # noqa: BLE001 - reported to the test
                self.error = e
        self.done.set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.fd)

    def __enter__(self) -> FirstRead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_on_tmpfs(eng: PrivateEngine, size: str = "1g") -> None:
    """Start a private engine whose data root is a tmpfs of its own: big trees are made in
    seconds whatever the disk is doing, and it all goes away with the engine (stop() unmounts
    everything under its base)."""
    eng.kill_stale()
    unmount_all(eng.base)
    shutil.rmtree(eng.base, ignore_errors=True)
    eng.data_root.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0711", "tmpfs", str(eng.data_root)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    eng.start(fresh=False)
