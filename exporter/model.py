"""Frozen snapshot types shared by sources, samplers, the collector and the report.

Everything here is immutable: a sampler builds a new snapshot and swaps it in whole, so
the collector can read it from another thread without locks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

IMAGE_STATES = ("in_use", "unused", "dangling", "intermediate")
CONTAINER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")
VOLUME_STATES = ("in_use", "unused")


@dataclass(frozen=True)
class EngineInfo:
    engine: str  # "docker" or "podman"
    version: str
    api_version: str
    storage_driver: str
    image_store: str  # "graphdriver", "containerd" or "unknown"
    root_dir: str


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
    registry: str  # registry of the primary tag, "none" when untagged

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
    filesystems: tuple[Filesystem, ...]


@dataclass(frozen=True)
class BuildCacheSnapshot:
    build_cache: BuildCache


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
