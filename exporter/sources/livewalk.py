"""Small live dirs measured again by their settled listings: one lstat an inode a rescan.

A rescan walks every time what can change: containers' dirs, writable layers, volumes. For a
small one, a walk's own system calls (open, fstat, two reads of the entries, close: five a
dir) cost more than its inodes' lstats. Its names, though, change only with its dirs'
stamps: an entry made, removed or renamed in a dir, a link made or a mode changed, each moves
the dir's ctime. So while every dir of a tree keeps the (inode, ctime) it had when it was
listed, and that listing was made SETTLE_NS or more after the ctime (a second change within
the same tick would not move it: exporter.sources.stamps), the tree holds the names it held,
and an lstat of each (in C, one batch for all the trees of a run) gives what a walk would.
Any other answer (a stamp moved, an entry gone, a dir turned file, a mount come or gone) and
the tree is listed again now, with the same figures as du.walk.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from exporter.model import EMPTY, Usage
from exporter.sources import du
from exporter.sources.stamps import SETTLE_NS

_DIR, _OTHER, _MOUNT = 0, 1, 2  # what an entry was when listed: a dir, a non-dir, another fs's
# errno, mode, ino, dev, nlink, blocks, size, ctime_ns: inode and device unsigned (an
# overlayfs xino inode number can pass 2**63); C writes the same 64 bits either way.
_FIELDS = struct.Struct("qqQQqqqq")
_S_IFMT, _S_IFDIR = 0o170000, stat.S_IFDIR

KEEP_AT_MOST = 4096  # paths of one listing kept; a tree this big is walked by its hint anyway

_native = du._native  # the C extension, unless absent or DSE_WALK=python


def _lstat_many_python(paths: tuple[bytes, ...], base: bytes) -> bytes:
    out = bytearray()
    for p in paths:
        try:
            st = os.lstat(os.path.join(base, p))
        except OSError as e:
            out += _FIELDS.pack(e.errno or 5, 0, 0, 0, 0, 0, 0, 0)
            continue
        out += _FIELDS.pack(
            0, st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_blocks, st.st_size, st.st_ctime_ns
        )
    return bytes(out)


def lstat_many(paths: tuple[bytes, ...], base: bytes) -> bytes:
    """An lstat of each path, relative to the dir `base`: _FIELDS each, errno first (0 when it
    succeeded)."""
    return _native.lstat_many(paths, base) if _native is not None else _lstat_many_python(paths, base)


@dataclass(frozen=True, slots=True)
class _Listing:
    """A tree as listed: the root first, then each entry not excluded, in walk order."""

    paths: tuple[bytes, ...]
    kinds: bytes  # _DIR, _OTHER or _MOUNT per path
    inos: tuple[int, ...]  # a dir's inode (0 for the rest)
    ctimes: tuple[int, ...]  # a dir's ctime in ns (0 for the rest)
    dev: int  # the root's filesystem


class LiveTrees:
    """Trees measured by their settled listings (see the module doc), one listing per tree
    (keyed by path and exclude set). Not thread-safe: one per Walker, under its lock."""

    def __init__(self, settle_ns: int = SETTLE_NS) -> None:
        self.settle_ns = settle_ns
        self._listings: dict[Hashable, _Listing] = {}
        self._base: tuple[list[bytes], bytes] = ([], b"/")  # the trees' common dir, for their roots
        self._rels: dict[Hashable, tuple[_Listing, bytes, tuple[bytes, ...]]] = {}  # paths from it
        self.reused = 0  # trees measured by their listing, since made
        self.listed = 0  # trees listed (first time, unsettled, or changed), since made

    def measure(
        self, trees: Iterable[tuple[str, frozenset[str]]], deadline: float | None = None
    ) -> list[Usage]:
        """Each tree's Usage, as du.walk(path, exclude=…, deadline=…) gives it: a tree listed
        again that is still being read at `deadline` (it grew since) comes back partial."""
        trees = list(trees)
        known = [self._listings.get(t) for t in trees]
        roots = [lst.paths[0] for lst in known if lst is not None]  # absolute and normal, as kept
        if roots != self._base[0]:  # the same trees as last time, mostly
            self._base = (roots, os.path.commonpath(roots) if roots else b"/")
        base = self._base[1]
        pairs = [(t, lst) for t, lst in zip(trees, known, strict=True) if lst is not None]
        batch = tuple(p for t, lst in pairs for p in self._from(t, lst, base))
        try:
            stats = list(_FIELDS.iter_unpack(lstat_many(batch, base))) if batch else []
        except (OSError, ValueError, struct.error):  # none restated: each listed again
            known, stats = [None] * len(trees), []
        out: list[Usage] = []
        at = 0
        for tree, lst in zip(trees, known, strict=True):
            try:
                usage = None
                if lst is not None:
                    n = len(lst.paths)
                    usage = _restat(lst, stats[at : at + n])
                    at += n
                if usage is None:
                    usage = self._list(*tree, deadline)
                else:
                    self.reused += 1
            except Exception:  # noqa: BLE001 - one bad dir must not sink the scan (du._safe_walk)
                self._listings.pop(tree, None)
                usage = du.UNREADABLE
            out.append(usage)
        return out

    def retain(self, trees: set[Hashable]) -> None:
        """Forget the listings of trees not in `trees` (gone, or walked elsewhere now)."""
        for gone in [t for t in self._listings if t not in trees]:
            del self._listings[gone]
        for gone in [t for t in self._rels if t not in self._listings]:
            del self._rels[gone]

    def _from(self, tree: Hashable, lst: _Listing, base: bytes) -> tuple[bytes, ...]:
        """The listing's paths relative to `base` (a dir they all lie in), made once."""
        hit = self._rels.get(tree)
        if hit is not None and hit[0] is lst and hit[1] == base:
            return hit[2]
        cut = len(base) if base.endswith(b"/") else len(base) + 1
        rels = tuple(p[cut:] or b"." for p in lst.paths)
        self._rels[tree] = (lst, base, rels)
        return rels

    def _list(self, path: str, exclude: frozenset[str], deadline: float | None = None) -> Usage:
        """du.walk's figures, path by path, keeping the names if every dir was settled and
        they are not many (KEEP_AT_MOST: a tree grown big is walked, next time, by its hint)."""
        self.listed += 1
        key = (path, exclude)
        self._listings.pop(key, None)
        # Kept only for a root written plainly: its paths are cut to one base (measure).
        keep = os.path.isabs(path) and os.path.normpath(path) == path
        try:
            st = os.lstat(path)
        except OSError as e:
            return EMPTY if e.errno in du.VANISHED else du.UNREADABLE
        if (st.st_mode & _S_IFMT) != _S_IFDIR:
            return Usage(st.st_blocks * 512, st.st_size, 1, 0, False)
        excl = {os.path.normpath(rel).strip("/") for rel in exclude}
        root_dev, now = st.st_dev, time.time_ns()
        settled = now - st.st_ctime_ns >= self.settle_ns
        paths, kinds, inos, ctimes = [os.fsencode(path)], [_DIR], [st.st_ino], [st.st_ctime_ns]
        blocks, apparent, files, errors = st.st_blocks, 0, 1, 0
        seen = {st.st_ino}
        countdown, partial = du._CHECK_EVERY, False

        def add(path: bytes, kind: int, ino: int = 0, ctime: int = 0) -> None:
            nonlocal keep
            if not keep:
                return
            if len(paths) >= KEEP_AT_MOST:  # grown big: its names are not kept, nor gathered
                keep = False
                for kept in (paths, kinds, inos, ctimes):
                    kept.clear()
                return
            paths.append(path)
            kinds.append(kind)
            inos.append(ino)
            ctimes.append(ctime)

        stack = [(path, "")]
        while stack:
            d, rel = stack.pop()
            try:
                with os.scandir(d) as it:
                    for entry in it:
                        countdown -= 1
                        if countdown == 0:
                            countdown = du._CHECK_EVERY
                            if deadline is not None and time.monotonic() >= deadline:
                                partial = True
                                break
                        erel = f"{rel}/{entry.name}" if rel else entry.name
                        if erel in excl:
                            continue
                        try:
                            est = entry.stat(follow_symlinks=False)
                        except OSError as e:
                            errors += e.errno not in du.VANISHED
                            settled = False
                            continue
                        epath = os.fsencode(entry.path)
                        if est.st_dev != root_dev:
                            add(epath, _MOUNT)
                            continue  # a mount point: not ours
                        if (est.st_mode & _S_IFMT) == _S_IFDIR:
                            if est.st_ino in seen:
                                settled = False  # a same-device bind mount: walked once, as du
                                continue
                            seen.add(est.st_ino)
                            add(epath, _DIR, est.st_ino, est.st_ctime_ns)
                            settled = settled and now - est.st_ctime_ns >= self.settle_ns
                            stack.append((entry.path, erel))
                        else:
                            add(epath, _OTHER)
                            if est.st_nlink > 1:
                                if est.st_ino in seen:
                                    continue
                                seen.add(est.st_ino)
                            apparent += est.st_size
                        blocks += est.st_blocks
                        files += 1
            except OSError as e:
                errors += e.errno not in du.VANISHED
                settled = False
            if partial:
                break
        if errors:  # a dir it could not read (or a name past PATH_MAX): as du's own walk says
            return du.walk(path, exclude=exclude, deadline=deadline)
        if settled and keep and not partial:
            self._listings[key] = _Listing(tuple(paths), bytes(kinds), tuple(inos), tuple(ctimes), root_dev)
        return Usage(blocks * 512, apparent, files, errors, partial)


def _restat(lst: _Listing, stats: list[tuple[int, ...]]) -> Usage | None:
    """The tree's Usage from a fresh lstat of each of its listed paths, or None if any of them
    says the listing no longer holds."""
    dev = lst.dev
    blocks = apparent = files = 0
    seen: set[int] = set()
    for kind, ino, ctime, (err, mode, s_ino, s_dev, nlink, s_blocks, size, s_ctime) in zip(
        lst.kinds, lst.inos, lst.ctimes, stats, strict=True
    ):
        if err:
            return None  # gone, or unreadable now: listed again, which counts it as du would
        if kind == _MOUNT:
            if s_dev == dev:
                return None  # unmounted: what is there now is ours
            continue
        if s_dev != dev:
            return None  # a mount come over it
        is_dir = (mode & _S_IFMT) == _S_IFDIR
        if kind == _DIR:
            if not is_dir or s_ino != ino or s_ctime != ctime:
                return None  # its names may have changed
        elif is_dir:
            return None
        else:
            if nlink > 1:
                if s_ino in seen:
                    continue
                seen.add(s_ino)
            apparent += size
        blocks += s_blocks
        files += 1
    return Usage(blocks * 512, apparent, files, 0, False)
