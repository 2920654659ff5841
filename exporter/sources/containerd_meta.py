"""containerd's own metadata, read-only: `meta.db` (images, content, snapshot records, leases
per namespace) and the overlayfs snapshotter's `metadata.db` (which dir holds which snapshot).

Both are bbolt files that containerd holds an exclusive lock on for its whole life; they are
read with exporter.sources.bolt (pread, never a lock). Schemas (../shared/notes/
containerd-store.md, from containerd core/metadata/buckets.go and core/snapshots/storage/
bolt.go, unchanged from 1.6 to 2.x):

    meta.db      v1/version                       varint: 3 (1.6, 1.7) or 4 (2.x)
                 v1/<ns>/images/<name>/target/{digest,mediatype,size}
                 v1/<ns>/content/blob/<digest>/{size,labels/}   (digests; labels apart)
                 v1/<ns>/content/ingests/<ref>/
                 v1/<ns>/snapshots/<snapshotter>/<key>/{name,parent,labels/} (name read)
                 v1/<ns>/leases/<id>/{labels/,snapshots/<snapshotter>/<key>,content/<digest>}
                 v1/<ns>/containers/<id>/
    metadata.db  v1/snapshots/<backend name>/{id uvarint, kind, parent, size, inodes varint}

A snapshot record's backend name is "<ns>/<seq>/<key>"; its `id` is the dir's number.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from exporter.gcpause import cyclic_gc_paused
from exporter.records import maker
from exporter.sources import bolt

KNOWN_VERSIONS = (3, 4)  # meta.db's dbVersion: containerd 1.6/1.7, and 2.x
VIEW, ACTIVE, COMMITTED = 1, 2, 3  # core/snapshots/snapshotter.go Kind


class UnknownSchema(bolt.BoltError):
    """A file in a layout this reader does not know (another schema version): not guessed at."""


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


# What read_snapshots takes of metadata.db; its `parents/` index and the timestamps are left.
_RECORD = bolt.Row(id=bolt.UVARINT, kind=bolt.BYTES, parent=bolt.TEXT, size=bolt.VARINT, inodes=bolt.VARINT)
SNAPSHOTS_SHAPE = {
    "v1": {"snapshots": {bolt.ANY: _RECORD}},
    bolt.ANY: {},  # only whether there are other top-level buckets
}


def read_snapshots(path: str | os.PathLike[str]) -> Snapshots:
    """The overlayfs snapshotter's records. Raises bolt.BoltError (UnknownSchema included)."""
    with cyclic_gc_paused():
        return _snapshots(path, bolt.select(path, SNAPSHOTS_SHAPE))


def _snapshots(path: str | os.PathLike[str], db: bolt.Selection) -> Snapshots:
    v1 = db.tree.get("v1")
    snaps = v1.get("snapshots") if v1 is not None else None
    if snaps is None:
        if v1 is None and not db.tree:
            return Snapshots(db.txid, {}, {})  # a fresh snapshotter: nothing recorded yet
        raise UnknownSchema(f"{path}: no v1/snapshots bucket")
    by_id: dict[int, SnapshotRecord] = {}
    for name, (sid, kind, parent, size, inodes) in snaps.items():
        if sid is None or not kind:
            continue  # half a record: skipped, its dir then shows as unknown
        by_id[sid] = _snapshot_record(sid, name, kind[0], parent or "", size, inodes)
    by_backend = {r.backend: r for r in by_id.values()}  # a later record of the same id won
    return Snapshots(db.txid, MappingProxyType(by_id), MappingProxyType(by_backend))


@dataclass(frozen=True, slots=True)
class NamespacedSnapshot:
    """A namespace's record of a snapshot: that it holds it, and the snapshotter's name for it
    (its parent and labels are not read: the snapshotter's own record has the parent)."""

    key: str
    backend: str  # the snapshotter's name for it


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
    blobs: frozenset[str]  # the digests of the blobs it records (their labels: read_blob_labels)
    leases: Mapping[str, Lease]
    ingests: frozenset[str]  # refs of downloads in progress
    containers: frozenset[str]


@dataclass(frozen=True)
class Metadata:
    txid: int
    version: int
    namespaces: Mapping[str, Namespace]


_LABELS = {bolt.ANY: bolt.TEXT}


