"""containerd's own metadata, read-only: `meta.db` (images, content, snapshot records, leases
per namespace) and the overlayfs snapshotter's `metadata.db` (which dir holds which snapshot).

Both are bbolt files that containerd holds an exclusive lock on for its whole life; they are
read with exporter.sources.bolt (pread, never a lock). Schemas (../shared/notes/
containerd-store.md, from containerd core/metadata/buckets.go and core/snapshots/storage/
bolt.go, unchanged from 1.6 to 2.x):

    meta.db      v1/version                       varint: 3 (1.6, 1.7) or 4 (2.x)
                 v1/<ns>/images/<name>/target/{digest,mediatype,size}
                 v1/<ns>/content/blob/<digest>/{size,labels/}
                 v1/<ns>/content/ingests/<ref>/
                 v1/<ns>/snapshots/<snapshotter>/<key>/{name,parent,labels/}
                 v1/<ns>/leases/<id>/{labels/,snapshots/<snapshotter>/<key>,content/<digest>}
                 v1/<ns>/containers/<id>/
    metadata.db  v1/snapshots/<backend name>/{id uvarint, kind, parent, size, inodes varint}

A snapshot record's backend name is "<ns>/<seq>/<key>"; its `id` is the dir's number.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from exporter.sources import bolt

KNOWN_VERSIONS = (3, 4)  # meta.db's dbVersion: containerd 1.6/1.7, and 2.x
VIEW, ACTIVE, COMMITTED = 1, 2, 3  # core/snapshots/snapshotter.go Kind


class UnknownSchema(bolt.BoltError):
    """A file in a layout this reader does not know (another schema version): not guessed at."""


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "surrogateescape") if raw else ""


def _varint(raw: bytes | None) -> int | None:
    if not raw:
        return None
    try:
        return bolt.varint(raw)[0]
    except (ValueError, IndexError, bolt.BoltError):
        return None


def _labels(b: bolt.Bucket | None) -> Mapping[str, str]:
    if b is None:
        return MappingProxyType({})
    return MappingProxyType({_text(k): _text(v) for k, v in b.items()})


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """One snapshot as the snapshotter keeps it (metadata.db)."""

    id: int  # its dir: snapshots/<id>
    backend: str  # "<namespace>/<seq>/<key>"
    kind: int  # VIEW, ACTIVE or COMMITTED
    parent: str  # the parent's backend name, "" for a base layer
    size: int | None  # allocated bytes of fs/ when committed (continuity's du), else None
    inodes: int | None

    @property
    def namespace(self) -> str:
        return self.backend.split("/", 1)[0]

    @property
    def key(self) -> str:
        """The key within its namespace (may hold "/" and spaces: split on the first two "/")."""
        parts = self.backend.split("/", 2)
        return parts[2] if len(parts) == 3 else ""


@dataclass(frozen=True)
class Snapshots:
    txid: int
    by_id: Mapping[int, SnapshotRecord]
    by_backend: Mapping[str, SnapshotRecord]


def read_snapshots(path: str | os.PathLike[str]) -> Snapshots:
    """The overlayfs snapshotter's records. Raises bolt.BoltError (UnknownSchema included)."""
    db = bolt.read_db(path)
    snaps = db.bucket("v1", "snapshots")
    if snaps is None:
        if db.bucket("v1") is None and not db.root.buckets:
            return Snapshots(db.txid, {}, {})  # a fresh snapshotter: nothing recorded yet
        raise UnknownSchema(f"{path}: no v1/snapshots bucket")
    by_id: dict[int, SnapshotRecord] = {}
    for name, b in snaps.buckets.items():
        raw_id = b.get("id")
        kind = b.get("kind")
        if not raw_id or not kind:
            continue  # half a record: skipped, its dir then shows as unknown
        try:
            sid = bolt.uvarint(raw_id)[0]
        except (ValueError, IndexError, bolt.BoltError):
            continue
        rec = SnapshotRecord(
            id=sid,
            backend=_text(name),
            kind=kind[0],
            parent=_text(b.get("parent")),
            size=_varint(b.get("size")),
            inodes=_varint(b.get("inodes")),
        )
        by_id[sid] = rec
    return Snapshots(
        db.txid, MappingProxyType(by_id), MappingProxyType({r.backend: r for r in by_id.values()})
    )


