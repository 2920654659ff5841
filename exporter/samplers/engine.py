"""The engine sampler: /version, /info and the image, container and volume listings."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import structlog

from exporter import imagesizes
from exporter.model import DiskUsage, EngineInfo, EngineSnapshot, Image
from exporter.samplers.base import Sampler, Store, reason
from exporter.sources.engine import (
    EngineClient,
    EngineError,
    parse_containers,
    parse_engine_info,
    parse_volumes,
)
from exporter.sources.fs import host_to_local
from exporter.sources.imageconfig import history_empty_layers

log = structlog.get_logger("exporter.samplers")


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


class _SizeMath(NamedTuple):
    """The 1.41 size math's inputs (compared whole, not hashed) and its results."""

    inputs: tuple[Any, ...]
    images: tuple[Image, ...]
    usage: DiskUsage | None
    unknown: int


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

    def __init__(self, store: Store, client: EngineClient, rootfs: str | None = None, **kw: Any) -> None:
        super().__init__(store, **kw)
        self.client = client
        # Where the host's / is, to read image configs from the Docker root when an image's
        # history leaves its layer sizes open (API 1.41); None: never read the disk.
        self.rootfs = rootfs
        self._chains: dict[str, imagesizes.LayerChain] = {}
        self._chains_version = 0  # bumped whenever _chains gains or loses an entry
        self._last: _SizeMath | None = None  # the last 1.41 size math

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
            self._refresh_chains(raw_images, info)
            key = (sorted(raw_images), per_image, self._chains_version)
            if self._last is not None and key == self._last.inputs:
                images, usage, unknown = self._last.images, self._last.usage, self._last.unknown
            else:
                self._last = None  # the old results go before the new are made
                sizes = imagesizes.sizes_from_layers(raw_images, self._chains, per_image)
                images = imagesizes.build_images(raw_images, sizes, per_image)
                usage, unknown = sizes.usage, sizes.unknown
                del sizes
                self._last = _SizeMath(key, images, usage, unknown)
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

    def _docker_root(self, info: EngineInfo) -> str | None:
        """The Docker root as seen here, where image configs may be read; None if not."""
        if self.rootfs is None or not info.root_dir or info.image_store != "graphdriver":
            return None
        return host_to_local(info.root_dir, self.rootfs)

    def _refresh_chains(self, images: list[imagesizes.RawImage], info: EngineInfo) -> None:
        current = {i.id for i in images}
        for gone in set(self._chains) - current:
            del self._chains[gone]
            self._chains_version += 1
        root = self._docker_root(info)
        for img in images:
            if img.id in self._chains:
                continue
            try:
                inspect = self.client.image_inspect(img.id)
                history = self.client.image_history(img.id)
                lc = imagesizes.layer_chain(inspect, history, img.size)
                if lc.steps and root is not None:
                    # The history left some layers open: the config says which steps made them.
                    empty = history_empty_layers(root, info.storage_driver, img.id)
                    if empty is not None:
                        lc = imagesizes.layer_chain(inspect, history, img.size, empty)
                self._chains[img.id] = lc
                self._chains_version += 1
            except EngineError as exc:
                # Removed between the listing and now, most likely: skip it this time.
                log.debug("image inspect failed", image=img.id[:19], error=reason(exc))
            except Exception as exc:  # noqa: BLE001 - one odd image must not fail the sample
                log.info("image skipped", image=img.id[:19], error=reason(exc))

    def summary(self, snapshot: EngineSnapshot) -> dict[str, Any]:
        return {
            "images": len(snapshot.images),
            "containers": len(snapshot.containers),
            "volumes": len(snapshot.volumes),
            "skipped": snapshot.skipped,
            "api_version": self.client.api_version,
        }
