"""The build-cache sampler: BuildKit's totals from the engine."""

from __future__ import annotations

import time
from typing import Any

from exporter.model import BuildCacheSnapshot
from exporter.samplers.base import NotDue, Sampler, Store
from exporter.sources.engine import EngineClient, parse_build_cache


class BuildCacheSampler(Sampler):
    """BuildKit cache totals.

    API 1.42+ asks `/system/df?type=build-cache` (cheap). Older engines have only the plain
    `/system/df`, which makes dockerd walk every volume and container layer, so there it
    runs at most once per `legacy_interval` and not at all when that is 0.
    """

    name = "build_cache"

    def __init__(self, store: Store, client: EngineClient, legacy_interval: float, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.client = client
        self.legacy_interval = legacy_interval
        self._last_legacy: float | None = None

    def sample(self) -> BuildCacheSnapshot:
        c = self.client
        c.negotiate()
        if c.at_least("1.42"):
            return BuildCacheSnapshot(parse_build_cache(c.df(["build-cache"])))
        if self.legacy_interval <= 0:
            raise RuntimeError(
                f"engine API {c.api_version} < 1.42 needs a full /system/df for the build "
                "cache, switched off by --sampler.build-cache.legacy-interval=0"
            )
        now = time.monotonic()
        if self._last_legacy is not None and now - self._last_legacy < self.legacy_interval:
            raise NotDue()
        snapshot = BuildCacheSnapshot(parse_build_cache(c.df()))
        self._last_legacy = now  # only a success waits a whole interval; a failure retries
        return snapshot

    def context(self) -> dict[str, Any]:
        return {"docker_host": self.client.base_url}

    def summary(self, snapshot: BuildCacheSnapshot) -> dict[str, Any]:
        bc = snapshot.build_cache
        return {"records": bc.records, "bytes": bc.bytes, "api_version": self.client.api_version}
