"""EngineSampler and BuildCacheSampler replaying the recorded API responses (no engine needed)."""

from __future__ import annotations

from typing import Any

import pytest

from exporter.model import DiskUsage
from exporter.samplers import BuildCacheSampler, EngineSampler, Store
from exporter.sources.engine import api_tuple


class ReplayClient:
    """Stands in for EngineClient: answers each GET from one fixture file."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.api_version = doc["version"]["ApiVersion"]
        self.base_url = "unix:///replay.sock"
        self.calls: list[str] = []

    def negotiate(self) -> dict[str, Any]:
        self.calls.append("/version")
        return self.doc["version"]

    def at_least(self, version: str) -> bool:
        return api_tuple(self.api_version) >= api_tuple(version)

    def info(self) -> Any:
        return self.doc["info"]

    def images(self) -> Any:
        return self.doc["images"]

    def containers(self) -> Any:
        return self.doc["containers"]

    def volumes(self) -> Any:
        return self.doc["volumes"]

    def image_inspect(self, image_id: str) -> Any:
        self.calls.append("inspect")
        return self.doc["inspect"][image_id]

    def image_history(self, image_id: str) -> Any:
        self.calls.append("history")
        return self.doc["history"][image_id]

    def df(self, types: list[str] | None = None) -> Any:
        self.calls.append(f"df{types or ''}")
        if types == ["image"]:
            return self.doc["df_image"]
        if types == ["build-cache"]:
            return self.doc["df_build_cache"]
        return self.doc["df"]


def test_engine_sampler_141_equals_docker_system_df(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    store, client = Store(), ReplayClient(doc)
    sampler = EngineSampler(store, client)  # type: ignore[arg-type]
    assert sampler.run() is True
    snap = store.snapshot("engine")
    exp = doc["expected"]
    assert snap.image_usage == DiskUsage(exp["images_used"], exp["images_reclaimable"])
    assert {i.tags[0]: i.unique_size for i in snap.images if i.tags} == exp["unique"]
    states = sorted(i.state for i in snap.images)
    assert states == ["in_use", "intermediate", "intermediate", "unused", "unused"]
    assert snap.skipped == 0
    assert store.status("engine").success is True
    # Inspect and history are fetched once per image and then cached.
    assert client.calls.count("inspect") == 5
    assert sampler.run() is True
    assert client.calls.count("inspect") == 5
    assert not any(c.startswith("df") for c in client.calls)  # never the expensive full df on 1.41


@pytest.mark.parametrize("api", ["1.44", "1.51", "1.52"])
def test_engine_sampler_newer_apis(load_fixture, api: str) -> None:
    doc = load_fixture(f"api-{api}.json")
    store, client = Store(), ReplayClient(doc)
    assert EngineSampler(store, client).run() is True  # type: ignore[arg-type]
    snap = store.snapshot("engine")
    exp = doc["expected"]
    assert {i.id: i.unique_size for i in snap.images} == exp["unique"]
    assert {i.id: i.state for i in snap.images} == exp["states"]
    assert snap.image_usage == DiskUsage(exp["images_used"], exp["images_reclaimable"])
    assert {v.name: v.containers for v in snap.volumes} == exp["volume_users"]
    assert "inspect" not in client.calls
    assert client.calls.count("df['image']") == 1
    assert [i.size for i in snap.images] == sorted((i.size for i in snap.images), reverse=True)


@pytest.mark.parametrize("api", ["1.44", "1.51", "1.52"])
def test_build_cache_sampler(load_fixture, api: str) -> None:
    doc = load_fixture(f"api-{api}.json")
    store = Store()
    assert BuildCacheSampler(store, ReplayClient(doc), legacy_interval=0).run() is True  # type: ignore[arg-type]
    bc = store.snapshot("build_cache").build_cache
    assert (bc.bytes, bc.reclaimable) == (
        doc["expected"]["build_cache_bytes"],
        doc["expected"]["build_cache_reclaimable"],
    )


def test_build_cache_sampler_legacy_switched_off_is_a_failure_with_a_reason(load_fixture) -> None:
    store, client = Store(), ReplayClient(load_fixture("api-1.41.json"))
    assert BuildCacheSampler(store, client, legacy_interval=0).run() is False  # type: ignore[arg-type]
    status = store.status("build_cache")
    assert "legacy-interval" in status.last_error
    assert store.snapshot("build_cache") is None
    assert not any(c.startswith("df") for c in client.calls)


def test_build_cache_sampler_legacy_runs_at_most_once_per_interval(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    store, client = Store(), ReplayClient(doc)
    sampler = BuildCacheSampler(store, client, legacy_interval=3600)  # type: ignore[arg-type]
    assert sampler.run() is True
    assert sampler.run() is True  # not due: keeps the last good data and status
    assert client.calls.count("df") == 1
    assert store.snapshot("build_cache").build_cache.bytes == doc["expected"]["build_cache_bytes"]
    assert store.status("build_cache").runs == 1
