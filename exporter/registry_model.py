"""The registry sampler's frozen snapshot: per registry root, what its storage holds and what
garbage collection would free (exporter/samplers/registry.py builds it; the collector and
`report` read it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

BLOB_STATES = ("referenced", "unreferenced", "young")  # registry_store_blobs{state}
GC_MODES = ("default", "delete_untagged")  # registry_store_reclaimable_bytes{mode}
DANGLING_KINDS = ("layer", "revision", "tag")  # registry_store_dangling_links{kind}
YOUNG_SECONDS = 3600.0  # an unreferenced blob this new may be a push in flight
STALE_UPLOAD_SECONDS = 168 * 3600.0  # the registry's default uploadpurging age


@dataclass(frozen=True, slots=True)
class RepositoryUsage:
    name: str
    bytes: int  # blobs its manifests reference, each once
    unique_bytes: int  # of those, the blobs no other repository references
    tags: int
    manifests_tagged: int  # revisions some tag's current link names
    manifests_untagged: int


@dataclass(frozen=True, slots=True)
class Uploads:
    count: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class RegistryRoot:
    path: str  # as given to --registry.root
    error: str = ""  # the root itself could not be read: nothing below is known
    blobs: Mapping[str, int] = field(default_factory=dict)  # state -> blobs
    blob_bytes: Mapping[str, int] = field(default_factory=dict)  # state -> st_size sum
    reclaimable: Mapping[str, int] = field(default_factory=dict)  # mode -> bytes GC deletes
    reclaimable_blobs: Mapping[str, int] = field(default_factory=dict)  # mode -> blobs GC deletes
    index_child_only_bytes: int = 0  # what 2.x's -m deletes on top of 3.x's (distribution#3004)
    repositories: tuple[RepositoryUsage, ...] = ()  # biggest first
    fresh_uploads: Uploads = Uploads()
    stale_uploads: Uploads = Uploads()
    oldest_upload_started: float | None = None
    dangling: Mapping[str, int] = field(default_factory=dict)  # kind -> links
    errors: Mapping[str, int] = field(default_factory=dict)  # read error kind -> items
    filesystem_size: int | None = None  # statvfs f_blocks * f_frsize
    filesystem_avail: int | None = None  # statvfs f_bavail * f_frsize


@dataclass(frozen=True)
class RegistrySnapshot:
    sampler: ClassVar[str] = "registry"
    roots: tuple[RegistryRoot, ...]
    taken: float  # unix seconds
