"""The walk plan: a store's layout and what the cache holds -> the walks this scan needs.

Knows no layout: every dir comes as a typed record (exporter.stores.inventory) that says
whose it is and whether it can change. What cannot have changed comes from the cache; single
inodes are stat'ed here; the rest becomes WalkJobs for the Walker.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from exporter.model import Usage, total
from exporter.scan.cache import UsageCache
from exporter.scan.results import Results
from exporter.sources.du import NOTHING_STARTED, Prefetched, WalkJob, inode_usages, one_inode, stat_inodes
from exporter.sources.stamps import Stamp
from exporter.stores.inventory import (
    NO_RESULTS,
    AreaDir,
    Key,
    LayerArea,
    MetaDir,
    Owner,
    Part,
    Reuse,
    StoreLayout,
    make_key,
)

BYTES_PER_FILE = 4096  # a layer's guessed inodes from its recorded bytes: a rough median file


@dataclass(frozen=True, slots=True)
class TreeWalk:
    """A tree written by atomic renames only, walked in this process (exporter.sources.stamps)."""

    key: Key
    path: str
    exclude: frozenset[str]


@dataclass(frozen=True, slots=True)
class GroupWalk:
    """A group taken apart this scan: its figure is the sum of `parts` once they are all in."""

    key: Key
    stamp: Stamp | None  # the figure is kept while this holds (None: not settled, not kept)
    members: UsageCache  # where its members' walks are kept
    parts: tuple[Key, ...]  # its own inode and its members


@dataclass(frozen=True, slots=True)
class Inodes:
    """The single inodes a plan stats every scan, in one call (du.stat_inodes): the root's
    top-level files first (`tops` of them), the itemised dirs' own inodes and loose files,
    each container's logs (several files, one result)."""

    keys: tuple[Key, ...]
    counts: tuple[int, ...]  # paths of each key, in order
    paths: tuple[bytes, ...]  # relative to the root, or absolute
    tops: int = 0

    def usages(self, stats: bytes, new: bool = False) -> dict[Key, Usage] | None:
        """Each key's figure from stat_inodes' answer; None when a top-level file is a dir now
        (walked, which only a new plan says; a `new` plan's counts its own inode)."""
        got = inode_usages(stats)
        out: dict[Key, Usage] = {}
        at = 0
        for i, (key, n) in enumerate(zip(self.keys, self.counts, strict=True)):
            if i < self.tops and got[at][1] and not new:
                return None
            out[key] = got[at][0] if n == 1 else total([u for u, _ in got[at : at + n]])
            at += n
        return out


def _inodes(layout: StoreLayout, top_files: list[str]) -> Inodes:
    keys: list[Key] = []
    counts: list[int] = []
    paths: list[str] = []
    for rel in (*top_files, *layout.entries):
        keys.append(Key(Part.ENTRY, rel))
        counts.append(1)
        paths.append(rel)
    for c in layout.containers:
        keys.append(Key(Part.LOGS, c.id))
        counts.append(len(c.logs))
        paths.extend(c.logs)
    return Inodes(tuple(keys), tuple(counts), tuple(map(os.fsencode, paths)), len(top_files))


