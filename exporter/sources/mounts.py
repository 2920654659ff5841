"""Where this process's mount namespace has mount points: what may hang a walk.

A volume's `_data` is a plain dir on Docker's root filesystem unless something is mounted at
or below it (the local driver's NFS/CIFS/bind options mount it there; a plugin's volume is a
propagated mount). Only such a dir can hang a walk in a system call (a server gone away), so
only it needs a walk in a worker that can be killed (du.WalkJob.isolate); a plain one is
walked here like any other dir of the root, without the round trip to the pool.

The table is /proc/self/mountinfo (proc(5)): the kernel marks its fd POLLPRI|POLLERR when the
namespace's mounts change, so a rescan costs one poll(), and the table is read again only
after a change. Where it cannot be read, every path may hold a mount.
"""

from __future__ import annotations

import os
import select
import weakref
from bisect import bisect_left
from dataclasses import dataclass, field

from exporter.sources.fs import parse_mounts

MOUNTINFO = "/proc/self/mountinfo"


def parse_mountinfo(data: bytes) -> tuple[str, ...]:
    """The mount points of a mountinfo text, decoded as fs.read_mounts decodes them, sorted."""
    return tuple(sorted({m.mountpoint for m in parse_mounts(data.decode("utf-8", "surrogateescape"))}))


@dataclass
class MountPoints:
    """The mount points of one moment, for one scan. `points` None: unknown, so anywhere."""

    points: tuple[str, ...] | None
    _real: dict[str, str] = field(default_factory=dict)  # a dir's kernel path, once a scan

    def under(self, path: str) -> bool:
        """Whether a mount may be at `path` or below it. The path is compared as the kernel
        names it: the dir two levels up (`volumes/`, which with the Docker root is often a link
        elsewhere) resolved once a scan, the last two components (`<name>/_data`, Docker's
        own dirs) taken as named; `path` itself is never looked at, as it may be the mount."""
        if self.points is None:
            return True
        head, _, last = path.rstrip("/").rpartition("/")
        top, _, name = head.rpartition("/")
        real = self._real.get(top)
        if real is None:
            real = self._real[top] = _kernel_path(top or "/")
        if not real:
            return True
        target = f"{real.rstrip('/')}/{name}/{last}"
        points = self.points
        i = bisect_left(points, target)
        if i < len(points) and points[i] == target:
            return True
        below = target + "/"
        j = bisect_left(points, below, i)
        return j < len(points) and points[j].startswith(below)


def _kernel_path(path: str) -> str:
    """The dir's path with every link resolved, as mountinfo names mount points (relative to
    this process's root): the kernel's own name of an O_PATH descriptor of it, three system
    calls however deep. "" if it cannot be had."""
    try:
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    finally:
        os.close(fd)
    return real if real.startswith("/") else ""  # "(unreachable)/…": outside our root


class MountTable:
    """This namespace's mount points, read again only when the kernel says they changed.
    Not thread-safe: one per sampler."""

    def __init__(self, path: str = MOUNTINFO) -> None:
        self.path = path
        self.reads = 0  # times the table was read (the tests count them)
        self._fd: int | None = None
        self._poll: select.poll | None = None
        self._points: tuple[str, ...] | None = None
        self._closer: weakref.finalize | None = None

    def view(self) -> MountPoints:
        """The mount points now, for one scan (each scan its own: the links it resolves)."""
        if self._fd is None or self._changed():
            self._read()
        return MountPoints(self._points)

    def _changed(self) -> bool:
        if self._poll is None:
            return True
        try:
            changed = select.POLLPRI | select.POLLERR | select.POLLNVAL  # NVAL: the fd gone, read anew
            return any(ev & changed for _, ev in self._poll.poll(0))
        except OSError:
            return True

    def _read(self) -> None:
        self.reads += 1
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                self._closer = weakref.finalize(self, _close, self._fd)  # a sampler dropped
                try:
                    self._poll = select.poll()
                    self._poll.register(self._fd, select.POLLPRI | select.POLLERR)
                except (OSError, AttributeError):
                    self._poll = None  # no poll: read every time
            chunks, offset = [], 0
            while chunk := os.pread(self._fd, 1 << 16, offset):
                chunks.append(chunk)
                offset += len(chunk)
            self._points = parse_mountinfo(b"".join(chunks))
        except OSError:
            self.close()
            self._points = None

    def close(self) -> None:
        closer, self._closer, self._fd, self._poll = self._closer, None, None, None
        if closer is not None:
            closer()


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
