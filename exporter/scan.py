"""The scan sampler: walk the Docker root ourselves and attribute every byte.

Image layers (`overlay2/<cache-id>`) never change once committed, so each is walked once and
cached by cache-id; container upper dirs, container dirs (logs) and volumes are walked every
scan. A scan that runs out of its time budget is a failure that keeps the last good
snapshot (never a smaller number); the layers it finished stay cached, so the next scan
goes further.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from collections import defaultdict
from typing import Any

import structlog

from exporter.model import (
    ContainerScan,
    EngineSnapshot,
    LayerScan,
    OrphanDir,
    ScanSnapshot,
    VolumeScan,
)
from exporter.samplers import NotDue, Sampler, Store, Unavailable
from exporter.sources.du import LayerCache, Usage, Walker, WalkJob, total
from exporter.sources.fs import host_to_local
from exporter.sources.layout import Layout, ReadCache, names_in, read_layout
from exporter.sources.stamps import AtomicTree, settled_stamp

log = structlog.get_logger("exporter.scan")

ZERO = Usage(0, 0, 0, 0, False)
OWNERS = ("image", "container", "init", "build_cache", "links", "orphan")
LOCAL_BELOW_FILES = 20_000  # expected inodes under which a run is small (Walker.run)
BYTES_PER_FILE = 4096  # a layer's guessed inodes from its recorded bytes: a rough median file
ATTRIBUTED_DRIVERS = ("overlay2",)
# Walk excludes, one object each for every job (a host has tens of thousands of layer dirs).
BESIDE_DIFF = frozenset({"diff", "merged"})  # a driver dir but its diff/ and live mount
NOT_MERGED = frozenset({"merged"})
NOT_MOUNTS = frozenset({"mounts"})  # a container dir's live mounts (shm, secrets)
NOT_DATA = frozenset({"_data"})


def _dir_usage(r: dict[str, Usage], name: str) -> Usage:
    """A driver dir's figure: its diff/ and the rest, walked apart."""
    return r.get(f"diff:{name}", ZERO) + r.get(f"meta:{name}", ZERO)


