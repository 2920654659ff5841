"""What a store reader hands the scan: every dir of one storage layout, typed, with its owner.

A reader (overlay2's layerdb, later containerd's snapshotter, containers/storage) knows its
layout's metadata; the scan knows how to walk, cache and attribute. Between them pass only
these records: which dirs exist, who owns each, which are immutable (walk once) and which
must be walked every scan. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from functools import partial
from types import MappingProxyType
from typing import ClassVar, NamedTuple, Protocol

from exporter.model import EngineInfo, Usage
from exporter.sources.du import NOTHING_STARTED, ChildWalks, Prefetched
from exporter.sources.stamps import Stamp


class Owner(StrEnum):
    """Who a dir of the layer area belongs to: the `owner` label of driver_disk_bytes."""

    IMAGE = "image"  # an image layer
    CONTAINER = "container"  # a container's writable layer
    INIT = "init"  # a container's init layer (written once, at create)
    BUILD_CACHE = "build_cache"  # a BuildKit snapshot
    LINKS = "links"  # the driver's own bookkeeping (overlay2's l/ short links)
    ORPHAN = "orphan"  # a dir nothing names: leaked
    UNPACKING = "unpacking"  # a layer being unpacked or a snapshot being made (extract-*, new-*)
    OTHER_NAMESPACE = "other_namespace"  # another client's, on a shared containerd (k8s.io, default)
    UNREFERENCED = "unreferenced"  # a record nothing holds any more: the store's GC will take it


class Part(IntEnum):
    """What one walk result measures. An IntEnum: result keys are hashed tens of thousands of
    times a scan, and an int's hash is C's."""

    LAYER = 1  # an image layer's content dir (overlay2's diff/): Docker's layer size
    LAYER_REST = 2  # the rest of the layer's dir
    WRITABLE = 3  # a container's writable layer, its content dir: Docker's SizeRw
    WRITABLE_REST = 4
    AREA_DIR = 5  # any other dir of the layer area, whole (init, build cache, links, orphan)
    AREA_CONTENT = 12  # such a dir's content, where the store splits it (a snapshot's fs/)
    AREA_REST = 13
    CONTAINER = 6  # an engine's per-container dir (config, json-file logs)
    LOGS = 7  # a container's log files: inside its CONTAINER dir, so never summed again
    VOLUME_DATA = 8  # a volume's data
    VOLUME_REST = 9  # the volume's dir beside its data
    META = 10  # anything else under the root, keyed by its path relative to the root
    ENTRY = 11  # one inode alone (a dir's own blocks, a loose file), by relative path
    BLOB = 14  # one content-store blob, by relative path (measured by the reader: immutable)

    @property
    def kind(self) -> str:
        """The `kind` of scan_walks (model.WALK_KINDS)."""
        return _KINDS.get(self, "other")


_KINDS = {
    Part.LAYER: "layer",
    Part.LAYER_REST: "layer",
    Part.WRITABLE: "container",
    Part.WRITABLE_REST: "container",
    Part.CONTAINER: "container",
    Part.VOLUME_DATA: "volume",
    Part.VOLUME_REST: "volume",
}


class Key(NamedTuple):
    """A walk result's name: what it measures and whose it is (a store id, a relative path)."""

    part: Part
    id: str


# make_key((part, id)): a Key made in C, not by the NamedTuple's Python __new__ (tens of
# thousands a first scan).
make_key = partial(tuple.__new__, Key)


class Reuse(IntEnum):
    """When a walk's result may stand for the dir next scan (exporter.scan.cache)."""

    NEVER = 0  # live data: walked every scan
    SETTLED = 1  # immutable once complete: kept while the dir's stamp is the one given (or for good)
    TREE = 2  # written by atomic renames only: walked here, a dir re-read only when its stamp moved


@dataclass(frozen=True, slots=True)  # slots: a host holds tens of thousands
class LayerDir:
    """An image layer the store records, whether or not its dir is there."""

    store_id: str  # its dir's name in the layer area (overlay2's cache-id)
    chain_id: str  # "sha256:…"
    diff_id: str
    parent: str  # the chain ID below it, "" for a base layer
    size: int | None  # bytes the store recorded (overlay2: apparent), None where it keeps none
    # The content dir's usage as the store recorded it at commit (containerd's snapshotter):
    # then it is never walked, only the rest of the dir, once.
    recorded: Usage | None = None


@dataclass(frozen=True, slots=True)
class AreaDir:
    """A dir of the layer area that is no image layer."""

    name: str
    owner: Owner | None  # None: the layout is not attributed (all dirs are just walked)
    reuse: Reuse = Reuse.NEVER
    stamp: Stamp | None = None  # with SETTLED: the result holds while the dir has this stamp
    split: bool = False  # its content dir walked apart from the rest (a writable layer's SizeRw)
    recorded: Usage | None = None  # the content's usage as the store recorded it: not walked

    @property
    def parts(self) -> tuple[Part, Part] | None:
        """(content, rest) where the dir is measured in two parts, else None (whole)."""
        if self.owner is Owner.CONTAINER:
            return Part.WRITABLE, Part.WRITABLE_REST
        if self.split or self.recorded is not None:
            return Part.AREA_CONTENT, Part.AREA_REST
        return None


@dataclass(frozen=True)
class LayerArea:
    """The dir holding the layer dirs, and how one is walked."""

    rel: str  # relative to the root ("overlay2")
    path: str  # as this process sees it
    content: str  # a layer dir's content subdir ("diff"): walked apart from the rest
    rest_exclude: frozenset[str]  # walking the rest of a layer dir: its content and live mount
    whole_exclude: frozenset[str]  # walking any other dir whole: its live mount
    host: str = ""  # the area as the host names it (orphans' paths in `report`)