@dataclass
class Plan:
    jobs: list[WalkJob] = field(default_factory=list)
    known: dict[Key, Usage] = field(default_factory=dict)  # results needing no walk
    trees: list[TreeWalk] = field(default_factory=list)
    # Jobs whose result may be kept: in which cache, valid while which stamp holds.
    reusable: dict[Key, tuple[UsageCache, Stamp | None]] = field(default_factory=dict)
    groups: list[GroupWalk] = field(default_factory=list)
    # Results taken whole: the layer area's settled part (the same object while it holds, see
    # _plan_area) and what the reader measured once (StoreLayout.measured_settled).
    settled: Mapping[Key, Usage] = field(default_factory=lambda: NO_RESULTS)
    measured_settled: Mapping[Key, Usage] = field(default_factory=lambda: NO_RESULTS)
    sweeps: list[UsageCache] = field(default_factory=list)  # sub-caches this plan read whole
    walked_ahead: Counter[str] = field(default_factory=Counter)  # taken from the prefetch, by kind
    inodes: Inodes = field(default_factory=lambda: Inodes((), (), ()))
    inode_stats: bytes = b""  # what stat_inodes answered for them
    again: bool = False  # last plan's, its inodes stat'ed anew (PlanMemo.again): the cache as it was

    def results(self, walked: Mapping[Key, Usage]) -> Results:
        return Results({**self.known, **walked}, (self.settled, self.measured_settled))

    def keep(self, cache: UsageCache, walked: Mapping[Key, Usage], ok: bool) -> None:
        """After the walk, finished (`ok`) or not: the cache keeps what may be reused and
        forgets what this scan did not ask for (scans that keep failing must not grow it)."""
        if self.again:  # it read nothing from the cache and walked nothing it keeps
            return
        for key, (where, stamp) in self.reusable.items():
            usage = walked.get(key)
            if usage is not None:
                where.put(key, usage, stamp)
        for sub in self.sweeps:
            sub.sweep()
        for group in self.groups:
            group.members.sweep()
            if ok and group.stamp:  # every part is in: the group as one figure from now on
                cache.put(group.key, total(walked.get(k) or self.known[k] for k in group.parts), group.stamp)
        cache.sweep()


class _Planner:
    def __init__(
        self,
        cache: UsageCache,
        hints: Mapping[Key, int],
        plan: Plan | None = None,
        root: str = "",
        known: dict[Key, Usage] | None = None,
    ) -> None:
        self.cache, self.hints, self.plan, self.root = cache, hints, plan or Plan(), root
        self.known = self.plan.known if known is None else known  # where cache hits go

    def walk(
        self,
        key: Key,
        path: str,
        exclude: frozenset[str] = frozenset(),
        reuse: Reuse = Reuse.NEVER,
        stamp: Stamp | None = None,
        guess: int = 0,
        isolate: bool = False,
    ) -> None:
        """A dir to measure: from the cache if it may be reused and is there, else a job."""
        plan = self.plan
        if reuse is Reuse.SETTLED:
            hit = self.cache.get(key, stamp)
            if hit is not None:
                self.known[key] = hit
                return
            plan.reusable[key] = (self.cache, stamp)
        plan.jobs.append(WalkJob(key, path, exclude, self.hints.get(key, guess), isolate))


def _plan_group(planner: _Planner, group: MetaDir) -> None:
    """One figure for the whole group while its stamp holds, else its members one by one."""
    plan, key = planner.plan, Key(Part.META, group.rel)
    members = planner.cache.group(key)
    hit = planner.cache.get(key, group.stamp) if group.stamp else None
    if hit is not None:
        plan.known[key] = hit
        return
    own = Key(Part.ENTRY, group.rel)
    plan.known[own] = one_inode(f"{planner.root}/{group.rel}")
    inner = _Planner(members, planner.hints, plan, planner.root)
    for m in group.members:
        inner.walk(Key(Part.META, m.rel), f"{planner.root}/{m.rel}", m.exclude, m.reuse, m.stamp)
    parts = (own, *(Key(Part.META, m.rel) for m in group.members))
    plan.groups.append(GroupWalk(key, group.stamp, members, parts))


