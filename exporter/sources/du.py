"""The `du` engine: allocated bytes, apparent bytes and inodes of a directory tree.

The walk never follows symlinks, never opens anything but directories (with O_DIRECTORY, so
a fifo swapped in for a directory fails instead of blocking), stays on the filesystem of its
root and counts each inode once. It is iterative and fd-relative (`openat`/`fstatat`, like
du's fts), so neither deep trees nor paths longer than PATH_MAX stop it, and a directory
that holds pending subdirectories keeps one descriptor open, not a path.

Figures match GNU `du -sx --block-size=1` (disk) and `du -sx --inodes` (files); apparent
bytes follow Docker's own `calcSize` (moby pkg/directory): st_size of non-directories,
hard links once.

The walk itself runs in C (`_walk.c`, built by setup.py where a compiler is found) and in
Python otherwise (or with DSE_WALK=python in the environment): the same steps and figures,
at about twice the CPU per inode. `WALK_IMPL` says which one this process uses.
"""

from __future__ import annotations

import errno
import functools
import heapq
import os
import stat
import struct
import threading
import time
from array import array
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple, Protocol

from exporter.model import EMPTY, Usage, total  # noqa: F401 - re-exported: callers sum walks
from exporter.model import make_usage as _usage

if TYPE_CHECKING:
    from exporter.sources.livewalk import LiveTrees

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_S_IFMT, _S_IFDIR = 0o170000, stat.S_IFDIR
_CHECK_EVERY = 256  # entries between deadline checks: a clock read is cheap, but not free
VANISHED = (errno.ENOENT, errno.ENOTDIR)  # gone, or replaced by a non-directory, mid-walk
_GRACE = 5.0  # seconds past the deadline we wait for workers before giving up on them
_BATCHES_PER_WORKER = 16  # the pool's queue evens out hints that guess wrong (bench/scan_vs_du.py)
# A small run this cheap (its hints, inodes, and _PER_WALK a walk) is walked by this process
# alone: sharing it costs a round trip to the pool that takes longer than the walking saved
# (bench/containerd_engine.py's rescan, 43 walks of 130 inodes: 2.3 ms shared, 1.0 ms here).
_SHARE_ABOVE = 2_000
_PER_WALK = 8  # a walk's system calls beyond its inodes' (open, two reads of its entries, close)
# A dir this small (its hint, inodes last time) walked in this process is measured by its
# settled listing instead, one lstat an inode (exporter.sources.livewalk); a bigger one's walk
# costs little beyond its inodes, and a listing of it would be memory kept.
_LIVE_AT_MOST = 256

try:
    from exporter.sources import _walk as _native
except ImportError:  # built without a C compiler (setup.py's extension is optional)
    _native = None
if _native is not None and not all(
    hasattr(_native, f) for f in ("walk", "walk_children", "restat_trees", "stat_inodes", "stat_stamps")
):
    _native = None  # an older build left in place: the Python walk, as build_info says, not a crash
if os.environ.get("DSE_WALK") == "python":  # to compare, or to rule the C walk out
    _native = None
WALK_IMPL = "c" if _native is not None else "python"


_UNFINISHED = Usage(0, 0, 0, 0, True)  # a walk that never ran or never came back
UNREADABLE = Usage(0, 0, 0, 1, False)  # one entry we could not read