def metadata_shape(snapshotter: str) -> dict[object, bolt.Shape]:
    """What read_metadata takes of meta.db: not the containers' specs, the images' other
    fields, the snapshot records' parents, labels and children, the blobs' records (each is a
    page: 11,000 blobs were 60 % of this read; read_blob_labels reads the few a caller needs),
    or any timestamp."""
    record = bolt.Row(name=bolt.TEXT)
    lease = bolt.Row(labels=_LABELS, snapshots={snapshotter: bolt.KEYS}, content=bolt.KEYS)
    namespace: dict[object, bolt.Shape] = {
        "images": {bolt.ANY: bolt.Row(target=bolt.Row(digest=bolt.TEXT))},
        "snapshots": {snapshotter: {bolt.ANY: record}},
        "content": {"blob": bolt.KEYS, "ingests": {bolt.ANY: {}}},
        "leases": {bolt.ANY: lease},
        "containers": {bolt.ANY: {}},  # their names: a container's own buckets are not read
    }
    return {"v1": {"version": bolt.VARINT, bolt.ANY: namespace}, bolt.ANY: {}}


def read_metadata(path: str | os.PathLike[str], snapshotter: str = "overlayfs") -> Metadata:
    """Every namespace of meta.db. Raises bolt.BoltError (UnknownSchema for a version other
    than KNOWN_VERSIONS)."""
    with cyclic_gc_paused():
        return _metadata(path, bolt.select(path, metadata_shape(snapshotter)), snapshotter)


def _metadata(path: str | os.PathLike[str], db: bolt.Selection, snapshotter: str) -> Metadata:
    v1 = db.tree.get("v1")
    if v1 is None:
        if not db.tree:
            return Metadata(db.txid, 0, {})  # created, nothing written yet
        raise UnknownSchema(f"{path}: no v1 bucket")
    version = v1.pop("version", None)
    if version not in KNOWN_VERSIONS:
        raise UnknownSchema(f"{path}: schema version {version}, not one of {KNOWN_VERSIONS}")
    namespaces = {name: _namespace(name, ns, snapshotter) for name, ns in v1.items()}
    return Metadata(db.txid, version, MappingProxyType(namespaces))


@dataclass(frozen=True)
class BlobLabels:
    txid: int  # may be later than read_metadata's (ContainerdReader._blob_labels says why that holds)
    labels: Mapping[str, Mapping[str, Mapping[str, str]]]  # namespace -> digest -> its labels


def read_blob_labels(path: str | os.PathLike[str], wanted: Mapping[str, Iterable[str]]) -> BlobLabels:
    """The labels of the blobs `wanted` names (namespace -> digests), no others: a read apart
    from read_metadata's, so its txid may be a later one. A digest not recorded is left out.
    Raises bolt.BoltError."""
    blob = bolt.Row(labels=_LABELS)
    shape = {"v1": {ns: {"content": {"blob": dict.fromkeys(ds, blob)}} for ns, ds in wanted.items()}}
    with cyclic_gc_paused():
        db = bolt.select(path, shape)
    labels = {
        ns: {d: _labels(raw) for d, (raw,) in tree.get("content", {}).get("blob", {}).items()}
        for ns, tree in db.tree.get("v1", {}).items()
    }
    return BlobLabels(db.txid, MappingProxyType(labels))


def _labels(raw: dict[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(raw) if raw else _NO_LABELS


def _namespace(name: str, ns: dict[str, Any], snapshotter: str) -> Namespace:
    images = {}
    for image, (target,) in ns.get("images", {}).items():
        digest = target[0] if target is not None else None
        if digest:
            images[image] = digest
    records = ns.get("snapshots", {}).get(snapshotter, {})
    snapshots = {key: _namespaced_snapshot(key, backend or "") for key, (backend,) in records.items()}
    content = ns.get("content", {})
    leases = {
        lid: _lease(lid, _labels(labels), (held or {}).get(snapshotter, _NONE), resources or _NONE)
        for lid, (labels, held, resources) in ns.get("leases", {}).items()
    }
    return Namespace(
        name=name,
        images=MappingProxyType(images),
        snapshots=MappingProxyType(snapshots),
        blobs=content.get("blob", _NONE),
        leases=MappingProxyType(leases),
        ingests=frozenset(content.get("ingests", ())),
        containers=frozenset(ns.get("containers", ())),
    )


_NO_LABELS: Mapping[str, str] = MappingProxyType({})
_NONE: frozenset[str] = frozenset()
# The records, by the ten thousand: made without their dataclass __init__'s cost (records.maker).
_snapshot_record = maker(SnapshotRecord)
_namespaced_snapshot = maker(NamespacedSnapshot)
_lease = maker(Lease)
