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

import operator
import os
import stat
import struct
import time
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from exporter.model import EMPTY, Usage, make_usage
from exporter.sources import du
from exporter.sources.stamps import SETTLE_NS

_DIR, _OTHER, _MOUNT = 0, 1, 2  # what an entry was when listed: a dir, a non-dir, another fs's
# Inodes and devices unsigned (an overlayfs xino inode number can pass 2**63); C compares the
# same 64 bits either way.
_ENTRY = struct.Struct("qQq")  # a listed path: its kind, a dir's inode and ctime (else 0, 0)
_TREE = struct.Struct("qQ")  # a tree of a batch: its count of paths, its root's device
_HELD = struct.Struct("qqqq")  # a tree restated: held (1, else 0), blocks of 512, apparent, inodes
_S_IFMT, _S_IFDIR = 0o170000, stat.S_IFDIR

KEEP_AT_MOST = 4096  # paths of one listing kept; a tree this big is walked by its hint anyway

_native = du._native  # the C extension, unless absent or DSE_WALK=python


def _lstat_python(paths: tuple[bytes, ...], base: bytes) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    for p in paths:
        try:
            st = os.lstat(os.path.join(base, p))
        except OSError as e:
            out.append((e.errno or 5, 0, 0, 0, 0, 0, 0, 0))
            continue
        out.append(
            (0, st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_blocks, st.st_size, st.st_ctime_ns)
        )
    return out


