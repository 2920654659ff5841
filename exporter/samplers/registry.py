"""The registry sampler: each --registry.root's storage read (sources/registry.py), marked and
swept as Distribution's garbage collector would (registry_gc.py), into a RegistrySnapshot."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from exporter import registry_gc as gc
from exporter.registry_model import (
    STALE_UPLOAD_SECONDS,
    YOUNG_SECONDS,
    RegistryRoot,
    RegistrySnapshot,
    RepositoryUsage,
    Uploads,
)
from exporter.samplers.base import Sampler, Store, reason
from exporter.sources.registry import RegistryReader
from exporter.sources.registry_format import ROOT, RegistryTree

log = structlog.get_logger("exporter.samplers.registry")


@dataclass(frozen=True)
class Marks:
    """What garbage collection and the per-repository sums make of a tree; depends on nothing
    but the tree, so a pass that found it unchanged reuses it."""

    referenced: tuple[int, int]  # blobs, bytes that GC keeps
    swept: tuple[tuple[float, int], ...]  # (mtime, size) of each blob GC deletes by default
    reclaimable: dict[str, int]
    reclaimable_blobs: dict[str, int]
    index_child_only: int
    repositories: tuple[RepositoryUsage, ...]
    dangling: dict[str, int]


def analyse(tree: RegistryTree) -> Marks:
    blobs = tree.blobs
    keep = gc.marked(tree, delete_untagged=False)
    keep_tagged = gc.marked(tree, delete_untagged=True)
    flat_tagged = gc.marked(tree, delete_untagged=True, recursive=False)
    default_gone, untagged_gone = gc.sweep(tree, keep), gc.sweep(tree, keep_tagged)
    per_repo = {r.name: gc.repository_blobs(tree, r) for r in tree.repositories}
    holders: Counter[str] = Counter(d for held in per_repo.values() for d in held)
    repos = []
    for r in tree.repositories:
        held = per_repo[r.name]
        tagged = gc.tagged_digests(r)
        revisions = [d for d in r.revisions if d in blobs]
        repos.append(
            RepositoryUsage(
                name=r.name,
                bytes=gc.size_of(blobs, held),
                unique_bytes=gc.size_of(blobs, (d for d in held if holders[d] == 1)),
                tags=len(r.tags),
                manifests_tagged=sum(1 for d in revisions if d in tagged),
                manifests_untagged=sum(1 for d in revisions if d not in tagged),
            )
        )
    repos.sort(key=lambda u: (-u.bytes, u.name))
    d = gc.dangling(tree)
    swept = tuple((blobs[x].mtime, blobs[x].size) for x in default_gone)
    total, swept_bytes = sum(b.size for b in blobs.values()), sum(size for _, size in swept)
    return Marks(
        referenced=(len(blobs) - len(swept), total - swept_bytes),
        swept=swept,
        reclaimable={gc.DEFAULT: swept_bytes, gc.DELETE_UNTAGGED: gc.size_of(blobs, untagged_gone)},
        reclaimable_blobs={gc.DEFAULT: len(default_gone), gc.DELETE_UNTAGGED: len(untagged_gone)},
        index_child_only=gc.size_of(blobs, keep_tagged - flat_tagged),
        repositories=tuple(repos),
        dangling={"layer": d.layer, "revision": d.revision, "tag": d.tag},
    )  # fmt: skip


def summarise(path: str, tree: RegistryTree, now: float, marks: Marks | None = None) -> RegistryRoot:
    """A read tree -> the figures the collector and report serve; `marks` from analyse(tree)."""
    m = marks or analyse(tree)
    young = [size for mtime, size in m.swept if now - mtime < YOUNG_SECONDS]
    unreferenced = len(m.swept) - len(young), sum(size for _, size in m.swept) - sum(young)
    uploads = tree.uploads
    stale = [u for u in uploads if now - u.started > STALE_UPLOAD_SECONDS]
    fresh = [u for u in uploads if now - u.started <= STALE_UPLOAD_SECONDS]
    fs_size = fs_avail = None
    try:
        st = os.statvfs(path)
        fs_size, fs_avail = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    except OSError:
        pass
    return RegistryRoot(
        path=path,
        blobs={"referenced": m.referenced[0], "unreferenced": unreferenced[0], "young": len(young)},
        blob_bytes={"referenced": m.referenced[1], "unreferenced": unreferenced[1], "young": sum(young)},
        reclaimable=m.reclaimable,
        reclaimable_blobs=m.reclaimable_blobs,
        index_child_only_bytes=m.index_child_only,
        repositories=m.repositories,
        fresh_uploads=Uploads(len(fresh), sum(u.bytes for u in fresh)),
        stale_uploads=Uploads(len(stale), sum(u.bytes for u in stale)),
        oldest_upload_started=min((u.started for u in uploads), default=None),
        dangling=m.dangling,
        errors=dict(tree.errors),
        filesystem_size=fs_size,
        filesystem_avail=fs_avail,
    )


class RegistrySampler(Sampler):
    """Every root read in turn. A root that cannot be read is counted (read_errors{kind="root"})
    and logged, and the others are still served; only when none can be read does the sample
    fail (and the last good snapshot stays)."""

    name = "registry"

    def __init__(
        self, store: Store, roots: Sequence[str], clock: Callable[[], float] = time.time, **kw: Any
    ) -> None:
        super().__init__(store, clock=clock, **kw)
        self.readers = [RegistryReader(r) for r in roots]
        self._last: RegistrySnapshot | None = None
        self._reads: list[tuple[int, int]] = []
        self._marks: dict[str, Marks] = {}  # root -> the last pass's, while its tree is unchanged

    def sample(self) -> RegistrySnapshot:
        roots, failures, reads = [], [], []
        now = self.clock()
        for reader in self.readers:
            try:
                tree = reader.read()
            except Exception as exc:  # noqa: BLE001 - one root must not blank the others
                why = reason(exc)
                failures.append(f"{reader.root}: {why}")
                log.warning("registry root unreadable", root=reader.root, error=why)
                roots.append(RegistryRoot(path=reader.root, error=why, errors={ROOT: 1}))
                continue
            reads.append((tree.manifests_read, tree.links_read))
            marks = self._marks.get(reader.root) if tree.unchanged else None
            if marks is None:
                marks = self._marks[reader.root] = analyse(tree)
            roots.append(summarise(reader.root, tree, now, marks))
        if len(failures) == len(self.readers):
            raise _AllRootsFailed("; ".join(failures))
        self._reads = reads
        return RegistrySnapshot(roots=tuple(roots), taken=now)

    def summary(self, snapshot: RegistrySnapshot) -> dict[str, Any]:
        ok = [r for r in snapshot.roots if not r.error]
        return {
            "roots": len(snapshot.roots),
            "unreadable_roots": len(snapshot.roots) - len(ok),
            "blobs": sum(sum(r.blobs.values()) for r in ok),
            "repositories": sum(len(r.repositories) for r in ok),
            "reclaimable_bytes": sum(r.reclaimable.get(gc.DEFAULT, 0) for r in ok),
            "read_errors": sum(sum(r.errors.values()) for r in ok),
            "manifests_read": sum(m for m, _ in self._reads),
            "links_read": sum(n for _, n in self._reads),
        }

    def context(self) -> dict[str, Any]:
        return {"roots": [r.root for r in self.readers]}


class _AllRootsFailed(Exception):
    explained = True
