"""Samplers: sources -> frozen snapshots, each with its own health.

A sampler's `run()` never raises. On failure it keeps the last good snapshot and records
the failure in its status, which the collector turns into `sampler_*` metrics. Odd single
objects are skipped and counted inside the snapshot, never fatal.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar, Protocol, TypeVar

import structlog

from exporter import imagesizes
from exporter.model import (
    BuildCacheSnapshot,
    DiskUsage,
    EngineSnapshot,
    FilesystemSnapshot,
    Image,
    SamplerStatus,
)
from exporter.sources import fs
from exporter.sources.engine import (
    EngineClient,
    EngineError,
    parse_build_cache,
    parse_containers,
    parse_engine_info,
    parse_volumes,
)

log = structlog.get_logger("exporter.samplers")


class _Published(Protocol):
    sampler: ClassVar[str]


S = TypeVar("S", bound=_Published)


class NotDue(Exception):
    """Raised by a sampler that has nothing to do this time; the status stays as it was."""


class Unavailable(Exception):
    """The sampler cannot work in this setup (e.g. the Docker root is not visible here).
    The sampler logs the reason once itself; its status says unavailable."""


class Store:
    """The latest snapshot and status of each sampler.

    Samplers replace whole immutable objects; the collector reads without locking and sees
    either the old or the new object, never half of one.
    """

    def __init__(self) -> None:
        self._snapshots: dict[str, Any] = {}
        self._status: dict[str, SamplerStatus] = {}
        self._lock = threading.Lock()

    def publish(self, status: SamplerStatus, snapshot: Any = None) -> None:
        with self._lock:
            if snapshot is not None:
                self._snapshots = {**self._snapshots, status.name: snapshot}
            self._status = {**self._status, status.name: status}

    def snapshot(self, name: str) -> Any:
        return self._snapshots.get(name)

    def latest(self, kind: type[S]) -> S | None:
        """The latest snapshot of a type (published by the sampler it names), typed. Anything
        else under that sampler's name is a bug, raised for the caller to count."""
        snap = self._snapshots.get(kind.sampler)
        if snap is None or isinstance(snap, kind):
            return snap
        raise TypeError(f"sampler {kind.sampler} published a {type(snap).__name__}, not a {kind.__name__}")

    def status(self, name: str) -> SamplerStatus | None:
        return self._status.get(name)

    def statuses(self) -> list[SamplerStatus]:
        return sorted(self._status.values(), key=lambda s: s.name)


class Sampler:
    name = "sampler"

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._status = SamplerStatus(name=self.name)
        store.publish(self._status)

    def sample(self) -> Any:
        raise NotImplementedError

    def summary(self, snapshot: Any) -> dict[str, Any]:
        return {}

    def context(self) -> dict[str, Any]:
        """Fields that help read a failure, e.g. which engine address was tried."""
        return {}

    def run(self) -> bool:
        """One sample. Never raises: returns whether it succeeded."""
        started = time.monotonic()
        try:
            snapshot = self.sample()
        except NotDue:
            return self._status.success
        except Exception as exc:  # noqa: BLE001 - a sampler must survive anything
            duration = time.monotonic() - started
            reason = _reason(exc)
            unavailable = isinstance(exc, Unavailable)
            self._status = replace(
                self._status,
                available=not unavailable,
                success=False,
                duration_seconds=duration,
                last_error=reason,
                runs=self._status.runs + 1,
                failures=self._status.failures + 1,
            )
            self.store.publish(self._status)
            if unavailable:
                return False
            log.warning(
                "sample failed",
                sampler=self.name,
                duration_seconds=round(duration, 3),
                error=reason,
                **self.context(),
            )
            return False
        duration = time.monotonic() - started
        self._status = replace(
            self._status,
            available=True,
            success=True,
            duration_seconds=duration,
            last_success=self.clock(),
            last_error="",
            runs=self._status.runs + 1,
        )
        self.store.publish(self._status, snapshot)
        log.info(
            "sample",
            sampler=self.name,
            duration_seconds=round(duration, 3),
            **self.summary(snapshot),
        )
        return True


def _root_oserror(exc: BaseException, depth: int = 0) -> OSError | None:
    """The OSError at the bottom of requests/urllib3 wrappers, which says what really failed."""
    if depth > 6:
        return None
    if isinstance(exc, OSError) and exc.strerror:
        return exc
    for inner in (*[a for a in exc.args if isinstance(a, BaseException)], exc.__cause__, exc.__context__):
        if inner is not None and inner is not exc:
            found = _root_oserror(inner, depth + 1)
            if found is not None:
                return found
    return None


