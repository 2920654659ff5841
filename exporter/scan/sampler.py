"""The scan sampler: walk the engine's root ourselves and attribute every byte.

One pass: the store reader for the engine's layout lists what is there (exporter.stores),
the plan turns that and the cache into walks, the Walker walks, the attribution builds the
snapshot. Immutable dirs (image layers) are walked once and cached; live ones (writable
layers, container dirs, volumes) every scan. A scan that runs out of its time budget is a
failure that keeps the last good snapshot (never a smaller number); the walks it finished
stay cached, so the next scan goes further.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import structlog

from exporter.gcpause import cyclic_gc_paused
from exporter.model import EngineInfo, EngineSnapshot, ScanSnapshot, Usage
from exporter.samplers import NotDue, Sampler, Store, Unavailable
from exporter.scan.attribute import Attribution
from exporter.scan.cache import UsageCache
from exporter.scan.plan import Plan, PlanMemo, make_plan
from exporter.sources.du import NOTHING_STARTED, Prefetched, Walker
from exporter.sources.fs import host_to_local
from exporter.sources.mounts import MountTable
from exporter.sources.stamps import AtomicTree
from exporter.stores import reader_for
from exporter.stores.inventory import Key, Part, StoreOptions, StoreReader

log = structlog.get_logger("exporter.scan")

LOCAL_BELOW_FILES = 20_000  # expected inodes under which a run is small (Walker.run)


@dataclass(frozen=True)
class ScanPass:
    """What the last scan did beyond its figures (the Walker's jobs are its own to tell)."""

    tree_dirs_listed: int = 0  # dirs of rename-only trees read again (their stamp moved)


class ScanSampler(Sampler):
    name = "scan"

    def __init__(
        self,
        store: Store,
        walker: Walker,
        rootfs: str = "/",
        budget: float = 600.0,
        options: StoreOptions | None = None,
        mounts: MountTable | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(store, **kw)
        self.walker = walker
        self.rootfs = rootfs
        self.budget = budget
        self.options = options or StoreOptions(rootfs=rootfs)
        self.cache = UsageCache()
        self.mounts = mounts or MountTable()  # which volumes' data may be a mount (isolated walks)
        self._reader: tuple[tuple[type[StoreReader], str], StoreReader] | None = None
        self._trees: dict[Key, AtomicTree] = {}  # one per rename-only tree: each keeps its dirs' stamps
        self._hints: dict[Key, int] = {}  # inodes per dir walked every scan, last time
        self._attribution = Attribution()
        self._plan_memo = PlanMemo()
        self._said_unavailable = ""
        self.last_pass = ScanPass()

    def sample(self) -> ScanSnapshot:
        with cyclic_gc_paused():
            return self._sample()

    def _sample(self) -> ScanSnapshot:
        engine = self.store.latest(EngineSnapshot)
        if engine is None or not engine.info.root_dir:
            raise NotDue()  # the engine names the root; wait for its first sample
        info = engine.info
        root = host_to_local(info.root_dir, self.rootfs)
        if not os.path.isdir(root) or not os.access(root, os.R_OK | os.X_OK):
            reason = (
                f"Docker root {info.root_dir} is not readable at {root} (remote engine, Docker "
                "Desktop, or not mounted: run on the host or mount / and set --path.rootfs)"
            )
            if self._said_unavailable != reason:
                log.warning("scan unavailable", reason=reason)
                self._said_unavailable = reason
            raise Unavailable(reason)
        self._said_unavailable = ""
        deadline = time.monotonic() + self.budget

        reader = self._reader_of(info, root)
        started: Prefetched = NOTHING_STARTED
        if not len(self.cache):  # nothing to reuse yet: the workers start on what surely is walked
            handed = self.walker.start(reader.prefetch(root, info), deadline)
            if handed.jobs:
                started = handed
        layout = reader.read(root, info, started)
        if layout.skipped:
            log.info("layout entries skipped", count=layout.skipped, first=list(layout.problems[:5]))
        plan = make_plan(
            layout, self.cache, self._hints, self._plan_memo, started, mounted=self.mounts.view().under
        )
        jobs, walked_before = plan.jobs, {}
        if started is not NOTHING_STARTED:  # the few the plan did not take (dirs of other owners)
            jobs = []
            for job in plan.jobs:
                parent, _, name = job.path.rpartition("/")
                usage = started.children(parent, job.exclude).get(name)
                if usage is None:
                    jobs.append(job)
                else:
                    walked_before[job.key] = usage
        trees: dict[Key, Usage] = {}

        def walk_trees() -> None:  # in this process, while the workers walk
            for t in plan.trees:
                tree = self._trees.get(t.key) or AtomicTree()
                trees[t.key] = tree.walk(t.path, t.exclude, deadline=deadline)
                self._trees[t.key] = tree

        # A rescan of small live dirs shares the walk between this process and a running pool,
        # or, smaller than a round trip to it, walks them here (du.Walker.run).
        walked: dict[Any, Usage] = self.walker.run(
            jobs, deadline, local_below=LOCAL_BELOW_FILES, alongside=walk_trees
        )
        walked.update(walked_before)
        walked.update(trees)
        partial = [k for k, u in walked.items() if u.partial]
        self._keep(plan, walked, ok=not partial)
        listed = sum([tree.listed for key, tree in self._trees.items() if key in trees])
        self.last_pass = ScanPass(listed)
        if partial or time.monotonic() > deadline:
            raise TimeoutError(
                f"scan exceeded its {self.budget:.0f}s budget ({len(plan.jobs) - len(partial)} of "
                f"{len(plan.jobs)} dirs done; finished layers are cached for the next scan)"
            )
        walks = Counter([job.key.part.kind for job in plan.jobs])
        if plan.walked_ahead:
            walks += plan.walked_ahead
        return self._attribution.snapshot(
            layout,
            info.root_dir,
            engine,
            plan.results(walked),
            walks,
            cached_layers=self.cache.count(Part.LAYER),
        )

    def _reader_of(self, info: EngineInfo, root: str) -> StoreReader:
        """The reader for this engine's layout, kept while the layout and root stay the same
        (it holds what it parsed and cannot change)."""
        which = (reader_for(info), root)
        if self._reader is None or self._reader[0] != which:
            self._reader = (which, which[0](self.options))
        return self._reader[1]

    def _keep(self, plan: Plan, walked: dict[Any, Usage], ok: bool) -> None:
        """After a walk, finished (`ok`) or not: cache what may be reused, forget what is gone,
        and note each live dir's inodes as the next walk's hint."""
        plan.keep(self.cache, walked, ok)
        self._hints = {k: u.files for k, u in walked.items() if not u.partial and k not in plan.reusable}
        live = {t.key for t in plan.trees}
        self._trees = {k: tree for k, tree in self._trees.items() if k in live}

    def summary(self, snapshot: ScanSnapshot) -> dict[str, Any]:
        return {
            "layers": len(snapshot.layers),
            "containers": len(snapshot.containers),
            "volumes": len(snapshot.volumes),
            "orphans": len(snapshot.orphans),
            "walks": snapshot.walks,
            "cached_layers": snapshot.cached_layers,
            "errors": snapshot.errors,
            "skipped": snapshot.skipped,
            "root_disk_bytes": sum([u.disk_bytes for u in snapshot.root_dirs.values()]),
        }
