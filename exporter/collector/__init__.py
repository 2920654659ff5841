"""Snapshot -> metric families. A prometheus-client custom collector.

`collect()` reads the latest snapshots from the store and yields families. It never calls
Docker, never touches the disk, and never raises: a bug in one group of families is logged
and counted in `docker_storage_collector_errors_total`, and the other groups still come.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.collector import build_cache, engine, filesystem, health
from exporter.collector.families import counter, folded, skipped, usage
from exporter.collector.folding import OTHER, Memo, fold_top
from exporter.collector.labels import encodable, hidden, image_labels
from exporter.model import (
    VOLUME_STATES,
    WALK_KINDS,
    BuildCacheSnapshot,
    EngineSnapshot,
    FilesystemSnapshot,
    ScanSnapshot,
)
from exporter.samplers import Store

P = "docker_storage_"

__all__ = ["OTHER", "StorageCollector", "fold_top", "hidden", "image_labels"]

log = structlog.get_logger("exporter.collector")


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, labels=list(labels))


ERRORS = counter(
    "collector_errors",
    "Failures of the exporter's own code while building metrics for a scrape "
    "(each is logged); the families that did not fail were still served.",
)

Snap = TypeVar("Snap")
Group = Callable[[], Iterable[Metric]]


def _given(snap: Snap | None, build: Callable[[Snap], Iterable[Metric]]) -> Iterable[Metric]:
    """A source's families, or none before its sampler has published a snapshot."""
    return () if snap is None else build(snap)


