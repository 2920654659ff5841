"""Frozen snapshot types shared by sources, samplers, the collector and the report.

Everything here is immutable: a sampler builds a new snapshot and swaps it in whole, so
the collector can read it from another thread without locks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property, partial
from operator import itemgetter
from typing import ClassVar, NamedTuple

IMAGE_STATES = ("in_use", "unused", "dangling", "intermediate")
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
VOLUME_STATES = ("in_use", "unused")
WALK_KINDS = ("layer", "container", "volume", "other")  # scan_walks{kind}
CONTENT_KINDS = ("layer", "config", "manifest", "partial", "unreferenced", "other")  # content_*{kind}


_new = tuple.__new__


class Usage(NamedTuple):
    """What a walk found. A tuple, not a dataclass: a scan adds thousands of these, and summing
    a list of them (`total`) then runs in C."""

    disk_bytes: int  # st_blocks*512 of every inode counted, dirs included: `du -s --block-size=1`
    apparent_bytes: int  # st_size of non-directories, hard links once (Docker's calcSize)
    files: int  # inodes counted, the root included: `du -s --inodes`
    errors: int  # entries we could not read (EACCES, EPERM, ...); vanished entries are not errors
    partial: bool = False  # the deadline passed first: the figures are a lower bound

    def __add__(self, other: object) -> Usage:  # type: ignore[override]  # a sum, not tuple concatenation
        if not isinstance(other, Usage):
            return NotImplemented
        a, b, c, d, e = self
        # tuple.__new__ directly: a NamedTuple's own __new__ is a Python function, and a scan
        # adds tens of thousands of these
        return _new(Usage, (a + other[0], b + other[1], c + other[2], d + other[3], e or other[4]))

    def __mul__(self, other: object) -> Usage:  # type: ignore[override]
        return NotImplemented  # tuple repetition would be a silent bug

    __rmul__ = __mul__


EMPTY = Usage(0, 0, 0, 0, False)
# make_usage((disk, apparent, files, errors, partial)): a Usage made in C, not by the
# NamedTuple's Python __new__ (tens of thousands a first scan).
make_usage = partial(_new, Usage)


def total(usages: Iterable[Usage]) -> Usage:
    """The sum of many Usages, field by field in C, not one Python add per item: a few by
    zip and sum; many (a scan sums tens of thousands) by a sum per field, twice as fast as a
    zip of them all."""
    us = usages if isinstance(usages, list | tuple) else list(usages)
    n = len(us)
    if n > 64:
        disk, apparent, files, errors = (sum(map(field, us)) for field in _FIELDS)
        return _new(Usage, (disk, apparent, files, errors, any(map(_PARTIAL, us))))
    if n == 1 and type(us[0]) is Usage:  # a rescan sums many parts of one: as it is
        return us[0]
    sums = tuple(map(sum, zip(*us, strict=True)))
    if not sums:
        return EMPTY
    return _new(Usage, (sums[0], sums[1], sums[2], sums[3], bool(sums[4])))


_FIELDS = tuple(itemgetter(i) for i in range(4))
_PARTIAL = itemgetter(4)


@dataclass(frozen=True)
class EngineInfo:
    engine: str  # "docker" or "podman"
    version: str
    api_version: str
    storage_driver: str
    image_store: str  # "graphdriver", "containerd" or "unknown"
    root_dir: str
    containerd_address: str = ""  # /info Containerd.Address (API 1.46+): its socket
    containerd_namespace: str = ""  # /info Containerd.Namespaces.Containers (API 1.46+)


@dataclass(frozen=True, slots=True)  # slots: a host may hold tens of thousands
class Image:
    id: str  # full "sha256:…" ID
    tags: tuple[str, ...]  # "repo:tag" references, placeholders removed, sorted
    parent_id: str
    created: float  # unix seconds
    size: int  # Docker's Size: apparent bytes of all layers of the image
    unique_size: int | None  # bytes no other image shares; None when it cannot be known
    containers: int  # containers (any state) created from this image
    state: str  # one of IMAGE_STATES
    registry: str  # imagesizes.image_registry: digest's, else a host tag's, docker.io, or "none"

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[-1][:12]


@dataclass(frozen=True, slots=True)  # slots: a host may hold tens of thousands
class Container:
    id: str
    name: str
    image_id: str
    image: str
    state: str
    volumes: tuple[str, ...]  # names of the volumes mounted


@dataclass(frozen=True, slots=True)  # slots: a host may hold tens of thousands
class Volume:
    name: str
    driver: str
    mountpoint: str
    containers: int


@dataclass(frozen=True)
class BuildCache:
    records: int
    in_use: int
    bytes: int  # what `docker system df` shows as SIZE (shared records not counted)
    reclaimable: int


@dataclass(frozen=True)
class DiskUsage:
    """`docker system df` TOTAL and RECLAIMABLE for one object type."""

    used: int
    reclaimable: int


@dataclass(frozen=True)
class EngineSnapshot:
    sampler: ClassVar[str] = "engine"  # the sampler that publishes it (Store.latest)

    info: EngineInfo
    images: tuple[Image, ...]
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...]
    image_usage: DiskUsage | None  # None when a layer size could not be known
    skipped: int = 0  # odd objects left out of this sample, logged

    # Totals over every image, computed once per snapshot (the sampler warms them) rather than
    # on every scrape: a host may hold thousands of images.
    @cached_property
    def image_states(self) -> dict[str, int]:
        return dict(Counter(img.state for img in self.images))

    @cached_property
    def registries(self) -> dict[str, tuple[int, int]]:
        """Registry -> (images, sum of their known unique bytes)."""
        acc: dict[str, list[int]] = {}
        for img in self.images:
            entry = acc.setdefault(img.registry, [0, 0])
            entry[0] += 1
            entry[1] += img.unique_size or 0
        return {reg: (n, unique) for reg, (n, unique) in acc.items()}


@dataclass(frozen=True)
class Filesystem:
    path: str  # the Docker path as the host names it
    mountpoint: str  # the mount point holding it, as the host names it
    size: int
    avail: int
    files: int
    files_free: int
    readonly: bool


@dataclass(frozen=True)
class FilesystemSnapshot:
    sampler: ClassVar[str] = "filesystem"

    filesystems: tuple[Filesystem, ...]


@dataclass(frozen=True)
class BuildCacheSnapshot:
    sampler: ClassVar[str] = "build_cache"

    build_cache: BuildCache


# -- Docker Desktop: the VM's disk image, one file on this host (stat only) --------------------


@dataclass(frozen=True)
class DesktopDiskImage:
    path: str  # as this host names it
    format: str  # raw, qcow2, vhdx, vhd or unknown (from the name: the file is never opened)
    platform: str  # macos, linux, wsl2, hyperv
    origin: str  # where it was found: flag, settings, default
    apparent_bytes: int  # st_size: a sparse Docker.raw's disk limit; a VHDX's or qcow2's grown length
    allocated_bytes: int | None  # what the host disk holds for it; None when it could not be read
    filesystem_size: int | None = None  # the host filesystem holding it (None: not readable)
    filesystem_avail: int | None = None


@dataclass(frozen=True)
class DesktopSnapshot:
    sampler: ClassVar[str] = "desktop"

    images: tuple[DesktopDiskImage, ...]  # biggest on the host disk first
    skipped: int = 0  # paths or settings that could not be read, or images gone since the last run (logged)


# -- the scan: every byte under the engine's root, attributed ----------------------------------


@dataclass(frozen=True, slots=True)
class LayerScan:
    chain_id: str
    diff_id: str
    cache_id: str  # the layer's dir in its store (overlay2's cache-id)
    size: int  # the store's recorded apparent bytes (layerdb `size`)
    diff: Usage  # the walk of its content dir: apparent bytes comparable with `size`
    total: Usage  # the layer's whole dir
    images: int  # images whose layer chain holds it


@dataclass(frozen=True, slots=True)
class ContainerScan:
    id: str
    name: str
    image: str
    state: str
    rw: Usage | None  # the writable layer's content dir; None when not attributable
    logs: Usage  # json-file and local-driver logs, rotated ones included
    size_rw: int | None = (
        None  # the engine's SizeRw for it: rw's apparent or allocated bytes, as the store counts
    )

    @property
    def prunable(self) -> bool:
        """What `docker container prune` removes and `docker system df` counts reclaimable:
        not running, paused or restarting (and known to the engine)."""
        return self.state in ("created", "exited", "dead")


@dataclass(frozen=True, slots=True)
class ImageScan:
    """An image's two copies on a store that keeps both (the containerd image store)."""

    id: str  # the engine's image ID
    content: Usage  # its blobs in the content store: compressed layers, config, manifests
    unpacked: Usage  # its unpacked layers' dirs (shared layers counted in every image)