@dataclass(frozen=True)
class StoreOptions:
    """What an operator may say about where a store is (flags), for every reader."""

    rootfs: str = "/"  # where the host's / is visible here (--path.rootfs)
    containerd_root: str = ""  # --containerd.root, as the host names it: found from the engine if ""
    containerd_namespace: str = ""  # Docker's namespace in containerd: from the engine, else "moby"


@dataclass(frozen=True, slots=True)
class ContainerDir:
    id: str
    path: str  # as this process sees it
    logs: tuple[str, ...]  # log files, rotated ones included
    exclude: frozenset[str] = frozenset()  # live mounts (shm, secrets): never entered


@dataclass(frozen=True, slots=True)
class VolumeDir:
    name: str
    path: str  # the volume's dir, as this process sees it
    data: str  # its data (a mount, maybe: walked in a worker that can be killed)
    exclude: frozenset[str] = frozenset()  # walking the dir beside its data


@dataclass(frozen=True, slots=True)
class MetaDir:
    """A part of the store's own metadata, by its path relative to the root.

    A `group` is a dir whose entries are its `members` (layerdb's chain dirs): it is
    all one figure while its own settled `stamp` holds (no member came, went or changed),
    else its own inode plus each member as the member says."""

    rel: str
    reuse: Reuse = Reuse.NEVER
    stamp: Stamp | None = None
    exclude: frozenset[str] = frozenset()
    group: bool = False
    members: tuple[MetaDir, ...] = ()


NO_RESULTS: Mapping[Key, Usage] = MappingProxyType({})  # one object: "unchanged" by identity


@dataclass(frozen=True)
class StoreLayout:
    """Everything under one engine root, as one reader read it. A reader hands back the same
    objects while nothing changed, so the scan may tell "unchanged" by identity."""

    reader: str  # which reader (its `name`)
    root: str  # as this process sees it
    driver: str  # the engine's storage driver
    attribution: bool  # the layer area's dirs are attributed to owners
    attribution_reason: str  # why not, when not
    area: LayerArea | None
    layers: tuple[LayerDir, ...]
    layer_dirs: frozenset[str]  # store ids of the layers whose dir is in the area
    image_layers: Mapping[str, tuple[str, ...]]  # image ID -> its layers' chain IDs, bottom-up
    area_dirs: tuple[AreaDir, ...]  # every other dir of the area
    writable: Mapping[str, str]  # container ID -> its writable layer's dir in the area
    containers: tuple[ContainerDir, ...]
    volumes: tuple[VolumeDir, ...]
    meta: tuple[MetaDir, ...]  # the store's metadata, walked as each says
    entries: tuple[str, ...]  # single inodes, relative: itemised dirs' own, loose files
    itemised: frozenset[str]  # top-level entries given item by item above (not walked whole)
    top_dirs: tuple[str, ...]  # entries of the root
    areas: Mapping[Part, str | None] = field(default_factory=dict)  # top-level dir of each part's
    # dirs; None: outside the root (a system containerd's), counted in no root dir
    owners: tuple[Owner, ...] = ()  # the owners this layout attributes (driver_disk_bytes{owner})
    rw_allocated: bool = False  # the engine's SizeRw counts allocated bytes here (else apparent)
    content: Mapping[Key, str] = field(default_factory=dict)  # content-store results, by kind
    measured: Mapping[Key, Usage] = field(default_factory=dict)  # what the reader stat'ed itself
    # What it stat'ed once and hands back as the same object while it holds (immutable blobs):
    # the scan sums it once, not every rescan (exporter.scan.results).
    measured_settled: Mapping[Key, Usage] = field(default_factory=lambda: NO_RESULTS)
    image_content: Mapping[str, tuple[Key, ...]] = field(default_factory=dict)  # image -> its blobs' keys
    image_dirs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # image -> its unpacked dirs
    skipped: int = 0  # malformed metadata entries left out
    problems: tuple[str, ...] = ()  # the first few, for the log
    read_errors: Mapping[str, int] = field(default_factory=dict)  # metadata reads that failed, by file

    def top_of(self, key: Key) -> str | None:
        """The top-level entry of the root a result lies under; None for a view (LOGS)."""
        if key.part is Part.LOGS:
            return None
        if key.part in self.areas:
            return self.areas[key.part]
        return key.id.split("/", 1)[0]


class StoreReader(Protocol):
    """One storage layout's reader. Registered with exporter.stores.register; the first
    registered reader that applies to an engine's info reads its root."""

    name: ClassVar[str]

    def __init__(self, options: StoreOptions | None = None) -> None: ...

    @classmethod
    def applies(cls, info: EngineInfo) -> bool: ...

    def read(self, root: str, info: EngineInfo, prefetched: Prefetched = NOTHING_STARTED) -> StoreLayout:
        """`root`: the engine's root as this process sees it. Never raises for a malformed
        entry: it is left out and counted in `skipped`. `prefetched`: the walks `prefetch`
        asked for, taken instead of measuring again."""
        ...

    def prefetch(self, root: str, info: EngineInfo) -> tuple[Prefetch, ...]:
        """What a first scan measures whatever the metadata says, known from a listing alone
        (containerd's content blobs, its snapshot dirs beside their content): walked by the
        workers while the reader reads its metadata, one job per Prefetch (a walk of a file is
        its lstat). () when the metadata is what tells."""
        ...


# Walks a plan will ask for, told by what they walk (each of `names` under `path`, with
# `exclude`), not by their keys: one job for a whole area's dirs.
Prefetch = ChildWalks


# overlay2's owners, in exposition order (a layout lists its own in StoreLayout.owners)
OWNERS = (Owner.IMAGE, Owner.CONTAINER, Owner.INIT, Owner.BUILD_CACHE, Owner.LINKS, Owner.ORPHAN)