def _restat_trees_python(paths: tuple[bytes, ...], base: bytes, entries: bytes, trees: bytes) -> bytes:
    out, at = bytearray(), 0
    for count, dev in _TREE.iter_unpack(trees):
        listed = list(_ENTRY.iter_unpack(entries[at * _ENTRY.size : (at + count) * _ENTRY.size]))
        usage = _restat(dev, listed, _lstat_python(paths[at : at + count], base))
        out += (
            _HELD.pack(0, 0, 0, 0)
            if usage is None
            else _HELD.pack(1, usage.disk_bytes // 512, usage.apparent_bytes, usage.files)
        )
        at += count
    return bytes(out)


def restat_trees(paths: tuple[bytes, ...], base: bytes, entries: bytes, trees: bytes) -> bytes:
    """Each tree's figures from a fresh lstat of its listed paths (relative to the dir `base`,
    one tree's after another's; `entries`, _ENTRY each; `trees`, _TREE each): _HELD a tree,
    held 0 where a path says its listing no longer holds."""
    if _native is not None:
        return _native.restat_trees(paths, base, entries, trees)
    return _restat_trees_python(paths, base, entries, trees)


@dataclass(frozen=True, slots=True)
class _Listing:
    """A tree as listed: the root first, then each entry not excluded, in walk order."""

    paths: tuple[bytes, ...]
    entries: bytes  # _ENTRY a path: _DIR, _OTHER or _MOUNT; a dir's inode and ctime in ns
    dev: int  # the root's filesystem


class LiveTrees:
    """Trees measured by their settled listings (see the module doc), one listing per tree
    (keyed by path and exclude set). Not thread-safe: one per Walker, under its lock."""

    def __init__(self, settle_ns: int = SETTLE_NS) -> None:
        self.settle_ns = settle_ns
        self._listings: dict[Hashable, _Listing] = {}
        self._rels: dict[Hashable, tuple[_Listing, bytes, tuple[bytes, ...]]] = {}  # paths from it
        # The last batch, as restat_trees takes it: made again only when its listings change.
        self._batch: tuple[tuple[_Listing, ...], bytes, tuple[bytes, ...], bytes, bytes] | None = None
        # The last run's figures when every tree held: (its batch, restat_trees' answer, Usages).
        self._last: tuple[object, bytes, tuple[Usage, ...]] | None = None
        self.reused = 0  # trees measured by their listing, since made
        self.listed = 0  # trees listed (first time, unsettled, or changed), since made

    def measure(
        self, trees: Iterable[tuple[str, frozenset[str]]], deadline: float | None = None
    ) -> list[Usage]:
        """Each tree's Usage, as du.walk(path, exclude=…, deadline=…) gives it: a tree listed
        again that is still being read at `deadline` (it grew since) comes back partial."""
        trees = list(trees)
        known = [self._listings.get(t) for t in trees]
        kept = tuple(filter(None, known))  # the trees listed before (a _Listing is never falsy)
        held: list[tuple[int, int, int, int]] = []
        raw = b""
        if kept:
            paths, base, entries, counts = self._batch_of(trees, known, kept)
            try:
                raw = restat_trees(paths, base, entries, counts)
            except (OSError, ValueError, struct.error):  # none restated: each listed again
                raw = _HELD.pack(0, 0, 0, 0) * len(kept)
            last = self._last
            if len(kept) == len(trees) and last is not None and last[0] is self._batch and last[1] == raw:
                self.reused += len(trees)  # every tree held, with the same figures: the same objects
                return list(last[2])
            held = list(_HELD.iter_unpack(raw))
        out: list[Usage] = []
        at, relisted = 0, False
        for tree, lst in zip(trees, known, strict=True):
            try:
                usage = None
                if lst is not None:
                    ok, blocks, apparent, files = held[at]
                    at += 1
                    if ok:
                        usage = make_usage((blocks * 512, apparent, files, 0, False))
                if usage is None:
                    relisted = True
                    usage = self._list(*tree, deadline)
                else:
                    self.reused += 1
            except Exception:  # noqa: BLE001 - one bad dir must not sink the scan (du._safe_walk)
                self._listings.pop(tree, None)
                usage = du.UNREADABLE
            out.append(usage)
        self._last = None
        if relisted:  # the next run's batch made now, once, if every tree has its listing
            now = [self._listings.get(t) for t in trees]
            if all(now):
                self._batch_of(trees, now, tuple(now))  # type: ignore[arg-type]
        elif kept:
            # Every tree held: a next run finding the same figures hands back these objects
            # (what is derived from them downstream is kept by identity).
            self._last = (self._batch, raw, tuple(out))
        return out

    def _batch_of(
        self,
        trees: list[tuple[str, frozenset[str]]],
        known: list[_Listing | None],
        kept: tuple[_Listing, ...],
    ) -> tuple[tuple[bytes, ...], bytes, bytes, bytes]:
        """restat_trees' arguments for the `kept` listings: last run's while they are the same."""
        last = self._batch
        if last is not None and len(last[0]) == len(kept) and all(map(operator.is_, last[0], kept)):
            return last[2], last[1], last[3], last[4]
        base = os.path.commonpath([lst.paths[0] for lst in kept])  # the roots: absolute, normal
        listed = [(t, lst) for t, lst in zip(trees, known, strict=True) if lst is not None]
        paths = tuple(p for t, lst in listed for p in self._from(t, lst, base))
        entries = b"".join(lst.entries for lst in kept)
        counts = b"".join(_TREE.pack(len(lst.paths), lst.dev) for lst in kept)
        self._batch = (kept, base, paths, entries, counts)
        return paths, base, entries, counts

    def retain(self, trees: set[Hashable]) -> None:
        """Forget the listings of trees not in `trees` (gone, or walked elsewhere now)."""
        gone = [t for t in self._listings if t not in trees]
        for tree in gone:
            del self._listings[tree]
        for tree in [t for t in self._rels if t not in self._listings]:
            del self._rels[tree]
        if gone:
            self._batch = self._last = None  # they hold their listings alive

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
        paths, entries = [os.fsencode(path)], [_ENTRY.pack(_DIR, st.st_ino, st.st_ctime_ns)]
        blocks, apparent, files, errors = st.st_blocks, 0, 1, 0
        seen = {st.st_ino}
        countdown, partial = du._CHECK_EVERY, False

        def add(path: bytes, kind: int, ino: int = 0, ctime: int = 0) -> None:
            nonlocal keep
            if not keep:
                return
            if len(paths) >= KEEP_AT_MOST:  # grown big: its names are not kept, nor gathered
                keep = False
                paths.clear()
                entries.clear()
                return
            paths.append(path)
            entries.append(_ENTRY.pack(kind, ino, ctime))

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
            self._listings[key] = _Listing(tuple(paths), b"".join(entries), root_dev)
        return Usage(blocks * 512, apparent, files, errors, partial)


def _restat(dev: int, listed: list[tuple[int, ...]], stats: list[tuple[int, ...]]) -> Usage | None:
    """A tree's Usage from a fresh lstat of each of its listed paths (`listed`: _ENTRY each, its
    root on `dev`), or None if any of them says the listing no longer holds (C: restat_trees)."""
    blocks = apparent = files = 0
    seen: set[int] = set()
    for (kind, ino, ctime), (err, mode, s_ino, s_dev, nlink, s_blocks, size, s_ctime) in zip(
        listed, stats, strict=True
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