def _one(path: str) -> Usage:
    """One inode, as du counts it: a file, or a dir's own blocks."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ZERO
    except OSError:
        return Usage(0, 0, 0, 1, False)
    apparent = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
    return Usage(st.st_blocks * 512, apparent, 1, 0, False)


class ScanSampler(Sampler):
    name = "scan"

    def __init__(
        self,
        store: Store,
        walker: Walker,
        rootfs: str = "/",
        budget: float = 600.0,
        **kw: Any,
    ) -> None:
        super().__init__(store, **kw)
        self.walker = walker
        self.rootfs = rootfs
        self.budget = budget
        self.cache = LayerCache()  # image layer dirs' diff/, by cache-id
        self.meta = LayerCache()  # the rest of each image layer dir, by cache-id
        # Other dirs that never change once written: init layers (by name), all of layerdb/sha256
        # (by its settled stamp) and overlay2/l (by its stamp).
        self.static = LayerCache()
        # Each layerdb chain dir, by chain ID: (the dir's stamp, its walk). A layer removed and
        # pulled again comes back under the same chain ID in a new dir: a new stamp.
        self.chains: dict[str, tuple[tuple[int, int], Usage]] = {}
        self.reads = ReadCache()  # parsed layerdb entries and image configs
        self.image_tree = AtomicTree()  # image/<driver>/ but its layerdb chain dirs and tmp/
        self._image_walk: tuple[str, frozenset[str]] | None = None  # set by _jobs
        self._links_walked = ""
        self._last_files: dict[str, int] = {}  # inodes per walk key last time: the walks' hints
        self._said_unavailable = ""
        # Derived from immutable inputs, reused while those are equal (read_layout hands back
        # its memoized listings when nothing changed, so the test is cheap): (inputs, result).
        self._retained: tuple[Any, ...] = ()
        self._image_part: tuple[Any, tuple[tuple[LayerScan, ...], Usage, frozenset[str]]] | None = None

    # -- the scan ---------------------------------------------------------------------

    def sample(self) -> ScanSnapshot:
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

        attribution, why = True, ""
        if info.image_store == "containerd":
            attribution, why = False, "containerd image store: layers live in containerd's snapshotter"
        elif info.storage_driver not in ATTRIBUTED_DRIVERS:
            attribution, why = False, f"storage driver {info.storage_driver or 'unknown'} is not overlay2"
        driver = info.storage_driver or "overlay2"
        layout = read_layout(root, driver, self.reads)
        if layout.skipped:
            log.info("layout entries skipped", count=layout.skipped, first=list(layout.problems[:5]))

        self._image_walk = None
        jobs, results, kinds = self._jobs(layout, attribution)
        image: list[Usage] = []

        def walk_image() -> None:  # while the workers walk
            if self._image_walk is not None:
                image.append(self.image_tree.walk(*self._image_walk, deadline=deadline))

        # A rescan of small live dirs shares the walk between this process and a running pool.
        walked = self.walker.run(jobs, deadline, local_below=LOCAL_BELOW_FILES, alongside=walk_image)
        if image:
            walked["top:image"], kinds["top:image"] = image[0], "other"
        # Hints for the dirs walked every scan; a layer's or chain dir's walk is cached instead.
        self._last_files = {
            k: u.files
            for k, u in walked.items()
            if not u.partial and kinds[k] != "layer" and k[:6] != "chain:"
        }
        partial = [k for k, u in walked.items() if u.partial]
        if partial or time.monotonic() > deadline:
            self._cache_layers(layout, walked, {})
            self._forget_gone(layout)  # scans that keep failing must not grow the caches
            raise TimeoutError(
                f"scan exceeded its {self.budget:.0f}s budget ({len(jobs) - len(partial)} of "
                f"{len(jobs)} dirs done; finished layers are cached for the next scan)"
            )
        results.update(walked)
        self._cache_layers(layout, walked, results)
        self._forget_gone(layout)
        walk_counts: dict[str, int] = defaultdict(int)
        for job in jobs:
            walk_counts[kinds[job.key]] += 1
        return self._snapshot(info.root_dir, engine, layout, attribution, why, results, walk_counts)

    def _jobs(
        self, layout: Layout, attribution: bool
    ) -> tuple[list[WalkJob], dict[str, Usage], dict[str, str]]:
        root, driver = layout.root, layout.driver
        jobs: list[WalkJob] = []
        results: dict[str, Usage] = {}
        kinds: dict[str, str] = {}

        def add(
            key: str,
            path: str,
            kind: str,
            exclude: frozenset[str] = frozenset(),
            guess: int = 0,
            isolate: bool = False,
        ) -> None:
            jobs.append(WalkJob(key, path, exclude, self._last_files.get(key, guess), isolate))
            kinds[key] = kind

        def add_static(key: str, path: str, exclude: frozenset[str] = frozenset()) -> None:
            cached = self.static.get(key)
            if cached is not None:
                results[key] = cached
            else:
                add(key, path, "other", exclude)

        stamps = layout.chain_stamps
        chains = f"{driver}/layerdb/sha256"  # relative to image/
        chains_dir = os.path.join(root, "image", chains)
        for name in layout.top_dirs:
            path = os.path.join(root, name)
            if name in (driver, "containers", "volumes"):
                results[f"top:{name}"] = _one(path)  # the dir itself; its entries come below
            elif name == "image" and os.path.isdir(chains_dir):
                # dockerd's image store, written by renames only: walked here, a dir read again
                # only when its stamp moved (exporter.sources.stamps). Not layerdb/tmp, where a
                # layer being pulled grows in place: a walk of its own every time. The chain dirs
                # never change: each walked once, below.
                tmp = f"{driver}/layerdb/tmp"
                self._image_walk = (path, frozenset({chains, tmp}))
                if os.path.isdir(os.path.join(path, tmp)):
                    add("imagetmp:", os.path.join(path, tmp), "other")
                whole = self.static.get(self._chains_key(layout))
                if whole is not None:  # no chain dir came, went or changed: their sum as last time
                    results["chains:"] = whole
                    continue
                results["chains:"] = _one(chains_dir)
                for chain in names_in(chains_dir):
                    hit = self.chains.get(chain)
                    if hit is not None and hit[0] == stamps.get(chain):
                        results[f"chain:{chain}"] = hit[1]
                    else:  # new, or not a layer entry (e.g. one being removed: walked every time)
                        add(f"chain:{chain}", f"{chains_dir}/{chain}", "other")
            elif os.path.isdir(path) and not os.path.islink(path):
                add(f"top:{name}", path, "other")
            else:
                results[f"top:{name}"] = _one(path)

        layer_ids = {e.cache_id: e.size for e in layout.layers} if attribution else {}
        mount_ids = {m.mount_id for m in layout.mounts} if attribution else set()
        init_ids = {m.init_id for m in layout.mounts if m.init_id} if attribution else set()
        ddir = os.path.join(root, driver)
        for name in layout.driver_dirs:
            path = f"{ddir}/{name}"  # not os.path.join: thousands of names a scan, all plain
            if name in layer_ids:
                diff, meta = self.cache.get(name), self.meta.get(name)
                if diff is not None and meta is not None:
                    results[f"diff:{name}"], results[f"meta:{name}"] = diff, meta
                    continue
                # Never walked: its recorded bytes guess its inodes, so the first scan's batches
                # are balanced by cost, not count (a few layers hold most of the files).
                add(f"diff:{name}", f"{path}/diff", "layer", guess=layer_ids[name] // BYTES_PER_FILE + 1)
                add(f"meta:{name}", path, "layer", BESIDE_DIFF)
            elif name in mount_ids:
                add(f"diff:{name}", f"{path}/diff", "container")
                add(f"meta:{name}", path, "container", BESIDE_DIFF)
            elif name in init_ids:
                add_static(f"meta:{name}", path, NOT_MERGED)  # written once at create
            elif name == "l" and (links := self._links_key(path)):
                # overlay2's short symlinks change only when layers come or go: the dir's mtime.
                cached = self.static.get(links)
                if cached is not None:
                    results["meta:l"] = cached
                else:
                    add("meta:l", path, "other")
                    self._links_walked = links  # cached under the key read before the walk
            else:
                add(f"meta:{name}", path, "other", NOT_MERGED)

        for name in layout.driver_files:
            # Loose files count with the driver dir itself, owned by no one in particular.
            key = f"top:{driver}"
            results[key] = results.get(key, ZERO) + _one(os.path.join(ddir, name))
        for c in layout.containers:
            # mounts/ holds live mounts (shm, secrets): never descended into.
            add(f"container:{c.id}", c.path, "container", NOT_MOUNTS)
        vdir = os.path.join(root, "volumes")
        for name in names_in(vdir):
            path = os.path.join(vdir, name)
            if name in layout.volumes:
                # _data may be a mount (NFS, a bind): walked in a worker when one can run, which
                # can be killed if it hangs (du.WalkJob.isolate).
                add(f"vdata:{name}", os.path.join(path, "_data"), "volume", isolate=True)
                add(f"volume:{name}", path, "volume", NOT_DATA)
            else:
                results[f"vfile:{name}"] = _one(path)  # metadata.db, backingFsBlockDev
        return jobs, results, kinds

    @staticmethod
    def _chains_key(layout: Layout) -> str:
        """Cache key of all of layerdb/sha256: its settled stamp (exporter.sources.stamps)."""
        stamp = layout.chains_stamp
        return f"chains:{stamp[0]}:{stamp[1]}" if stamp else ""

    @staticmethod
    def _links_key(path: str) -> str:
        """overlay2/l by its settled stamp (exporter.sources.stamps): dockerd adds two links a
        few ms apart when it creates a container, maybe within one mtime tick."""
        stamp = settled_stamp(path)
        return f"links:{stamp[0]}:{stamp[1]}" if stamp else ""

    def _forget_gone(self, layout: Layout) -> None:
        if self._retained is not layout.layers:  # a new listing: forget the layers gone
            live = {e.cache_id for e in layout.layers}
            self.cache.retain(live)
            self.meta.retain(live)
            stamps = layout.chain_stamps
            self.chains = {c: hit for c, hit in self.chains.items() if stamps.get(c) == hit[0]}
            self._retained = layout.layers
        self.static.retain(self.static_keys(layout))

    def static_keys(self, layout: Layout) -> set[str]:
        inits = {f"meta:{m.init_id}" for m in layout.mounts if m.init_id}
        links = self._links_key(os.path.join(layout.root, layout.driver, "l"))
        return (inits | {self._chains_key(layout), links}) - {""}

    def _cache_layers(self, layout: Layout, walked: dict[str, Usage], results: dict[str, Usage]) -> None:
        keys = self.static_keys(layout)
        for key in keys:
            if key in walked:
                self.static.put(key, walked[key])
        stamps = layout.chain_stamps
        for key, usage in walked.items():
            if key[:6] == "chain:" and LayerCache.keeps(usage):
                chain = sys.intern(key[6:])  # the layout's own string: read_layers interns them
                stamp = stamps.get(chain)
                if stamp is not None:
                    self.chains[chain] = (stamp, usage)
        whole = self._chains_key(layout)
        if whole and whole not in self.static and "chains:" in results:
            # Every chain dir as one figure, with layerdb/sha256's own blocks ("chains:").
            self.static.put(whole, total(u for k, u in results.items() if k.startswith("chain")))
        if self._links_walked and "meta:l" in walked:
            self.static.put(self._links_walked, walked["meta:l"])
        self._links_walked = ""
        for e in layout.layers:
            diff, meta = walked.get(f"diff:{e.cache_id}"), walked.get(f"meta:{e.cache_id}")
            if diff is not None and meta is not None:
                self.cache.put(e.cache_id, diff)
                self.meta.put(e.cache_id, meta)
                self._image_part = None  # its figures may come from an earlier walk of this one

    def _snapshot(
        self,
        root_host: str,
        engine: EngineSnapshot,
        layout: Layout,
        attribution: bool,
        why: str,
        r: dict[str, Usage],
        walks: dict[str, int],
    ) -> ScanSnapshot:
        driver = layout.driver

        # Per top-level dir of the Docker root: each result key's prefix says where it lies.
        under = {"diff": driver, "meta": driver, "container": "containers", "vdata": "volumes",
                 "volume": "volumes", "vfile": "volumes", "chain": "image", "chains": "image",
                 "imagetmp": "image"}  # fmt: skip
        parts: dict[str, list[Usage]] = defaultdict(list)
        for k, v in r.items():
            prefix, _, rest = k.partition(":")
            parts[rest if prefix == "top" else under.get(prefix, "")].append(v)
        root_dirs = {name: total(parts.get(name, ())) for name in layout.top_dirs}

        # Layers and driver dirs by owner.
        owners: dict[str, Usage] = {}
        layers: tuple[LayerScan, ...] = ()
        orphans: list[OrphanDir] = []
        if attribution:
            layers, image_total, image_dirs = self._image_part_of(layout, r, fresh=walks.get("layer", 0) > 0)
            mount_ids = {m.mount_id for m in layout.mounts}
            init_ids = {m.init_id for m in layout.mounts if m.init_id}
            acc: dict[str, list[Usage]] = {owner: [] for owner in OWNERS}
            acc["image"].append(image_total)
            for name in layout.driver_dirs:
                if name in image_dirs:
                    continue
                u = _dir_usage(r, name)
                if name in mount_ids:
                    owner = "container"
                elif name in init_ids:
                    owner = "init"
                elif name in layout.buildkit_names:
                    owner = "build_cache"
                elif name == "l":
                    owner = "links"
                else:
                    owner = "orphan"
                    orphans.append(OrphanDir(name, os.path.join(root_host, driver, name), u))
                acc[owner].append(u)
            owners = {owner: total(us) for owner, us in acc.items()}

        # Containers: upper dir from the layerdb mount, logs from their files.
        mounts = {m.container_id: m for m in layout.mounts}
        known = {c.id: c for c in engine.containers}
        containers = []
        for cdir in layout.containers:
            ct = known.get(cdir.id)
            m = mounts.get(cdir.id)
            rw = r.get(f"diff:{m.mount_id}") if (attribution and m) else None
            containers.append(
                ContainerScan(
                    id=cdir.id,
                    name=ct.name if ct else cdir.id[:12],
                    image=ct.image if ct else "",
                    state=ct.state if ct else "unknown",
                    rw=rw,
                    logs=total(_one(p) for p in cdir.logs),
                )
            )

        vols = {v.name: v for v in engine.volumes}
        volumes = []
        for name in layout.volumes:
            v = vols.get(name)
            volumes.append(
                VolumeScan(
                    name=name,
                    driver=v.driver if v else "local",
                    containers=v.containers if v else 0,
                    data=r.get(f"vdata:{name}", ZERO),
                    total=r.get(f"vdata:{name}", ZERO) + r.get(f"volume:{name}", ZERO),
                )
            )
        return ScanSnapshot(
            root_dir=root_host,
            driver=driver,
            attribution=attribution,
            attribution_reason=why,
            root_dirs=root_dirs,
            owners=owners,
            layers=layers,
            containers=tuple(
                sorted(
                    containers, key=lambda c: (-(c.logs.disk_bytes + (c.rw.disk_bytes if c.rw else 0)), c.id)
                )
            ),
            volumes=tuple(sorted(volumes, key=lambda v: (-v.total.disk_bytes, v.name))),
            orphans=tuple(sorted(orphans, key=lambda o: (-o.usage.disk_bytes, o.name))),
            walks=dict(walks),
            cached_layers=len(self.cache),
            skipped=layout.skipped,
            errors=sum(u.errors for u in r.values()),
        )

    def _image_part_of(
        self, layout: Layout, r: dict[str, Usage], fresh: bool
    ) -> tuple[tuple[LayerScan, ...], Usage, frozenset[str]]:
        """The image layers, biggest first, their driver dirs' total and names. Layer dirs are
        immutable, so unless a layer was walked this scan or the listings changed (read_layout
        returns the same objects while they have not), this is last scan's answer."""
        inputs = (layout.layers, layout.image_layers, layout.driver_dirs)
        memo = self._image_part
        if not fresh and memo is not None and memo[0] == inputs:
            return memo[1]

        users: dict[str, int] = defaultdict(int)
        for chain in layout.image_layers.values():
            for cid in set(chain):
                users[cid] += 1
        layers = [
            LayerScan(
                chain_id=e.chain_id,
                diff_id=e.diff_id,
                cache_id=e.cache_id,
                size=e.size,
                diff=r.get(f"diff:{e.cache_id}", ZERO),
                total=_dir_usage(r, e.cache_id),
                images=users.get(e.chain_id, 0),
            )
            for e in layout.layers
        ]
        dirs = frozenset(e.cache_id for e in layout.layers) & frozenset(layout.driver_dirs)
        part = (
            tuple(sorted(layers, key=lambda x: (-x.total.disk_bytes, x.diff_id))),
            total(_dir_usage(r, name) for name in dirs),
            dirs,
        )
        self._image_part = inputs, part
        return part

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
            "root_disk_bytes": sum(u.disk_bytes for u in snapshot.root_dirs.values()),
        }
