"""Dir stamps, and a walk that trusts them.

dockerd writes its image store (`image/<driver>/`: imagedb, distribution, repositories.json,
layerdb) by writing a temp file and renaming it into place, and removes an entry by renaming it
first; a container's `layerdb/mounts/<id>/` files are written once, when it is created. Each
such change moves the (inode, mtime) stamp of the dir holding the entry, so while a dir's stamp
holds, its listing and its files are what they were (not so `layerdb/tmp`, where a layer being
pulled is written in place: callers walk it every time). A stamp is trusted only once it is
SETTLE_NS old: a second change within the same mtime tick (ext4's are coarse) would not move it.
"""

from __future__ import annotations

import os
import stat
import time
from typing import NamedTuple

from exporter.model import EMPTY, Usage, total
from exporter.sources.du import UNREADABLE, VANISHED
from exporter.sources.rawfs import names_or_none
from exporter.sources.witness import note_stamp

SETTLE_NS = 2_000_000_000

Stamp = tuple[int, int]  # a dir's (inode, mtime in ns)


def settled(st: os.stat_result, now_ns: int | None = None) -> Stamp | None:
    """The stamp of a dir last modified at least SETTLE_NS ago, else None."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    return (st.st_ino, st.st_mtime_ns) if now_ns - st.st_mtime_ns >= SETTLE_NS else None


def settled_stamp(path: str) -> Stamp | None:
    """settled() of the dir at `path`, through a symlink as a listing of it goes (a Docker
    root or its volumes/ is often a link elsewhere); None when it is missing or not a dir."""
    try:
        st = os.stat(path)
    except OSError:
        stamp = None
    else:
        stamp = settled(st) if stat.S_ISDIR(st.st_mode) else None
    note_stamp(path, stamp)  # what a read went by (exporter.sources.witness)
    return stamp


class DirNames:
    """One dir's entry names, sorted: listed again only when its settled stamp moved (an entry
    made, removed or renamed in it moves it), and handed back as the same object while they
    are the same names, so what is derived from them can be kept by identity
    (exporter.memo). One lstat a rescan, not a listing of 10,000 names."""

    def __init__(self) -> None:
        self._stamp: Stamp | None = None
        self._names: tuple[str, ...] | None = None

    def get(self, path: str) -> tuple[str, ...]:
        stamp = settled_stamp(path)
        if stamp is not None and stamp == self._stamp and self._names is not None:
            return self._names
        read = names_or_none(path)
        names, last = tuple(read or ()), self._names
        if last is None or names != last:
            last = self._names = names
        self._stamp = stamp if read is not None else None  # a failed listing is not kept
        return last


class _Listed(NamedTuple):
    stamp: Stamp
    files: Usage  # the dir's entries but its subdirs (not the dir itself)
    subdirs: tuple[str, ...]


class AtomicTree:
    """`du` of a tree written only by atomic renames (see the module doc), reading a dir's
    entries again only when its stamp moved: a rescan of an unchanged tree costs one lstat per
    dir, not one per file. Figures as exporter.sources.du.walk gives them. Not thread-safe: one
    per tree, owned by one sampler.

    A dir holding a file with several links is never reused (hard links are counted once across
    the walk, which needs every such file seen); a link added later to a file of a reused dir
    would be counted twice, which dockerd's image store never does."""

    def __init__(self) -> None:
        self._dirs: dict[str, _Listed] = {}
        self.listed = 0  # dirs whose entries the last walk read (the rest were reused)

    def walk(self, path: str, exclude: frozenset[str] = frozenset(), deadline: float | None = None) -> Usage:
        """`exclude`: paths relative to `path`, neither entered nor counted."""
        try:
            st = os.lstat(path)
        except OSError as e:
            return EMPTY if e.errno in VANISHED else UNREADABLE
        if not stat.S_ISDIR(st.st_mode):
            return Usage(st.st_blocks * 512, st.st_size, 1, 0, False)
        skip = {os.path.join(path, rel) for rel in exclude}
        dev, now = st.st_dev, time.time_ns()
        memo, self._dirs, self.listed = self._dirs, {}, 0
        seen: set[int] = set()  # inodes of multi-link files met so far
        dirs_seen = {st.st_ino}  # a same-device bind mount must not make us walk a tree twice
        parts: list[Usage] = []
        stack = [(path, st)]
        while stack:
            d, dst = stack.pop()
            parts.append(Usage(dst.st_blocks * 512, 0, 1, 0, False))  # the dir itself, as du
            if deadline is not None and time.monotonic() >= deadline:
                return total(parts)._replace(partial=True)
            stamp = settled(dst, now)
            hit = memo.get(d)
            if stamp is not None and hit is not None and hit.stamp == stamp:
                usage, subdirs = hit.files, hit.subdirs
                self._dirs[d] = hit
            else:
                usage, subdirs, keep = self._list(d, dev, skip, seen)
                self.listed += 1
                if stamp is not None and keep:
                    self._dirs[d] = _Listed(stamp, usage, subdirs)
            parts.append(usage)
            for name in subdirs:
                sub = f"{d}/{name}"
                try:
                    sst = os.lstat(sub)
                except OSError as e:
                    parts.append(EMPTY if e.errno in VANISHED else UNREADABLE)
                    continue
                if stat.S_ISDIR(sst.st_mode) and sst.st_dev == dev and sst.st_ino not in dirs_seen:
                    dirs_seen.add(sst.st_ino)
                    stack.append((sub, sst))
                # else: replaced by a file since the listing (its parent's stamp moved: counted
                # when that is read again) or a mount point now: not ours either way.
        return total(parts)

    @staticmethod
    def _list(d: str, dev: int, skip: set[str], seen: set[int]) -> tuple[Usage, tuple[str, ...], bool]:
        """A dir's entries: what its files hold, its subdirs, and whether that may be reused."""
        disk = apparent = files = errors = 0
        subdirs: list[str] = []
        keep = True
        try:
            with os.scandir(d) as it:
                for entry in it:
                    if skip and entry.path in skip:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError as e:
                        if e.errno not in VANISHED:
                            errors, keep = errors + 1, False
                        continue
                    if st.st_dev != dev:
                        continue  # a mount point
                    if stat.S_ISDIR(st.st_mode):
                        subdirs.append(entry.name)
                        continue
                    if st.st_nlink > 1:
                        keep = False
                        if st.st_ino in seen:
                            continue
                        seen.add(st.st_ino)
                    disk += st.st_blocks * 512
                    apparent += st.st_size
                    files += 1
        except OSError as e:
            errors += e.errno not in VANISHED
            keep = False
        return Usage(disk, apparent, files, errors, False), tuple(subdirs), keep
