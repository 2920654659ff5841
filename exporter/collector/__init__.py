"""Snapshot -> metric families. A prometheus-client custom collector.

`collect()` reads the latest snapshots from the store and yields families. It never calls
Docker, never touches the disk, and never raises: a bug in one group of families is logged
and counted in `docker_storage_collector_errors_total`, and the other groups still come.

One module per snapshot source builds its groups' families: health (the exporter itself
and the samplers), engine, filesystem, build_cache, scan, desktop, registry. families defines every
family once; labels and folding hold what several sources share.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TypeVar

import structlog
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from exporter.collector import build_cache, desktop, engine, filesystem, health, scan
from exporter.collector import registry as registry_store
from exporter.collector.families import counter
from exporter.collector.folding import OTHER, Memo, fold_top
from exporter.collector.labels import encodable, hidden, image_labels
from exporter.model import (
    BuildCacheSnapshot,
    DesktopSnapshot,
    EngineSnapshot,
    FilesystemSnapshot,
    ScanSnapshot,
)
from exporter.registry_model import RegistrySnapshot
from exporter.samplers import Store

__all__ = ["OTHER", "StorageCollector", "fold_top", "hidden", "image_labels"]

log = structlog.get_logger("exporter.collector")

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
        # One memo per snapshot source: each is replaced on its own schedule.
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

        def scan_group(snap: ScanSnapshot) -> Iterable[Metric]:
            # The engine snapshot is read only when there is a scan to serve: only then does
            # a bad one fail this group.
            engine_snap = store.latest(EngineSnapshot)
            return scan.scan(snap, engine_snap, self.top_n, self.hide_names, self._scan_memo, engine_memo)

        def registry_group(snap: RegistrySnapshot) -> Iterable[Metric]:
            return registry_store.registry(snap, self.top_n, self.hide_names)

        return [
            ("exporter", lambda: health.exporter(self.request_counts())),
            ("samplers", lambda: health.samplers(store.statuses())),
            ("engine_up", lambda: health.engine_up(store.status("engine"))),
            ("engine", lambda: _given(store.latest(EngineSnapshot), engine.info)),
            ("images", lambda: _given(store.latest(EngineSnapshot), images)),
            ("objects", lambda: _given(store.latest(EngineSnapshot), objects)),
            ("filesystems", lambda: _given(store.latest(FilesystemSnapshot), filesystem.filesystems)),
            ("build_cache", lambda: _given(store.latest(BuildCacheSnapshot), build_cache.build_cache)),
            ("scan", lambda: _given(store.latest(ScanSnapshot), scan_group)),
            ("desktop", lambda: _given(store.latest(DesktopSnapshot), desktop.desktop)),
            ("registry", lambda: _given(store.latest(RegistrySnapshot), registry_group)),
        ]

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for name, group in self._groups():
            try:
                families = list(group())
                # Inside the guard: a label value that is not text fails its group, not the scrape.
                for fam in families:
                    fam.samples[:] = [encodable(sample) for sample in fam.samples]
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
        yield from merged.values()
        errors = ERRORS.new()
        errors.add_metric([], self._errors)
        yield errors
