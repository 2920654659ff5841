"""EngineSampler and BuildCacheSampler replaying the recorded API responses (no engine needed)."""

from __future__ import annotations

import threading
import time
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


# --- the listings in flight at once, and the reuse of unchanged 1.41 size math --------------


class ConcurrentReplayClient(ReplayClient):
    """A ReplayClient that says it may serve several requests at once; records what ran
    where and can make chosen listings fail."""

    concurrent = True

    def __init__(self, doc: dict[str, Any], fail: dict[str, Exception] | None = None) -> None:
        super().__init__(doc)
        self.fail = fail or {}
        self.threads: dict[str, str] = {}
        self.finished: list[str] = []

    def info(self) -> Any:
        return self._answer_of("info")

    def images(self) -> Any:
        return self._answer_of("images")

    def containers(self) -> Any:
        return self._answer_of("containers")

    def volumes(self) -> Any:
        return self._answer_of("volumes")

    def _answer_of(self, name: str) -> Any:
        self.threads[name] = threading.current_thread().name
        time.sleep(0.05 if name == "images" else 0.01)
        self.finished.append(name)
        if name in self.fail:
            raise self.fail[name]
        return getattr(ReplayClient, name)(self)


def test_concurrent_listings_give_the_same_snapshot(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    seq_store, conc_store = Store(), Store()
    assert EngineSampler(seq_store, ReplayClient(doc)).run()  # type: ignore[arg-type]
    client = ConcurrentReplayClient(doc)
    assert EngineSampler(conc_store, client).run()  # type: ignore[arg-type]
    assert conc_store.snapshot("engine") == seq_store.snapshot("engine")
    # Each listing ran on a thread of its own, not the sampler's.
    assert len(set(client.threads.values())) == 4
    assert all(t.startswith("engine-api") for t in client.threads.values())


@pytest.mark.parametrize(
    ("failing", "reported"),
    [
        (("containers",), "containers"),
        (("volumes", "containers"), "containers"),
        (("images", "containers"), "images"),  # images ends last, but comes first in order
        (("info", "volumes"), "info"),
    ],
)
def test_concurrent_listings_report_the_first_failure_in_order(load_fixture, failing, reported) -> None:
    doc = load_fixture("api-1.41.json")
    fail = {name: ConnectionError(f"{name} broke") for name in failing}
    store, client = Store(), ConcurrentReplayClient(doc, fail)
    assert EngineSampler(store, client).run() is False  # type: ignore[arg-type]
    assert store.status("engine").last_error == f"ConnectionError: {reported} broke"
    assert store.snapshot("engine") is None
    # No request outlives its sample.
    assert sorted(client.finished) == ["containers", "images", "info", "volumes"]


def test_sequential_client_is_called_in_order(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    order: list[str] = []

    class Recording(ReplayClient):
        def info(self) -> Any:
            order.append("info")
            return super().info()

        def images(self) -> Any:
            order.append("images")
            return super().images()

        def containers(self) -> Any:
            order.append("containers")
            return super().containers()

        def volumes(self) -> Any:
            order.append("volumes")
            return super().volumes()

    assert EngineSampler(Store(), Recording(doc)).run()  # type: ignore[arg-type]
    assert order == ["info", "images", "containers", "volumes"]


def test_unchanged_141_sample_reuses_the_images(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    store, client = Store(), ReplayClient(doc)
    sampler = EngineSampler(store, client)  # type: ignore[arg-type]
    assert sampler.run()
    first = store.snapshot("engine")
    # The same listing in another order: nothing to compute again.
    doc["images"] = list(reversed(doc["images"]))
    assert sampler.run()
    second = store.snapshot("engine")
    assert second is not first and second.images is first.images
    assert second == first


def test_changed_141_sample_computes_again(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    store, client = Store(), ReplayClient(doc)
    sampler = EngineSampler(store, client)  # type: ignore[arg-type]
    assert sampler.run()
    first = store.snapshot("engine")
    # A container of an image that had none: states and reclaimable change.
    unused = next(i for i in first.images if i.state == "unused")
    doc["containers"] = [*doc["containers"], {"Id": "f" * 64, "ImageID": unused.id, "State": "exited"}]
    assert sampler.run()
    second = store.snapshot("engine")
    assert second.images is not first.images
    assert next(i for i in second.images if i.id == unused.id).state == "in_use"
    fresh = Store()
    assert EngineSampler(fresh, ReplayClient(doc)).run()  # type: ignore[arg-type]
    assert fresh.snapshot("engine") == second
    # An image gone: its chain goes too, and the math is done again.
    doc["images"] = [i for i in doc["images"] if i["Id"] != unused.id]
    assert sampler.run()
    third = store.snapshot("engine")
    assert unused.id not in {i.id for i in third.images}
    assert unused.id not in sampler._chains


class NegotiatingClient(ConcurrentReplayClient):
    """Takes its API version from /version, as EngineClient.negotiate does."""

    def negotiate(self) -> dict[str, Any]:
        self.threads["version"] = threading.current_thread().name
        self.api_version = self.doc["version"]["ApiVersion"]
        return super().negotiate()


def test_version_goes_along_with_the_listings_once_the_engine_answered(load_fixture) -> None:
    store, client = Store(), NegotiatingClient(load_fixture("api-1.41.json"))
    sampler = EngineSampler(store, client)  # type: ignore[arg-type]
    assert sampler.run()
    assert client.threads["version"] == threading.current_thread().name  # first contact: alone, first
    assert sampler.run()
    assert client.threads["version"].startswith("engine-api")
    assert client.calls.count("/version") == 2


def test_an_engine_upgraded_between_samples_is_asked_again(load_fixture) -> None:
    store, client = Store(), NegotiatingClient(load_fixture("api-1.41.json"))
    sampler = EngineSampler(store, client)  # type: ignore[arg-type]
    assert sampler.run()
    client.doc = load_fixture("api-1.44.json")  # the listings go out as 1.41, /version says 1.44
    client.finished.clear()
    assert sampler.run(), store.status("engine").last_error
    assert sorted(client.finished) == sorted(["info", "images", "containers", "volumes"] * 2)
    assert client.calls.count("df['image']") == 1
    fresh = Store()
    assert EngineSampler(fresh, ReplayClient(load_fixture("api-1.44.json"))).run()  # type: ignore[arg-type]
    assert store.snapshot("engine").images == fresh.snapshot("engine").images
    assert store.snapshot("engine").info == fresh.snapshot("engine").info


def test_after_a_failure_version_is_asked_first_again(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    store, client = Store(), NegotiatingClient(doc, {"volumes": ConnectionError("down")})
    sampler = EngineSampler(store, client)  # type: ignore[arg-type]
    assert not sampler.run()
    client.fail = {}
    client.threads.clear()
    assert sampler.run()
    assert client.threads["version"] == threading.current_thread().name