class StorageCollector(Collector):
    def __init__(
        self,
        store: Store,
        top_n: int = 50,
        request_counts: Callable[[], dict[str, int]] | None = None,
        hide_names: bool = False,
    ) -> None:
        self.store = store
        self.hide_names = hide_names
        self.top_n = top_n
        self.request_counts = request_counts or dict
        self._errors = 0
        self._lock = threading.Lock()
        self._engine_memo = Memo()
        self._scan_memo = Memo()

    def describe(self) -> Iterable[Metric]:
        # Families depend on what the samplers have seen; let the registry not pre-describe.
        return []

    def _groups(self) -> list[tuple[str, Group]]:
        """The groups in exposition order. Each fails alone, so each fetches its snapshot (a
        wrong type raises) itself."""
        store, engine_memo = self.store, self._engine_memo
        images = partial(engine.images, top_n=self.top_n, hide=self.hide_names, memo=engine_memo)
        objects = partial(engine.objects, memo=engine_memo)
        return [
            ("exporter", lambda: health.exporter(self.request_counts())),
            ("samplers", lambda: health.samplers(store.statuses())),
            ("engine_up", lambda: health.engine_up(store.status("engine"))),
            ("engine", lambda: _given(store.latest(EngineSnapshot), engine.info)),
            ("images", lambda: _given(store.latest(EngineSnapshot), images)),
            ("objects", lambda: _given(store.latest(EngineSnapshot), objects)),
            ("filesystems", lambda: _given(store.latest(FilesystemSnapshot), filesystem.filesystems)),
            ("build_cache", lambda: _given(store.latest(BuildCacheSnapshot), build_cache.build_cache)),
            ("scan", self._scan),
        ]

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for name, group in self._groups():
            try:
                families = list(group())
            except Exception:
                with self._lock:
                    self._errors += 1
                log.exception("collector group failed", group=name)
                continue
            for fam in families:
                # Groups may each add samples to a shared family (used_bytes{object}).
                if fam.name in merged:
                    merged[fam.name].samples.extend(fam.samples)
                else:
                    merged[fam.name] = fam
        for fam in merged.values():
            fam.samples[:] = [encodable(sample) for sample in fam.samples]
        yield from merged.values()
        errors = ERRORS.new()
        errors.add_metric([], self._errors)
        yield errors

    # -- groups -----------------------------------------------------------------------

    def _scan(self) -> Iterator[Metric]:
        snap = self.store.latest(ScanSnapshot)
        if snap is None:
            return
        engine = self.store.latest(EngineSnapshot)
        attr = _gauge(
            "layer_attribution_available",
            "1 if image layers and storage-driver dirs can be attributed (overlay2 with the "
            "graphdriver image store); 0 means layer and driver families are absent, not zero.",
        )
        attr.add_metric([], 1 if snap.attribution else 0)
        yield attr

        rd = _gauge(
            "root_disk_bytes",
            "Allocated bytes (du) under each top-level entry of the Docker root, by our walk.",
            ["dir"],
        )
        rf = _gauge("root_files", "Inodes under each top-level entry of the Docker root.", ["dir"])
        for name, u in sorted(snap.root_dirs.items()):
            rd.add_metric([name], u.disk_bytes)
            rf.add_metric([name], u.files)
        yield from (rd, rf)

        if snap.attribution:
            dd = _gauge(
                "driver_disk_bytes",
                "Allocated bytes of the storage driver's dir by owner: image (layers), container "
                "(writable layers), init, build_cache (BuildKit snapshots), links (overlay2 l/), "
                "orphan (no layer, container or snapshot owns it).",
                ["owner"],
            )
            df = _gauge("driver_files", "Inodes of the storage driver's dir by owner.", ["owner"])
            for owner, u in snap.owners.items():
                dd.add_metric([owner], u.disk_bytes)
                df.add_metric([owner], u.files)
            orphans = _gauge(
                "orphan_dirs", "Storage-driver dirs that no layer, container or build-cache snapshot owns."
            )
            orphans.add_metric([], len(snap.orphans))
            yield from (dd, df, orphans)
            yield from self._layers(snap)

        yield from self._containers(snap, engine)
        yield from self._volumes(snap, engine)
        walks = _gauge(
            "scan_walks",
            "Directories walked by the last scan, by kind; layers come from the cache once walked.",
            ["kind"],
        )
        for kind in WALK_KINDS:
            walks.add_metric([kind], snap.walks.get(kind, 0))
        cached = _gauge("scan_cached_layers", "Image layers whose walk is cached (immutable).")
        cached.add_metric([], snap.cached_layers)
        errs = _gauge(
            "scan_unreadable_entries",
            "Entries the last scan could not read (permission denied); their bytes are missing.",
        )
        errs.add_metric([], snap.errors)
        yield from (walks, cached, errs, skipped("scan", snap.skipped))

    def _layers(self, snap: ScanSnapshot) -> Iterator[Metric]:
        n_layers, size_sum, disk_sum, kept, n_folded, other = self._scan_memo.get(
            snap, "layers", lambda: self._fold_layers(snap)
        )
        n = _gauge("layers", "Image layers in the layer store (layerdb).")
        n.add_metric([], n_layers)
        size = _gauge(
            "layers_size_bytes",
            "Sum of the layer sizes Docker recorded at pull or build (apparent bytes).",
        )
        size.add_metric([], size_sum)
        disk = _gauge("layers_disk_bytes", "Allocated bytes of all layer dirs, by our walk.")
        disk.add_metric([], disk_sum)
        yield from (n, size, disk)
        fams = [
            _gauge("layer_size_bytes", "Docker's recorded size of the layer (apparent bytes).", ["diff_id"]),
            _gauge("layer_disk_bytes", "Allocated bytes of the layer's dir, by our walk.", ["diff_id"]),
            _gauge("layer_files", "Inodes in the layer's dir.", ["diff_id"]),
            _gauge("layer_images", "Images whose layer chain holds the layer.", ["diff_id"]),
        ]
        for key, vals in kept:
            for fam, v in zip(fams, vals, strict=True):
                fam.add_metric([key], v)
        if n_folded:
            for fam, v in zip(fams, other, strict=True):
                fam.add_metric([OTHER], v)
        yield from fams
        yield folded(fams, n_folded)

    def _fold_layers(self, snap: ScanSnapshot) -> tuple[Any, ...]:
        size_sum = sum(x.size for x in snap.layers)
        disk_sum = sum(x.total.disk_bytes for x in snap.layers)
        # One series per diff ID (the same content under two chains is summed).
        by_diff: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, 0])
        for x in snap.layers:
            acc = by_diff[x.diff_id.split(":", 1)[-1][:12]]
            acc[0] += x.size
            acc[1] += x.total.disk_bytes
            acc[2] += x.total.files
            acc[3] += x.images
        items = sorted(by_diff.items(), key=lambda kv: (-kv[1][1], kv[0]))
        kept, folded = fold_top(items, self.top_n)
        other = [sum(vals[i] for _, vals in folded) for i in range(4)] if folded else []
        return len(snap.layers), size_sum, disk_sum, kept, len(folded), other

    def _containers(self, snap: ScanSnapshot, engine: EngineSnapshot | None = None) -> Iterator[Metric]:
        labels = ["container", "image"]
        rw = _gauge(
            "container_rw_bytes",
            "Allocated bytes of the container's writable layer (its overlay2 upper dir).",
            labels,
        )
        logs = _gauge(
            "container_log_bytes",
            "Allocated bytes of the container's logs: json-file logs with their rotated files, "
            "and the local driver's.",
            labels,
        )
        kept, n_folded, folded_rw, folded_logs, used, idle = self._scan_memo.get(
            snap, "containers", lambda: self._fold_containers(snap)
        )
        image_ids: dict[str, str] = {}
        if engine and self.hide_names:
            image_ids = self._engine_memo.get(
                engine, "image_ids", lambda: {c.id: c.image_id for c in engine.containers}
            )
        for c in kept:
            lv = [c.name, c.image]
            if self.hide_names:  # the container's short id, its image's short id when known
                lv = [c.id[:12], hidden(image_ids.get(c.id) or c.image)]
            if c.rw is not None:
                rw.add_metric(lv, c.rw.disk_bytes)
            logs.add_metric(lv, c.logs.disk_bytes)
        if n_folded:
            if snap.attribution:
                rw.add_metric([OTHER, OTHER], folded_rw)
            logs.add_metric([OTHER, OTHER], folded_logs)
        yield from (rw, logs)
        yield folded([rw, logs], n_folded)
        if snap.attribution:
            # `docker system df`: SIZE is the writable layers' apparent bytes, RECLAIMABLE
            # those of containers that are not active (running, paused or restarting).
            yield from usage("containers", used, idle)

    def _fold_containers(self, snap: ScanSnapshot) -> tuple[Any, ...]:
        kept, folded = fold_top(snap.containers, self.top_n)
        used = idle = 0
        if snap.attribution:
            used = sum(c.rw.apparent_bytes for c in snap.containers if c.rw)
            idle = sum(c.rw.apparent_bytes for c in snap.containers if c.rw and c.prunable)
        return (
            kept,
            len(folded),
            sum(c.rw.disk_bytes for c in folded if c.rw) if snap.attribution else 0,
            sum(c.logs.disk_bytes for c in folded),
            used,
            idle,
        )

    def _volumes(self, snap: ScanSnapshot, engine: EngineSnapshot | None) -> Iterator[Metric]:
        labels = ["volume", "driver"]
        disk = _gauge("volume_disk_bytes", "Allocated bytes of the volume's dir, by our walk.", labels)
        files = _gauge("volume_files", "Inodes in the volume's dir.", labels)
        users = _gauge("volume_containers", "Containers (any state) that mount the volume.", labels)
        kept, n_folded, other, disk_by_state, used, unused = self._scan_memo.get(
            snap, "volumes", lambda: self._fold_volumes(snap)
        )
        for v in kept:
            lv = [hidden(v.name) if self.hide_names else v.name, v.driver]
            disk.add_metric(lv, v.total.disk_bytes)
            files.add_metric(lv, v.total.files)
            users.add_metric(lv, v.containers)
        if n_folded:
            for fam, value in zip((disk, files, users), other, strict=True):
                fam.add_metric([OTHER, OTHER], value)
        yield from (disk, files, users)
        yield folded([disk, files, users], n_folded)
        by_state = _gauge(
            "volumes_disk_bytes",
            "Allocated bytes of volumes by state: in_use (mounted by a container) or unused.",
            ["state"],
        )
        for state in VOLUME_STATES:
            by_state.add_metric([state], disk_by_state[state])
        yield by_state
        # `docker system df`: SIZE is the volumes' apparent bytes, RECLAIMABLE the unused ones'.
        yield from usage("volumes", used, unused)

    def _fold_volumes(self, snap: ScanSnapshot) -> tuple[Any, ...]:
        kept, folded = fold_top(snap.volumes, self.top_n)
        other = (
            sum(v.total.disk_bytes for v in folded),
            sum(v.total.files for v in folded),
            sum(v.containers for v in folded),
        )
        return (
            kept,
            len(folded),
            other,
            {
                state: sum(
                    v.total.disk_bytes for v in snap.volumes if (v.containers > 0) == (state == "in_use")
                )
                for state in VOLUME_STATES
            },
            sum(v.data.apparent_bytes for v in snap.volumes),
            sum(v.data.apparent_bytes for v in snap.volumes if v.containers == 0),
        )