def make_plan(
    layout: StoreLayout,
    cache: UsageCache,
    hints: Mapping[Key, int],
    memo: PlanMemo | None = None,
    prefetched: Prefetched = NOTHING_STARTED,
    mounted: Callable[[str], bool] = lambda path: True,
) -> Plan:
    """`hints`: inodes each dir walked every scan had last time (the Walker's balance);
    `memo`: what the last plan of the same sampler left (the layer area's settled part);
    `prefetched`: walks started before the layout was read (StoreReader.prefetch), taken
    for the layer dirs they cover instead of a job each; `mounted`: whether a mount may be at
    or below a volume's data (exporter.sources.mounts), by default always."""
    if memo is not None and prefetched is NOTHING_STARTED:
        again = memo.again(layout, hints, mounted)
        if again is not None:
            return again
    planner = _Planner(cache, hints, root=layout.root)
    plan, walk, root = planner.plan, planner.walk, layout.root

    top_files = []
    for name in layout.top_dirs:
        if name in layout.itemised:
            continue
        path = os.path.join(root, name)
        if _is_dir(path):
            walk(Key(Part.META, name), path)
        else:
            top_files.append(name)
    plan.inodes = _inodes(layout, top_files)
    plan.inode_stats = stat_inodes(plan.inodes.paths, os.fsencode(root))
    plan.known.update(plan.inodes.usages(plan.inode_stats, new=True) or {})
    plan.known.update(layout.measured)
    plan.measured_settled = layout.measured_settled
    for meta in layout.meta:
        key = Key(Part.META, meta.rel)
        if meta.group:
            _plan_group(planner, meta)
        elif meta.reuse is Reuse.TREE:
            plan.trees.append(TreeWalk(key, f"{root}/{meta.rel}", meta.exclude))
        else:
            walk(key, f"{root}/{meta.rel}", meta.exclude, reuse=meta.reuse, stamp=meta.stamp)

    if layout.area is not None:
        plan.settled = _plan_area(planner, layout, memo, prefetched)
    for c in layout.containers:
        walk(Key(Part.CONTAINER, c.id), c.path, c.exclude)
    for v in layout.volumes:
        # Data with a mount at or below it (NFS, a bind) is walked in a worker when one can run,
        # which can be killed if it hangs (du.WalkJob.isolate); a plain dir, here.
        walk(Key(Part.VOLUME_DATA, v.name), v.data, isolate=mounted(v.data))
        walk(Key(Part.VOLUME_REST, v.name), v.path, v.exclude)
    if memo is not None:  # the next scan's, if the same: this plan as again() hands it back
        memo.last = (layout, hints, replace(plan, sweeps=[], again=True)) if _closed(plan) else None
    return plan