def one_inode(path: str) -> Usage:
    """One inode as du counts it, without descending: a file, or a directory's own blocks."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return EMPTY if e.errno in VANISHED else UNREADABLE
    return inode_usage(st)


def inode_usage(st: os.stat_result) -> Usage:
    """one_inode() of an lstat already made."""
    apparent = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    return Usage(st.st_blocks * 512, apparent, 1, 0, False)


INODE_STAT = struct.Struct("qqqq")  # stat_inodes' answer a path: errno (0: stat'ed), a dir, blocks, size


def stat_inodes(paths: tuple[bytes, ...], base: bytes) -> bytes:
    """An lstat of each path (relative to `base`, or absolute), INODE_STAT each, in one call:
    the same bytes while none of them changed (their Usages: inode_usages)."""
    if _native is not None:
        return _native.stat_inodes(paths, base)
    out = bytearray()
    for p in paths:
        try:
            if not p:  # as fstatat(dfd, "") answers
                raise FileNotFoundError(errno.ENOENT, "empty path")
            st = os.lstat(os.path.join(base, p))
        except OSError as e:
            out += INODE_STAT.pack(e.errno or errno.EIO, 0, 0, 0)
            continue
        out += INODE_STAT.pack(0, stat.S_ISDIR(st.st_mode), st.st_blocks, st.st_size)
    return bytes(out)


def stat_stamps(paths: tuple[bytes, ...]) -> bytes:
    """A stat of each path, through links (os.stat), INODE_STAT-sized each: errno (0: stat'ed),
    a dir, inode, mtime in ns. The same bytes while no dir among them changed."""
    if _native is not None:
        return _native.stat_stamps(paths)
    out = bytearray()
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as e:
            out += INODE_STAT.pack(e.errno or errno.EIO, 0, 0, 0)
            continue
        out += INODE_STAT.pack(0, stat.S_ISDIR(st.st_mode), *_signed(st.st_ino, st.st_mtime_ns))
    return bytes(out)


def stamp_stat(ino: int, mtime_ns: int) -> bytes:
    """What stat_stamps answers for a dir with this stamp."""
    return INODE_STAT.pack(0, 1, *_signed(ino, mtime_ns))


def _signed(ino: int, mtime_ns: int) -> tuple[int, int]:
    """The inode as C packs its unsigned 64 bits into an int64."""
    return (ino - (1 << 64) if ino >= 1 << 63 else ino), mtime_ns


def inode_usages(stats: bytes) -> list[tuple[Usage, bool]]:
    """Each path of stat_inodes' answer as one_inode() counts it, and whether it is a dir."""
    out = []
    for err, is_dir, blocks, size in INODE_STAT.iter_unpack(stats):
        if err:
            out.append((EMPTY if err in VANISHED else UNREADABLE, False))
        else:
            out.append((_usage((blocks * 512, 0 if is_dir else size, 1, 0, False)), bool(is_dir)))
    return out


class _Dir:
    """An open directory whose subdirectories are still on the stack (they are opened from its fd)."""

    __slots__ = ("fd", "pending", "rel")

    def __init__(self, fd: int, rel: str) -> None:
        self.fd, self.pending, self.rel = fd, 0, rel


def _norm_excludes(exclude: Iterable[str]) -> frozenset[str]:
    out = set()
    for rel in exclude:
        rel = os.path.normpath(os.fsdecode(rel)).strip("/")
        if rel and rel != "." and "\0" not in rel:  # no name holds a NUL: it could never match
            out.add(rel)
    return frozenset(out)


@functools.lru_cache(maxsize=1024)
def _native_excludes(exclude: frozenset[str]) -> tuple[bytes, ...]:
    """An exclude set as the C walk takes it: a scan passes the same few sets every rescan."""
    return tuple(os.fsencode(rel) for rel in _norm_excludes(exclude))


def walk(path: str | bytes, *, exclude: frozenset[str] = frozenset(), deadline: float | None = None) -> Usage:
    """Walk `path` (see the module doc). `exclude`: paths relative to `path`, neither entered nor counted.
    `deadline`: a time.monotonic() value; past it the walk stops and returns a partial Usage."""
    if _native is None:
        return walk_python(path, exclude=exclude, deadline=deadline)
    # The C walk reads a negative deadline as none; any deadline below 0 has passed anyway.
    # It takes a str path as it is (PyUnicode_FSConverter), excludes as bytes.
    disk, apparent, files, errors, partial = _native.walk(
        path, _native_excludes(frozenset(exclude)), -1.0 if deadline is None else max(deadline, 0.0)
    )
    return Usage(disk, apparent, files, errors, partial)


def walk_python(
    path: str | bytes, *, exclude: frozenset[str] = frozenset(), deadline: float | None = None
) -> Usage:
    """`walk` in Python: what runs without the C extension, and its reference in the tests."""
    path = os.fsdecode(path)
    excl = _norm_excludes(exclude)
    try:
        st = os.lstat(path)
    except OSError as e:
        # A missing root is the caller's business (it knows whether the dir should exist).
        return EMPTY if e.errno in VANISHED else UNREADABLE

    root_dev = st.st_dev
    disk, apparent, files, errors = st.st_blocks * 512, 0, 1, 0
    if (st.st_mode & _S_IFMT) != _S_IFDIR:
        return Usage(disk, st.st_size, files, errors, False)
    if deadline is not None and time.monotonic() >= deadline:
        return Usage(disk, apparent, files, errors, True)
    try:
        root_fd = os.open(path, _DIR_FLAGS)
    except OSError as e:
        return Usage(disk, apparent, files, errors + (e.errno not in VANISHED), False)

    # Inodes seen: multi-link files (hard links once) and directories (a same-device bind mount
    # cannot make us walk a tree twice, or loop). One device, so the inode number is the key.
    seen: set[int] = {st.st_ino}
    blocks = 0  # st_blocks summed, times 512 at the end
    partial = False
    countdown = _CHECK_EVERY
    stack: list[tuple[_Dir, str]] = []  # (open parent, name of a subdirectory to walk)
    cur: _Dir | None = _Dir(root_fd, "")
    try:
        while True:
            if cur is None:
                if not stack:
                    break
                parent, name = stack.pop()
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
                except OSError as e:
                    fd = -1
                    errors += e.errno not in VANISHED
                parent.pending -= 1
                if parent.pending == 0:
                    os.close(parent.fd)
                if fd < 0:
                    continue
                cur = _Dir(fd, f"{parent.rel}/{name}" if parent.rel else name) if excl else _Dir(fd, "")
            d = cur
            try:
                with os.scandir(d.fd) as it:
                    for entry in it:
                        countdown -= 1
                        if countdown == 0:
                            countdown = _CHECK_EVERY
                            if deadline is not None and time.monotonic() >= deadline:
                                partial = True
                                break
                        if excl and (f"{d.rel}/{entry.name}" if d.rel else entry.name) in excl:
                            continue
                        try:
                            st = entry.stat(follow_symlinks=False)  # fstatat(dir_fd, name, NOFOLLOW)
                        except OSError as e:
                            errors += e.errno not in VANISHED
                            continue
                        mode, ino, dev, nlink, _, _, size, _, _, _ = st  # unpacking beats 5 lookups
                        if dev != root_dev:
                            continue  # a mount point (a dir, or a bind-mounted file): not ours
                        if (mode & _S_IFMT) == _S_IFDIR:
                            if ino in seen:
                                continue
                            seen.add(ino)
                            d.pending += 1
                            stack.append((d, entry.name))
                        elif nlink > 1:
                            if ino in seen:
                                continue
                            seen.add(ino)
                            apparent += size
                        else:
                            apparent += size
                        blocks += st.st_blocks
                        files += 1
            except OSError as e:
                # scandir itself (EACCES on a dir we could open?) or a readdir failing midway.
                errors += e.errno not in VANISHED
            if d.pending == 0:
                os.close(d.fd)  # else its last subdirectory popped off the stack closes it
            cur = None
            if partial:
                break
    finally:
        # Whatever stopped us (the deadline, an exception), close every directory still held:
        # the one being read unless done with, and every parent with subdirectories pending.
        if cur is not None and cur.pending == 0:
            os.close(cur.fd)
        for parent in {id(p): p for p, _ in stack if p.pending > 0}.values():
            parent.pending = 0
            os.close(parent.fd)
    return Usage(disk + blocks * 512, apparent, files, errors, partial)


@dataclass(frozen=True, slots=True)
class WalkJob:
    key: Hashable  # the caller's id for the result (a typed key: exporter.stores.inventory.Key)
    path: str
    exclude: frozenset[str] = frozenset()
    hint: int = 0  # expected cost in any unit consistent within a run (files last time, recorded bytes)
    # Walk it in a worker whenever a pool can run (`workers` > 1): a dir that may be another
    # filesystem, say a volume on NFS, can hang in a system call, and only a process can be
    # killed. A worker that dies under it leaves it unfinished, never walked here instead.
    isolate: bool = False


def _safe_walk(job: WalkJob, deadline: float | None, python: bool = False) -> Usage:
    try:
        return (walk_python if python else walk)(job.path, exclude=job.exclude, deadline=deadline)
    except Exception:  # noqa: BLE001 - one bad directory must not sink the whole scan
        return UNREADABLE


def _live_usages(trees: LiveTrees, jobs: list[WalkJob], deadline: float | None) -> list[Usage]:
    """Small jobs measured by their settled listings, in this process (Walker._walk_here)."""
    return trees.measure([(job.path, job.exclude) for job in jobs], deadline)


def _walk_batch(jobs: list[WalkJob], deadline: float | None, python: bool = False) -> list[Usage]:
    # Runs in a worker process; module-level so it pickles by reference.
    return [_safe_walk(job, deadline, python) for job in jobs]


def _batches(jobs: list[WalkJob], n: int) -> list[list[WalkJob]]:
    """Deal jobs into at most n batches of about equal expected cost (largest first, each to the
    lightest batch), heaviest batch first. Batches cut the per-task round trips that dominate a
    run of many small dirs; several batches per worker let the pool's queue even out bad hints."""
    bins: list[tuple[int, int, list[WalkJob]]] = [(0, i, []) for i in range(min(n, len(jobs)))]
    for job in sorted(jobs, key=lambda j: -j.hint):  # stable: equal hints keep the caller's order
        cost, i, batch = heapq.heappop(bins)
        batch.append(job)
        heapq.heappush(bins, (cost + max(job.hint, 0) + 1, i, batch))  # +1: unknown costs count too
    return [batch for _, _, batch in sorted(bins, key=lambda b: (-b[0], b[1])) if batch]


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ChildWalks(NamedTuple):
    """Walks told by what they walk: each of `names` under `path`, walked with `exclude`; one
    job for all of them (Walker.start), not one per dir."""

    path: str
    names: tuple[str, ...]
    exclude: frozenset[str] = frozenset()


def _walk_children(
    path: str, names: tuple[str, ...], exclude: frozenset[str], deadline: float | None, python: bool
) -> array:
    """Each child walked as `walk` would (runs in a worker): their figures as one flat array
    of 5 per child, which crosses the pipe as one buffer, not 10,000 objects."""
    if _native is not None and not python:
        excl = tuple(os.fsencode(rel) for rel in _norm_excludes(exclude))
        until = -1.0 if deadline is None else max(deadline, 0.0)
        try:  # in C, each child relative to one descriptor of `path`
            return array(
                "q", _native.walk_children(os.fsencode(path), tuple(map(os.fsencode, names)), excl, until)
            )
        except (ValueError, MemoryError):  # a name with a NUL (never listed), or no memory: one by one
            pass
    out = array("q")
    for name in names:
        out.extend(_safe_walk(WalkJob(name, f"{path}/{name}", exclude), deadline, python))
    return out


class Prefetched(Protocol):
    """Walks started before they were asked for (Walker.start): what a reader or a plan takes
    instead of walking again."""

    def children(self, path: str, exclude: frozenset[str]) -> Mapping[str, Usage]:
        """The complete walks of `path`'s children with `exclude`, by name; {} for none."""
        ...


class _NothingStarted:
    def children(self, path: str, exclude: frozenset[str]) -> Mapping[str, Usage]:
        return {}


NOTHING_STARTED: Prefetched = _NothingStarted()


class Started:
    """Walks handed to the workers by Walker.start."""

    def __init__(
        self,
        futures: dict[Future[array], ChildWalks],
        walker: Walker | None = None,
        deadline: float | None = None,
    ) -> None:
        self._futures = futures
        self._walker = walker  # counts the walks that came back (Walker.walks)
        self._deadline = deadline
        self._got: dict[tuple[str, frozenset[str]], dict[str, Usage]] = {}
        self.jobs = sum(len(w.names) for w in futures.values())  # dirs handed to the workers

    def children(self, path: str, exclude: frozenset[str]) -> Mapping[str, Usage]:
        """What came back complete of the walks of `path`'s children with `exclude`, waiting
        for those only, and no later than the deadline; each asked for once."""
        which = (path, exclude)
        got = self._got.get(which)
        if got is not None:
            return got
        mine = [f for f, w in self._futures.items() if w.path == path and w.exclude == exclude]
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        done, _ = wait(mine, timeout=left)
        got = self._got[which] = {}
        for fut in done:
            if fut.cancelled() or fut.exception() is not None:
                continue
            w = self._futures[fut]
            if self._walker is not None:
                self._walker.walks += len(w.names)
            flat = fut.result()
            fields = [flat[i::5] for i in range(4)]  # the flat array in fives, sliced in C
            usages = map(_usage, zip(*fields, repeat(False)))  # and zipped in C
            if not any(flat[4::5]):  # the common case: none partial
                got.update(zip(w.names, usages, strict=False))
                continue
            for name, usage, partial in zip(w.names, usages, flat[4::5], strict=False):
                if not partial:
                    got[name] = usage
        return got


class Walker:
    """Runs WalkJobs in parallel across worker processes: the Python walk is GIL-bound, and a
    worker stuck on a hung mount can be killed, which a thread in a syscall cannot.

    The pool is persistent and created lazily from a "forkserver" context (the exporter has
    threads, so plain fork is unsafe); `close()` shuts it down. `workers=1`, or a single job
    (unless `isolate`), walks in-process with no pool. If the pool breaks (a worker killed), the run finishes
    in-process and the pool is recreated next time. `walks` counts walks performed.
    `python_walk`: walk in Python even where the C walk is built (bench/scan_vs_du.py compares).
    """

    def __init__(self, workers: int | None = None, python_walk: bool = False) -> None:
        self.workers = max(1, workers if workers is not None else _default_workers())
        self.python_walk = python_walk
        self.walks = 0
        from exporter.sources.livewalk import LiveTrees  # here, not at the top: livewalk imports du

        self.live = LiveTrees()  # the listings of the small dirs this process walks (_walk_here)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # one run at a time; close() may come from another thread
        self._stopping = False  # shutdown() called: what the workers had is not walked here

    def _get_pool(self) -> ProcessPoolExecutor | None:
        if self._pool is None:
            try:
                import multiprocessing

                ctx = multiprocessing.get_context("forkserver")
                # Preloading makes workers cheap to start and importable whatever the cwd.
                ctx.set_forkserver_preload([__name__])
                self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
            except (OSError, ValueError, ImportError):
                return None
        return self._pool

    def _drop_pool(self, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:  # workers stuck past the deadline (e.g. on a hung mount): they are ours to end
            for proc in list((getattr(pool, "_processes", None) or {}).values()):
                try:
                    proc.kill()
                except (OSError, ValueError, AttributeError):
                    pass
        pool.shutdown(wait=not kill, cancel_futures=True)

    def _local(self, job: WalkJob, deadline: float | None) -> Usage:
        self.walks += 1
        return _safe_walk(job, deadline, self.python_walk)

    def run(
        self,
        jobs: list[WalkJob],
        deadline: float | None = None,
        local_below: int = 0,
        alongside: Callable[[], object] | None = None,
    ) -> dict[Hashable, Usage]:
        """Walk every job; a key given twice gets the sum. Never raises for per-directory problems:
        an unreadable dir shows in `errors`, an unfinished one as a partial (possibly zero) Usage.
        Jobs go to the workers in batches balanced by `hint` (see _batches), biggest first. With
        `local_below`, a run whose hints are all known and add up to less is small: it never
        starts the pool; if the pool is up, this process walks one share while the workers walk
        the others (one batch each, so one round trip), else it walks everything; a small run
        cheaper than _SHARE_ABOVE this process walks alone. An `isolate` job goes to the pool in
        any case, starting it if need be. `alongside`: work for this process while the workers
        walk (or before it walks, with no pool)."""
        with self._lock:
            try:
                return self._run(jobs, deadline, local_below, alongside)
            finally:  # the listings of dirs this run did not ask for are dropped
                self.live.retain({(j.path, j.exclude) for j in jobs})

    def _run(
        self,
        jobs: list[WalkJob],
        deadline: float | None,
        local_below: int,
        alongside: Callable[[], object] | None,
    ) -> dict[Hashable, Usage]:
        results: dict[Hashable, Usage] = {}

        def add(key: Hashable, usage: Usage) -> None:
            results[key] = results[key] + usage if key in results else usage

        if self._stopping:  # shutdown() came first: the exporter stops, nothing is walked
            for job in jobs:
                add(job.key, _UNFINISHED)
            return results

        hints = [j.hint for j in jobs]  # a comprehension, not generators: a rescan's dozens of jobs
        hinted = sum(hints)
        small = local_below > 0 and (not hints or min(hints) > 0) and hinted < local_below
        isolated = [j for j in jobs if j.isolate]
        alone = small and hinted + _PER_WALK * len(jobs) < _SHARE_ABOVE
        pool = None
        if self.workers > 1 and (isolated or (len(jobs) > 1 and not alone)):
            pool = self._pool if small and not isolated else self._get_pool()
        if pool is None:  # one worker asked for, a run walked alone, or no pool can start: all here
            if alongside is not None:
                alongside()
            self._walk_here(jobs, deadline, add)
            return results

        futures: dict[Future[list[Usage]], list[WalkJob]] = {}
        redo: list[WalkJob] = []
        dropped_here = False
        if alone:  # all but the isolated here, while the workers walk those (one hung, the rest go on)
            mine, batches = [j for j in jobs if not j.isolate], _batches(isolated, self.workers)
        elif small:
            shares = _batches([j for j in jobs if not j.isolate], self.workers)
            mine = shares.pop() if shares else []  # the lightest: this process waits anyway
            if isolated:  # the rest, balanced again over every worker
                batches = _batches([j for share in shares for j in share] + isolated, self.workers)
            else:
                batches = shares
        else:
            batches, mine = _batches(jobs, self.workers * _BATCHES_PER_WORKER), []
        for i, batch in enumerate(batches):
            try:
                futures[pool.submit(_walk_batch, batch, deadline, self.python_walk)] = batch
            except (BrokenProcessPool, RuntimeError, OSError):
                # OSError: the pool could not start (e.g. no writable temp dir for the
                # forkserver's socket on a read-only root): walk here, try again next run.
                # RuntimeError after shutdown(): unfinished.
                rest = [job for b in batches[i:] for job in b]
                if self._stopping:
                    for job in rest:
                        add(job.key, _UNFINISHED)
                else:
                    redo, dropped_here = rest, True
                    self._drop_pool(kill=True)
                break
        if alongside is not None:
            alongside()
        self._walk_here(mine, deadline, add)
        # A broken pool fails every outstanding future at once, so waiting for all is prompt.
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic()) + _GRACE
        done, pending = wait(futures, timeout=timeout)
        for fut in done:
            batch = futures[fut]
            if fut.cancelled():  # queued when the pool was dropped
                if dropped_here and not self._stopping:  # by this run, the pool broken: walked here
                    redo += batch
                else:  # by shutdown(): unfinished
                    for job in batch:
                        add(job.key, _UNFINISHED)
                continue
            exc = fut.exception()
            if exc is None:
                self.walks += len(batch)
                for job, usage in zip(batch, fut.result(), strict=True):
                    add(job.key, usage)
            elif isinstance(exc, BrokenProcessPool):
                # A worker died under this batch (killed, or shutdown(): the exporter stops, so
                # unfinished). An isolated job in it may be what hangs: unfinished, retried by
                # a fresh pool next run.
                redo += [job for job in batch if not (job.isolate or self._stopping)]
                for job in batch:
                    if job.isolate or self._stopping:
                        add(job.key, _UNFINISHED)
            else:  # e.g. a job that would not pickle: that batch's problem only
                for job in batch:
                    add(job.key, UNREADABLE)
        for fut in pending:
            # Past deadline + grace and still walking (a hung mount?): what we know is nothing.
            for job in futures[fut]:
                add(job.key, _UNFINISHED)
        if redo or pending:
            self._drop_pool(kill=True)  # recreated on the next run
        self._walk_here(redo, deadline, add)
        return results

    def start(self, walks: Iterable[ChildWalks], deadline: float | None = None) -> Started:
        """Hand `walks` to the workers and return at once (the caller works meanwhile); only with
        a pool (`workers` > 1) that can run, else nothing is started. What a worker does not
        finish is simply absent from `Started.children`: the caller walks it as it would have."""
        walks = [w for w in walks if w.names]
        if self.workers < 2 or not walks or self._stopping:
            return Started({}, deadline=deadline)
        with self._lock:
            pool = self._get_pool()
            futures: dict[Future[array], ChildWalks] = {}
            if pool is not None:
                # One worker fewer than the pool has: this process is busy meanwhile (reading
                # the store's metadata), and a core of its own is what it needs.
                shares = max(1, self.workers - 1)
                parts = [
                    w._replace(names=w.names[i : i + step])
                    for w in walks
                    for step in (-(-len(w.names) // shares),)
                    for i in range(0, len(w.names), step)
                ]
                for part in parts:
                    try:
                        futures[pool.submit(_walk_children, *part, deadline, self.python_walk)] = part
                    except (BrokenProcessPool, RuntimeError, OSError):
                        break  # the next run() finds the pool broken and starts another
        return Started(futures, self, deadline)

    def _walk_here(
        self, jobs: list[WalkJob], deadline: float | None, add: Callable[[Hashable, Usage], None]
    ) -> None:
        """Walk `jobs` in this process, heaviest first; the small ones by their listings."""
        live: list[WalkJob] = []
        if not self.python_walk and (deadline is None or time.monotonic() < deadline):
            live = [j for j in jobs if 0 < j.hint <= _LIVE_AT_MOST and not j.isolate]
        for job, usage in zip(live, _live_usages(self.live, live, deadline) if live else (), strict=True):
            self.walks += 1
            add(job.key, usage)
        small = set(map(id, live))
        for job in sorted((j for j in jobs if id(j) not in small), key=lambda j: -j.hint):
            add(job.key, self._local(job, deadline))

    def close(self) -> None:
        with self._lock:
            self._drop_pool()

    def shutdown(self) -> None:
        """Stop now, from another thread, even mid-scan: kill the workers without waiting for
        the scan that holds the lock (its unfinished jobs come back partial)."""
        self._stopping = True
        self._drop_pool(kill=True)

    def __enter__(self) -> Walker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