@dataclass(frozen=True, slots=True)
class VolumeScan:
    name: str
    driver: str
    containers: int
    data: Usage  # volumes/<name>/_data (Docker's volume size is its apparent bytes)
    total: Usage  # volumes/<name>


@dataclass(frozen=True, slots=True)
class OrphanDir:
    name: str
    path: str  # as the host names it
    usage: Usage


@dataclass(frozen=True)
class ScanSnapshot:
    sampler: ClassVar[str] = "scan"

    root_dir: str  # host path
    driver: str
    attribution: bool  # layers and driver dirs attributed (a store reader that knows the layout)
    attribution_reason: str  # why not, when not
    root_dirs: dict[str, Usage]
    owners: dict[str, Usage]  # the layer area by owner (exporter.stores.inventory.Owner), with attribution
    layers: tuple[LayerScan, ...]
    containers: tuple[ContainerScan, ...]
    volumes: tuple[VolumeScan, ...]
    orphans: tuple[OrphanDir, ...]
    walks: dict[str, int]  # walks done this scan, by kind (WALK_KINDS)
    cached_layers: int
    skipped: int  # malformed layout entries (logged)
    errors: int  # unreadable entries met by the walks
    content: dict[str, Usage] = field(default_factory=dict)  # a content store's blobs, by kind
    images: tuple[ImageScan, ...] = ()  # where a store keeps images twice, biggest first
    store: str = ""  # the store reader that read the layout
    read_errors: dict[str, int] = field(default_factory=dict)  # failed metadata reads since start, by file


@dataclass(frozen=True)
class SamplerStatus:
    """Health of one sampler; kept beside its last good snapshot."""

    name: str
    success: bool = False
    duration_seconds: float = 0.0
    last_success: float | None = None  # unix seconds
    last_error: str = ""
    runs: int = 0
    failures: int = 0
    enabled: bool = True
    available: bool = True  # False: cannot work in this setup (see last_error)
