"""What one read of a store went by, so that the next can tell in one call that nothing of it
changed.

A rescan of an unchanged store reads no file and lists no dir: each listing and parsed entry
it holds is trusted while the settled stamp of its dir holds (exporter.sources.stamps). So a
read that went by settled stamps alone (and stat'ed a few single inodes) would, with every one
of them the same, give what it gave: a reader may then hand back its last layout after one
stat of each (du.stat_stamps) instead of reading again. Every way a read looks at the disk
beyond a stamp (a listing, a file opened, a bolt file read) voids the witness, so a read that
had to look is never taken as a stand-in for the next. Per thread of control (a ContextVar):
the engine sampler's reads, in their own thread, are not a scan's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from exporter.model import Usage
from exporter.sources.du import inode_usages, one_inode, stamp_stat, stat_inodes, stat_stamps

_current: ContextVar[Witness | None] = ContextVar("witness", default=None)


class Witness:
    """The settled dir stamps and the single inodes one read went by (see the module doc)."""

    def __init__(self) -> None:
        self.void = False  # the read looked at something no stamp covers
        self._stamps: dict[str, tuple[int, int]] = {}
        self._inodes: dict[str, bytes] = {}
        self._check: tuple[tuple[bytes, ...], bytes, tuple[bytes, ...], bytes] | None = None

    def stamp(self, path: str, stamp: tuple[int, int] | None) -> None:
        """A dir's settled stamp as the read took it (None: not settled, or no dir)."""
        if stamp is None or self._stamps.setdefault(path, stamp) != stamp:
            self.void = True  # not to be trusted, or it moved within the read

    def inode(self, path: str) -> Usage:
        """One inode measured by the read (du.one_inode's figure), kept with its lstat."""
        raw = stat_inodes((os.fsencode(path),), b".")
        if self._inodes.setdefault(path, raw) != raw:
            self.void = True
        return inode_usages(raw)[0][0]

    def holds(self) -> bool:
        """Whether every stamp and inode is as the read found it (one stat each, in C)."""
        if self.void:
            return False
        if self._check is None:
            stamps = tuple(map(os.fsencode, self._stamps))
            want = b"".join(stamp_stat(ino, mtime) for ino, mtime in self._stamps.values())
            inodes = tuple(map(os.fsencode, self._inodes))
            self._check = (stamps, want, inodes, b"".join(self._inodes.values()))
        stamps, want, inodes, stats = self._check
        return stat_stamps(stamps) == want and stat_inodes(inodes, b".") == stats


@contextmanager
def witnessing() -> Iterator[Witness]:
    """Within it, this thread's reads tell the witness what they went by."""
    w = Witness()
    token = _current.set(w)
    try:
        yield w
    finally:
        _current.reset(token)


def note_stamp(path: str, stamp: tuple[int, int] | None) -> None:
    w = _current.get()
    if w is not None:
        w.stamp(path, stamp)


def unwitnessed() -> None:
    """The read looks at what no stamp covers (it lists, opens or parses): no stand-in."""
    w = _current.get()
    if w is not None:
        w.void = True


def witnessed_inode(path: str) -> Usage:
    """du.one_inode(path), kept by the witness when there is one."""
    w = _current.get()
    return one_inode(path) if w is None else w.inode(path)