def _reason(exc: BaseException) -> str:
    root = _root_oserror(exc)
    if root is not None:
        return f"{type(exc).__name__}: {root.strerror}"[:300]
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300]


class _Listings:
    """The listing calls of one engine sample, in flight at once when the client allows it.

    The calls are independent, and most of a sample's wall time is dockerd answering them
    (a big host's /images/json above all), so they overlap, and the answers that come first
    are parsed while the rest are still coming. `get` reports failures as a sequential run
    would: the first call, in the given order, that failed. A client without a true
    `concurrent` attribute is called one request at a time, in that order.
    """

    def __init__(self, calls: dict[str, Callable[[], Any]], concurrent: bool) -> None:
        self._calls = calls
        self._order = list(calls)
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future[Any]] = {}
        self._results: dict[str, Any] = {}
        self._called = 0
        if concurrent and len(calls) > 1:
            self._pool = ThreadPoolExecutor(len(calls), thread_name_prefix="engine-api")
            self._futures = {name: self._pool.submit(fn) for name, fn in calls.items()}

    def get(self, name: str) -> Any:
        """The answer of one call (handed over once: it is not kept here)."""
        if self._pool is None:
            while name not in self._results:
                nxt = self._order[self._called]
                self._results[nxt] = self._calls[nxt]()
                self._called += 1
            return self._results.pop(name)
        future = self._futures.pop(name)
        try:
            return future.result()
        except BaseException:
            for earlier in self._order[: self._order.index(name)]:
                f = self._futures.get(earlier)
                if f is not None:
                    f.result()  # an earlier call's failure is the one a sequential run reports
            raise

    def close(self) -> None:
        """Waits for every call still in flight: none outlives its sample."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> _Listings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EngineSampler(Sampler):
    """Engine facts from the API: info, images with sizes, containers, volumes.

    Image inspect and history results never change for an image ID, so on API 1.41 (where
    the engine will not compute shared sizes cheaply) they are fetched once per image and
    cached; the cache forgets images that are gone. On 1.42+ one `/system/df?type=image`
    gives the engine's own shared sizes. When the listing, the containers' images and the
    cached chains are all as they were, the 1.41 size math is not done again: the previous
    sample's images are reused as they are.
    """

    name = "engine"

    def __init__(self, store: Store, client: EngineClient, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.client = client
        self._chains: dict[str, imagesizes.LayerChain] = {}
        self._chains_version = 0  # bumped whenever _chains gains or loses an entry
        # The inputs of the last 1.41 size math and its results.
        self._last_key: tuple[Any, ...] | None = None
        self._last: tuple[tuple[Image, ...], DiskUsage | None, int] | None = None

    def sample(self) -> EngineSnapshot:
        c = self.client
        concurrent = getattr(c, "concurrent", False) is True
        version: Any = None
        if not (concurrent and self._status.success):
            # First contact, or after a failure: learn the API version before anything else.
            version = c.negotiate()
        while True:
            # Otherwise /version goes along with the listings, which use the API version of the
            # last sample; should /version name another one (the engine was upgraded), they
            # are asked again.
            api = c.api_version
            newer = c.at_least("1.42")
            calls: dict[str, Callable[[], Any]] = {} if version is not None else {"version": c.negotiate}
            calls.update(info=c.info, images=c.images, containers=c.containers, volumes=c.volumes)
            if newer:
                calls["df"] = lambda: c.df(["image"])
            with _Listings(calls, concurrent) as answers:
                if version is None:
                    version = answers.get("version")
                    if c.api_version != api:
                        continue
                info = parse_engine_info(version, answers.get("info"))
                containers, skipped_containers = parse_containers(answers.get("containers"))
                users: Counter[str] = Counter()
                for ct in containers:
                    users.update(ct.volumes)
                volumes, skipped_volumes = parse_volumes(answers.get("volumes"), users)
                raw_images, skipped_images = imagesizes.parse_images(answers.get("images"))
                df = answers.get("df") if newer else None
            break
        per_image: Counter[str] = Counter(ct.image_id for ct in containers if ct.image_id)

        if newer:
            sizes = imagesizes.sizes_from_df(raw_images, df, per_image)
            images = imagesizes.build_images(raw_images, sizes, per_image)
            usage, unknown = sizes.usage, sizes.unknown
        else:
            self._refresh_chains(raw_images)
            key = (sorted(raw_images), per_image, self._chains_version)
            if self._last is not None and key == self._last_key:
                images, usage, unknown = self._last
            else:
                self._last_key = self._last = None  # the old results go before the new are made
                sizes = imagesizes.sizes_from_layers(raw_images, self._chains, per_image)
                images = imagesizes.build_images(raw_images, sizes, per_image)
                usage, unknown = sizes.usage, sizes.unknown
                del sizes
                self._last_key, self._last = key, (images, usage, unknown)
        snapshot = EngineSnapshot(
            info=info,
            images=images,
            containers=tuple(containers),
            volumes=tuple(volumes),
            image_usage=usage,
            skipped=skipped_images + skipped_containers + skipped_volumes + unknown,
        )
        snapshot.image_states, snapshot.registries  # noqa: B018 - computed here, not at scrape time
        return snapshot

    def context(self) -> dict[str, Any]:
        return {"docker_host": self.client.base_url}

    def _refresh_chains(self, images: list[imagesizes.RawImage]) -> None:
        current = {i.id for i in images}
        for gone in set(self._chains) - current:
            del self._chains[gone]
            self._chains_version += 1
        for img in images:
            if img.id in self._chains:
                continue
            try:
                inspect = self.client.image_inspect(img.id)
                history = self.client.image_history(img.id)
                self._chains[img.id] = imagesizes.layer_chain(inspect, history, img.size)
                self._chains_version += 1
            except EngineError as exc:
                # Removed between the listing and now, most likely: skip it this time.
                log.debug("image inspect failed", image=img.id[:19], error=_reason(exc))
            except Exception as exc:  # noqa: BLE001 - one odd image must not fail the sample
                log.info("image skipped", image=img.id[:19], error=_reason(exc))

    def summary(self, snapshot: EngineSnapshot) -> dict[str, Any]:
        return {
            "images": len(snapshot.images),
            "containers": len(snapshot.containers),
            "volumes": len(snapshot.volumes),
            "skipped": snapshot.skipped,
            "api_version": self.client.api_version,
        }


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


class FilesystemSampler(Sampler):
    """statvfs of each filesystem holding a Docker area. Needs no engine once the root is
    known, so disk-full alerts keep working while dockerd is down."""

    name = "filesystem"

    def __init__(self, store: Store, rootfs: str = "/", **kw: Any) -> None:
        super().__init__(store, **kw)
        self.rootfs = rootfs

    def paths(self) -> list[str]:
        """The Docker root, its top-level dirs (any may be a mount of its own) and volumes
        whose data lives elsewhere, as host paths."""
        engine = self.store.latest(EngineSnapshot)
        if engine is None or not engine.info.root_dir:
            # Not a failure of ours: wait for the first engine sample to name the root.
            raise NotDue()
        root = engine.info.root_dir
        paths = [root]
        try:
            local = fs.host_to_local(root, self.rootfs)
            paths += [
                f"{root.rstrip('/')}/{n}"
                for n in sorted(os.listdir(local))
                if os.path.isdir(os.path.join(local, n))
            ]
        except OSError:
            pass  # the root itself is still statfs'd, and fails clearly if invisible
        paths += sorted(
            {
                v.mountpoint
                for v in engine.volumes
                if v.mountpoint and not v.mountpoint.startswith(root.rstrip("/") + "/")
            }
        )
        return paths

    def sample(self) -> FilesystemSnapshot:
        mounts = fs.read_mounts()
        seen: set[str] = set()
        out = []
        for i, path in enumerate(self.paths()):
            try:
                info = fs.statfs(path, self.rootfs, mounts)
            except OSError:
                if i == 0:
                    raise  # the root itself must be visible
                continue  # a dir or volume that vanished since the listing
            if info.mountpoint in seen:
                continue
            seen.add(info.mountpoint)
            out.append(info)
        return FilesystemSnapshot(tuple(out))

    def summary(self, snapshot: FilesystemSnapshot) -> dict[str, Any]:
        return {
            "filesystems": len(snapshot.filesystems),
            "avail_bytes": [f.avail for f in snapshot.filesystems],
        }
