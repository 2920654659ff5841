"""The walk plan: a store's layout and what the cache holds -> the walks this scan needs.

Knows no layout: every dir comes as a typed record (exporter.stores.inventory) that says
whose it is and whether it can change. What cannot have changed comes from the cache; single
inodes are stat'ed here; the rest becomes WalkJobs for the Walker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from exporter.model import Usage, total
from exporter.scan.cache import UsageCache
from exporter.sources.du import WalkJob, one_inode
from exporter.sources.stamps import Stamp
from exporter.stores.inventory import Key, MetaDir, Part, Reuse, StoreLayout

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


@dataclass
class Plan:
    jobs: list[WalkJob] = field(default_factory=list)
    known: dict[Key, Usage] = field(default_factory=dict)  # results needing no walk
    trees: list[TreeWalk] = field(default_factory=list)
    # Jobs whose result may be kept: in which cache, valid while which stamp holds.
    reusable: dict[Key, tuple[UsageCache, Stamp | None]] = field(default_factory=dict)
    groups: list[GroupWalk] = field(default_factory=list)

    def keep(self, cache: UsageCache, walked: Mapping[Key, Usage], ok: bool) -> None:
        """After the walk, finished (`ok`) or not: the cache keeps what may be reused and
        forgets what this scan did not ask for (scans that keep failing must not grow it)."""
        for key, (where, stamp) in self.reusable.items():
            usage = walked.get(key)
            if usage is not None:
                where.put(key, usage, stamp)
        for group in self.groups:
            group.members.sweep()
            if ok and group.stamp:  # every part is in: the group as one figure from now on
                cache.put(group.key, total(walked.get(k) or self.known[k] for k in group.parts), group.stamp)
        cache.sweep()


class _Planner:
    def __init__(
        self, cache: UsageCache, hints: Mapping[Key, int], plan: Plan | None = None, root: str = ""
    ) -> None:
        self.cache, self.hints, self.plan, self.root = cache, hints, plan or Plan(), root

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
                plan.known[key] = hit
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


def make_plan(layout: StoreLayout, cache: UsageCache, hints: Mapping[Key, int]) -> Plan:
    """`hints`: inodes each dir walked every scan had last time (the Walker's balance)."""
    planner = _Planner(cache, hints, root=layout.root)
    plan, walk, root = planner.plan, planner.walk, layout.root

    for name in layout.top_dirs:
        if name in layout.itemised:
            continue
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            walk(Key(Part.META, name), path)
        else:
            plan.known[Key(Part.ENTRY, name)] = one_inode(path)
    for rel in layout.entries:
        plan.known[Key(Part.ENTRY, rel)] = one_inode(f"{root}/{rel}")
    plan.known.update(layout.measured)
    for meta in layout.meta:
        key = Key(Part.META, meta.rel)
        if meta.group:
            _plan_group(planner, meta)
        elif meta.reuse is Reuse.TREE:
            plan.trees.append(TreeWalk(key, f"{root}/{meta.rel}", meta.exclude))
        else:
            walk(key, f"{root}/{meta.rel}", meta.exclude, reuse=meta.reuse, stamp=meta.stamp)

    area = layout.area
    if area is not None:
        present = layout.layer_dirs
        for layer in layout.layers:
            sid = layer.store_id
            if sid not in present:
                continue
            content, rest = Key(Part.LAYER, sid), Key(Part.LAYER_REST, sid)
            recorded = layer.recorded
            # The common case on a rescan: what the layer needs is there (its content as the
            # store recorded it, or walked once, and the rest walked once).
            a = recorded if recorded is not None else cache.get(content)
            b = cache.get(rest)
            if a is not None and b is not None:
                plan.known[content], plan.known[rest] = a, b
                continue
            d = f"{area.path}/{sid}"  # not os.path.join: thousands of names a scan, all plain
            if recorded is not None:  # the store measured its content at commit
                plan.known[content] = recorded
            else:
                # Never walked: its recorded bytes guess its inodes, so the first scan's batches
                # are balanced by cost, not count (a few layers hold most of the files).
                guess = (layer.size or 0) // BYTES_PER_FILE + 1
                walk(content, f"{d}/{area.content}", reuse=Reuse.SETTLED, guess=guess)
            walk(rest, d, area.rest_exclude, reuse=Reuse.SETTLED)
        for other in layout.area_dirs:
            d = f"{area.path}/{other.name}"
            parts = other.parts
            if parts is None:
                walk(
                    Key(Part.AREA_DIR, other.name),
                    d,
                    area.whole_exclude,
                    reuse=other.reuse,
                    stamp=other.stamp,
                )
                continue
            content, rest = Key(parts[0], other.name), Key(parts[1], other.name)
            if other.recorded is not None:  # committed: its content as recorded, the rest once
                plan.known[content] = other.recorded
                walk(rest, d, area.rest_exclude, reuse=Reuse.SETTLED)
            else:  # a writable layer's content apart: the engine's SizeRw
                walk(content, f"{d}/{area.content}", reuse=other.reuse, stamp=other.stamp)
                walk(rest, d, area.rest_exclude, reuse=other.reuse, stamp=other.stamp)

    for c in layout.containers:
        walk(Key(Part.CONTAINER, c.id), c.path, c.exclude)
        plan.known[Key(Part.LOGS, c.id)] = total(one_inode(p) for p in c.logs)
    for v in layout.volumes:
        # The data may be a mount (NFS, a bind): walked in a worker when one can run, which can
        # be killed if it hangs (du.WalkJob.isolate).
        walk(Key(Part.VOLUME_DATA, v.name), v.data, isolate=True)
        walk(Key(Part.VOLUME_REST, v.name), v.path, v.exclude)
    return plan
