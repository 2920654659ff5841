"""BuildKit's build cache, as `docker system df` reports it."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter.collector.families import gauge, usage
from exporter.model import BuildCacheSnapshot

RECORDS = gauge("build_cache_records", "BuildKit build cache records.")
BYTES = gauge(
    "build_cache_bytes",
    "Bytes of BuildKit build cache, as `docker system df` Build Cache SIZE "
    "(records shared with images not counted).",
)


def build_cache(snap: BuildCacheSnapshot) -> Iterator[Metric]:
    bc = snap.build_cache
    records = RECORDS.new()
    records.add_metric([], bc.records)
    size = BYTES.new()
    size.add_metric([], bc.bytes)
    yield from (records, size)
    yield from usage("build_cache", bc.bytes, bc.reclaimable)
