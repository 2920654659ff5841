"""Docker's graphdriver store (overlay2 above all): layerdb, the driver's dir, containers/,
volumes/. Read-only; the metadata is parsed by exporter.sources.layout.

What it tells the scan (exporter.stores.inventory):
- `overlay2/<cache-id>` of each layerdb layer is an image layer: immutable once committed,
  walked once, its `diff/` apart (Docker's layer size is diff/'s apparent bytes);
- `overlay2/<mount-id>` of each container is its writable layer (`diff/` is SizeRw), walked
  every scan; `<mount-id>-init` its init layer, written once at create;
- `l/` holds overlay2's short links, changed only when layers come or go (its stamp);
- a dir BuildKit's snapshots.db names is build cache; any other dir is an orphan;
- `image/` is dockerd's image store, written by renames only, but `layerdb/tmp`, where a layer
  being pulled grows in place; each layerdb chain dir never changes once it is there.
Other graphdrivers (vfs, btrfs, zfs…) and the containerd image store get the same walk, with
no attribution of the driver's dirs.
"""

from __future__ import annotations

import os
from typing import ClassVar

from exporter.memo import Derived
from exporter.model import EngineInfo
from exporter.sources.du import NOTHING_STARTED, Prefetched
from exporter.sources.layout import Layout, ReadCache, listing, names_in, read_layout
from exporter.sources.stamps import settled_stamp
from exporter.stores import register
from exporter.stores.inventory import (
    OWNERS,
    AreaDir,
    ContainerDir,
    LayerArea,
    LayerDir,
    MetaDir,
    Owner,
    Part,
    Prefetch,
    Reuse,
    StoreLayout,
    StoreOptions,
    VolumeDir,
)

ATTRIBUTED_DRIVERS = ("overlay2",)
# Walk excludes, one object each for every record (a host has tens of thousands of layer dirs).
BESIDE_DIFF = frozenset({"diff", "merged"})  # a driver dir but its diff/ and live mount
NOT_MERGED = frozenset({"merged"})
NOT_MOUNTS = frozenset({"mounts"})  # a container dir's live mounts (shm, secrets)
NOT_DATA = frozenset({"_data"})