@dataclass(frozen=True, slots=True)
class NamespacedSnapshot:
    key: str
    backend: str  # the snapshotter's name for it
    parent: str  # the parent's key in this namespace
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Blob:
    digest: str
    size: int | None
    labels: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    labels: Mapping[str, str]
    snapshots: frozenset[str]  # keys, of this reader's snapshotter
    content: frozenset[str]  # digests


@dataclass(frozen=True)
class Namespace:
    name: str
    images: Mapping[str, str]  # image name -> its target's digest
    snapshots: Mapping[str, NamespacedSnapshot]  # by key, of this reader's snapshotter
    blobs: Mapping[str, Blob]  # by digest
    leases: Mapping[str, Lease]
    ingests: frozenset[str]  # refs of downloads in progress
    containers: frozenset[str]


@dataclass(frozen=True)
class Metadata:
    txid: int
    version: int
    namespaces: Mapping[str, Namespace]


def read_metadata(path: str | os.PathLike[str], snapshotter: str = "overlayfs") -> Metadata:
    """Every namespace of meta.db. Raises bolt.BoltError (UnknownSchema for a version other
    than KNOWN_VERSIONS)."""
    db = bolt.read_db(path)
    v1 = db.bucket("v1")
    if v1 is None:
        if not db.root.buckets:
            return Metadata(db.txid, 0, {})  # created, nothing written yet
        raise UnknownSchema(f"{path}: no v1 bucket")
    version = _varint(v1.get("version"))
    if version not in KNOWN_VERSIONS:
        raise UnknownSchema(f"{path}: schema version {version}, not one of {KNOWN_VERSIONS}")
    namespaces = {}
    for raw, ns in v1.buckets.items():
        name = _text(raw)
        namespaces[name] = _namespace(name, ns, snapshotter)
    return Metadata(db.txid, version, MappingProxyType(namespaces))


def _namespace(name: str, ns: bolt.Bucket, snapshotter: str) -> Namespace:
    images = {}
    for raw, img in (ns.bucket("images") or _EMPTY).buckets.items():
        target = img.bucket("target")
        digest = _text(target.get("digest")) if target is not None else ""
        if digest:
            images[_text(raw)] = digest
    snapshots = {}
    for raw, s in (ns.bucket("snapshots", snapshotter) or _EMPTY).buckets.items():
        key = _text(raw)
        snapshots[key] = NamespacedSnapshot(
            key, _text(s.get("name")), _text(s.get("parent")), _labels(s.bucket("labels"))
        )
    blobs = {}
    for raw, b in (ns.bucket("content", "blob") or _EMPTY).buckets.items():
        digest = _text(raw)
        blobs[digest] = Blob(digest, _varint(b.get("size")), _labels(b.bucket("labels")))
    leases = {}
    for raw, le in (ns.bucket("leases") or _EMPTY).buckets.items():
        lid = _text(raw)
        held = le.bucket("snapshots", snapshotter)
        content = le.bucket("content")
        leases[lid] = Lease(
            lid,
            _labels(le.bucket("labels")),
            frozenset(_text(k) for k in (held.values if held else ())) | _names(held),
            frozenset(_text(k) for k in (content.values if content else ())) | _names(content),
        )
    ingests = ns.bucket("content", "ingests")
    containers = ns.bucket("containers")
    return Namespace(
        name=name,
        images=MappingProxyType(images),
        snapshots=MappingProxyType(snapshots),
        blobs=MappingProxyType(blobs),
        leases=MappingProxyType(leases),
        ingests=_names(ingests),
        containers=_names(containers),
    )


def _names(b: bolt.Bucket | None) -> frozenset[str]:
    """A bucket's sub-bucket names (a lease's resources are keys; an ingest is a bucket)."""
    return frozenset(_text(k) for k in b.buckets) if b is not None else frozenset()


_EMPTY = bolt.Bucket(0, MappingProxyType({}), MappingProxyType({}), 0)