def _is_dir(path: str) -> bool:
    """Whether a top-level entry of the root is a dir (walked); else one inode (stat_inodes:
    a file, or gone or unreadable, as it tells)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _closed(plan: Plan) -> bool:
    """Whether the plan asked the cache for nothing it lacked: each settled dir was a hit, so
    the next scan of an equal layout finds the cache as this one left it."""
    return not (plan.reusable or plan.groups or plan.walked_ahead)


AREA_GROUP = Key(Part.LAYER, "")  # the sub-cache of the layer area's settled results


@dataclass(frozen=True)
class _AreaPlan:
    area: LayerArea
    inputs: tuple[object, ...]  # the layout's records it was planned from (by identity)
    settled: dict[Key, Usage]  # every settled dir's results: complete, none to walk
    live: tuple[AreaDir, ...]  # the dirs planned every scan


@dataclass
class PlanMemo:
    """What a sampler's last plan leaves its next: the layer area's settled part, and the
    whole plan while it asked the cache for nothing it lacked (_closed)."""

    area: _AreaPlan | None = None
    last: tuple[StoreLayout, Mapping[Key, int], Plan] | None = None

    def again(
        self, layout: StoreLayout, hints: Mapping[Key, int], mounted: Callable[[str], bool]
    ) -> Plan | None:
        """Last plan, its single inodes stat'ed anew, if this scan's would be the same: an equal
        layout (every record, stamp and figure the reader gave; most the same objects), equal
        hints, the same volumes on mounts, no top-level file turned dir. Else None."""
        if self.last is None:
            return None
        layout0, hints0, plan0 = self.last
        if (layout is not layout0 and layout != layout0) or hints != hints0:
            return None
        isolated = {j.key.id for j in plan0.jobs if j.key.part is Part.VOLUME_DATA and j.isolate}
        if any(mounted(v.data) != (v.name in isolated) for v in layout.volumes):
            return None
        stats = stat_inodes(plan0.inodes.paths, os.fsencode(layout.root))
        if stats == plan0.inode_stats:  # none of them changed: that plan itself
            self.last = (layout, hints, plan0)
            return plan0
        usages = plan0.inodes.usages(stats)
        if usages is None:
            return None
        known = {**plan0.known, **usages}  # its cache hits and the reader's figures (an equal layout's)
        plan = replace(plan0, known=known, sweeps=[], again=True, inode_stats=stats)
        self.last = (layout, hints, plan)
        return plan


def _settled(d: AreaDir) -> bool:
    """A dir whose figure stands for good once measured (no stamp to check each scan)."""
    if d.owner is not None and d.parts is not None and d.recorded is not None:
        return True  # committed: its content as recorded, the rest walked once
    return d.owner is not Owner.CONTAINER and d.reuse is Reuse.SETTLED and d.stamp is None


def _plan_area(
    planner: _Planner, layout: StoreLayout, memo: PlanMemo | None, prefetched: Prefetched
) -> Mapping[Key, Usage]:
    """The layer area: its image layers and the other dirs that, once measured, stand for good
    come from one sub-cache, as one mapping; while the layout hands back the same records and
    last time nothing of that part had to be walked, that mapping is last scan's, unvisited
    (a rescan of 10,000 snapshots does not look at each). The rest is planned every scan."""
    area = layout.area
    assert area is not None
    sub = planner.cache.group(AREA_GROUP)  # kept whole while asked for
    inputs = (layout.layers, layout.layer_dirs, layout.area_dirs)
    last = memo.area if memo is not None else None
    if (
        last is not None
        and last.area == area  # a small record, made anew by each read
        and all(a is b for a, b in zip(last.inputs, inputs, strict=True))
    ):
        for d in last.live:
            _plan_dir(planner, area, d)
        return last.settled
    plan = planner.plan
    settled: dict[Key, Usage] = {}
    inner = _Planner(sub, planner.hints, plan, planner.root, known=settled)
    before = len(plan.jobs)
    ahead: Mapping[str, Usage] | None = None  # the rests the workers walked already, by dir
    taken = 0
    present = layout.layer_dirs
    for layer in layout.layers:
        sid = layer.store_id
        if sid not in present:
            continue
        content, rest = make_key((Part.LAYER, sid)), make_key((Part.LAYER_REST, sid))
        recorded = layer.recorded
        # The common case: what the layer needs is there (its content as the store recorded it,
        # or walked once, and the rest walked once, or by the workers before the plan).
        a = recorded if recorded is not None else sub.get(content)
        b = sub.get(rest)
        if b is None:
            if ahead is None:  # asked once, and only on a miss: a rescan never waits here
                ahead = prefetched.children(area.path, area.rest_exclude)
            b = ahead.get(sid)
            if b is not None:
                sub.put(rest, b)  # kept as a walk of it would be (Plan.keep)
                taken += 1
        if a is not None and b is not None:
            settled[content], settled[rest] = a, b
            continue
        d = f"{area.path}/{sid}"  # not os.path.join: thousands of names a scan, all plain
        if recorded is not None:  # the store measured its content at commit
            settled[content] = recorded
        else:
            # Never walked: its recorded bytes guess its inodes, so the first scan's batches
            # are balanced by cost, not count (a few layers hold most of the files).
            guess = (layer.size or 0) // BYTES_PER_FILE + 1
            inner.walk(content, f"{d}/{area.content}", reuse=Reuse.SETTLED, guess=guess)
        inner.walk(rest, d, area.rest_exclude, reuse=Reuse.SETTLED)
    live = [d for d in layout.area_dirs if not _settled(d)]
    for other in layout.area_dirs:
        if _settled(other):
            _plan_dir(inner, area, other)
    if taken:
        plan.walked_ahead[Part.LAYER_REST.kind] += taken
    complete = len(plan.jobs) == before  # nothing of the settled part had to be walked
    for other in live:
        _plan_dir(planner, area, other)
    plan.sweeps.append(sub)
    if memo is not None:
        memo.area = _AreaPlan(area, inputs, settled, tuple(live)) if complete else None
    return settled


def _plan_dir(planner: _Planner, area: LayerArea, other: AreaDir) -> None:
    d = f"{area.path}/{other.name}"
    parts = other.parts
    if parts is None:
        key = Key(Part.AREA_DIR, other.name)
        planner.walk(key, d, area.whole_exclude, reuse=other.reuse, stamp=other.stamp)
        return
    content, rest = Key(parts[0], other.name), Key(parts[1], other.name)
    if other.recorded is not None:  # committed: its content as recorded, the rest once
        planner.known[content] = other.recorded
        planner.walk(rest, d, area.rest_exclude, reuse=Reuse.SETTLED)
    else:  # a writable layer's content apart: the engine's SizeRw
        planner.walk(content, f"{d}/{area.content}", reuse=other.reuse, stamp=other.stamp)
        planner.walk(rest, d, area.rest_exclude, reuse=other.reuse, stamp=other.stamp)