@register
class Overlay2Reader:
    """Reads any Docker root; attributes the driver's dirs on overlay2 with the graphdriver
    image store. One per root: it keeps the parsed entries that cannot change."""

    name: ClassVar[str] = "overlay2"

    def __init__(self, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self.reads = ReadCache()  # parsed layerdb entries and image configs
        # Records derived from what read_layout hands back unchanged while nothing changed.
        self._layers: Derived[tuple[LayerDir, ...]] = Derived()
        self._present: Derived[frozenset[str]] = Derived()
        self._chains: Derived[tuple[MetaDir, ...]] = Derived()
        self._containers: Derived[tuple[ContainerDir, ...]] = Derived()

    @classmethod
    def applies(cls, info: EngineInfo) -> bool:
        return True  # the catch-all: every Docker root has this shape, attributed or not

    def prefetch(self, root: str, info: EngineInfo) -> tuple[Prefetch, ...]:
        return ()  # which walks a layer dir needs, layerdb tells

    def read(self, root: str, info: EngineInfo, prefetched: Prefetched = NOTHING_STARTED) -> StoreLayout:
        attribution, why = True, ""
        if info.image_store == "containerd":
            attribution, why = False, "containerd image store: layers live in containerd's snapshotter"
        elif info.storage_driver not in ATTRIBUTED_DRIVERS:
            attribution, why = False, f"storage driver {info.storage_driver or 'unknown'} is not overlay2"
        driver = info.storage_driver or "overlay2"
        layout = read_layout(root, driver, self.reads)
        meta, entries, itemised = self._root_items(layout)
        layers, present = self._layer_dirs(layout) if attribution else ((), frozenset())
        return StoreLayout(
            reader=self.name,
            root=root,
            driver=driver,
            attribution=attribution,
            attribution_reason=why,
            area=LayerArea(
                driver,
                os.path.join(root, driver),
                "diff",
                BESIDE_DIFF,
                NOT_MERGED,
                host=os.path.join(info.root_dir, driver) if info.root_dir else "",
            ),
            layers=layers,
            layer_dirs=present,
            image_layers=layout.image_layers,
            area_dirs=self._area_dirs(layout, present, attribution),
            writable={m.container_id: m.mount_id for m in layout.mounts} if attribution else {},
            containers=self._containers.get(
                lambda: tuple(ContainerDir(c.id, c.path, c.logs, NOT_MOUNTS) for c in layout.containers),
                layout.containers,
            ),
            volumes=tuple(
                VolumeDir(name, p, os.path.join(p, "_data"), NOT_DATA)
                for name in layout.volumes
                for p in (os.path.join(root, "volumes", name),)
            ),
            meta=meta,
            entries=entries,
            itemised=itemised,
            top_dirs=layout.top_dirs,
            areas={
                Part.LAYER: driver,
                Part.LAYER_REST: driver,
                Part.WRITABLE: driver,
                Part.WRITABLE_REST: driver,
                Part.AREA_DIR: driver,
                Part.CONTAINER: "containers",
                Part.VOLUME_DATA: "volumes",
                Part.VOLUME_REST: "volumes",
            },
            owners=OWNERS,
            skipped=layout.skipped,
            problems=layout.problems,
        )

    def _layer_dirs(self, layout: Layout) -> tuple[tuple[LayerDir, ...], frozenset[str]]:
        entries, names = layout.layers, layout.driver_dirs
        dirs = self._layers.get(
            lambda: tuple(LayerDir(e.cache_id, e.chain_id, e.diff_id, e.parent, e.size) for e in entries),
            entries,
        )
        present = self._present.get(
            lambda: frozenset(e.cache_id for e in entries) & frozenset(names), entries, names
        )
        return dirs, present

    @staticmethod
    def _area_dirs(layout: Layout, layers: frozenset[str], attribution: bool) -> tuple[AreaDir, ...]:
        mounts = {m.mount_id for m in layout.mounts} if attribution else set()
        inits = {m.init_id for m in layout.mounts if m.init_id} if attribution else set()
        out = []
        for name in layout.driver_dirs:
            if name in layers:
                continue
            if name in mounts:
                out.append(AreaDir(name, Owner.CONTAINER, split=True))
            elif name in inits:
                out.append(AreaDir(name, Owner.INIT, Reuse.SETTLED))  # written once, at create
            elif name == "l":
                # overlay2's short links change only when layers come or go: the dir's mtime,
                # trusted once settled (dockerd adds two links a few ms apart for a container).
                stamp = settled_stamp(os.path.join(layout.root, layout.driver, name))
                owner = Owner.LINKS if attribution else None
                out.append(AreaDir(name, owner, Reuse.SETTLED, stamp) if stamp else AreaDir(name, owner))
            elif not attribution:
                out.append(AreaDir(name, None))
            elif name in layout.buildkit_names:
                out.append(AreaDir(name, Owner.BUILD_CACHE))
            else:
                out.append(AreaDir(name, Owner.ORPHAN))
        return tuple(out)

    def _root_items(self, layout: Layout) -> tuple[tuple[MetaDir, ...], tuple[str, ...], frozenset[str]]:
        """The root's entries that are not walked whole: the driver's dir, containers/ and
        volumes/ (given item by item) and the image store (by its parts)."""
        root, driver = layout.root, layout.driver
        itemised = {driver, "containers", "volumes"} & set(layout.top_dirs)
        entries = [name for name in layout.top_dirs if name in itemised]  # each dir's own inode
        entries += [f"{driver}/{name}" for name in layout.driver_files]  # e.g. backingFsBlockDev
        vdir = os.path.join(root, "volumes")
        volumes = set(layout.volumes)
        # metadata.db: from read_layout's listing of volumes/, reused while its stamp holds
        entries += [f"volumes/{name}" for name, _ in listing(vdir, self.reads) if name not in volumes]
        meta: tuple[MetaDir, ...] = ()
        chains = f"{driver}/layerdb/sha256"  # relative to image/
        if "image" in layout.top_dirs and os.path.isdir(os.path.join(root, "image", chains)):
            itemised.add("image")
            tmp = f"{driver}/layerdb/tmp"
            image = [MetaDir("image", Reuse.TREE, exclude=frozenset({chains, tmp}))]
            if os.path.isdir(os.path.join(root, "image", tmp)):
                image.append(MetaDir(f"image/{tmp}"))  # a layer being pulled grows in place
            rel = f"image/{chains}"
            image.append(
                MetaDir(rel, stamp=layout.chains_stamp, group=True, members=self._chain_dirs(layout, rel))
            )
            meta = tuple(image)
        return meta, tuple(entries), frozenset(itemised)

    def _chain_dirs(self, layout: Layout, rel: str) -> tuple[MetaDir, ...]:
        """Each layerdb chain dir: immutable while its stamp holds (a layer removed and pulled
        again comes back under the same chain ID in a new dir). An entry with no stamp (one
        being removed) is walked every time."""

        def listed() -> tuple[MetaDir, ...]:
            stamps, dirs = layout.chain_stamps, []
            for name in names_in(os.path.join(layout.root, rel)):
                st = stamps.get(name)
                dirs.append(MetaDir(f"{rel}/{name}", Reuse.SETTLED, st) if st else MetaDir(f"{rel}/{name}"))
            return tuple(dirs)

        # No chain dir came or went while layerdb/sha256's settled stamp holds, and none was
        # read anew while its stamps are the same object: as last time.
        return self._chains.get(listed, layout.chain_stamps, key=layout.chains_stamp)
