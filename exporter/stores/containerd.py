"""Docker's containerd image store (Docker 29's default): containerd's overlayfs snapshotter
holds the layers, its content store the compressed blobs; Docker's own root keeps
containers/, volumes/ and the rest, read as the graphdriver reader reads them.

Facts, with sources: ../shared/notes/containerd-store.md. What it tells the scan:
- `snapshots/<N>` is the dir of the snapshot whose metadata.db record has id N. Its record's
  backend name is "<namespace>/<seq>/<key>"; meta.db's per-namespace records name it.
- In Docker's namespace (`moby`), an image layer's key is its chain ID (committed: the
  snapshotter recorded its fs/ usage at commit, so it is never walked); a container's writable
  layer is keyed by the container ID (active: walked every scan); its init layer is
  `<id>-init`; `extract-*`/`tmp-*` are layers being unpacked; BuildKit's records sit under
  leases labelled `containerd.io/gc.flat`.
- A record no namespace names is garbage the next GC takes; a dir no record names (and an
  old `new-*`) is an orphan; another namespace's (k8s.io on a shared containerd) is theirs.
- Content blobs are immutable and content-addressed: each is stat'ed once; `ingest/` holds
  downloads in progress.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, replace
from itertools import chain as _chain
from operator import attrgetter
from typing import ClassVar

import structlog

from exporter.memo import Derived
from exporter.model import EngineInfo, make_usage
from exporter.records import maker
from exporter.sources import bolt, containerd_meta
from exporter.sources.containerd_meta import COMMITTED, Metadata, Snapshots
from exporter.sources.du import NOTHING_STARTED, Prefetched
from exporter.sources.fs import host_to_local, local_to_host
from exporter.sources.stamps import DirNames
from exporter.sources.witness import Witness, unwitnessed, witnessing
from exporter.stores import register
from exporter.stores.content import CONTENT, ContentStore, unreached, within
from exporter.stores.inventory import (
    AreaDir,
    Key,
    LayerArea,
    LayerDir,
    MetaDir,
    Owner,
    Part,
    Prefetch,
    StoreLayout,
    StoreOptions,
)
from exporter.stores.overlay2 import Overlay2Reader

log = structlog.get_logger("exporter.stores.containerd")

SNAPSHOTTER = "io.containerd.snapshotter.v1.overlayfs"
META_DB = "io.containerd.metadata.v1.bolt/meta.db"
SYSTEM_ROOT = "/var/lib/containerd"
BOLT_FILES = ("meta.db", "metadata.db")
OWNERS = (
    Owner.IMAGE,
    Owner.CONTAINER,
    Owner.INIT,
    Owner.BUILD_CACHE,
    Owner.UNPACKING,
    Owner.OTHER_NAMESPACE,
    Owner.UNREFERENCED,
    Owner.ORPHAN,
)
NEW_DIR_GRACE = 3600.0  # a `new-*` dir younger than this is a snapshot being made, not a leak
REST_EXCLUDE = frozenset({"fs"})  # a snapshot dir beside its content
GC_FLAT = "containerd.io/gc.flat"  # BuildKit's leases (moby/buildkit cache/manager.go)


@dataclass(frozen=True)
class _Steady:
    """A read that went by settled stamps alone, and what else it depended on."""

    root: str
    info: EngineInfo
    croot: str  # containerd's root it read
    parsed: _Parsed  # both bolt files as read, by their txids
    clock: int | bool  # the 5-minute tick its classes went by (a young `new-*` dir), else False
    witness: Witness
    layout: StoreLayout


def _clock() -> int:
    return int(time.time() // 300)


def _txids_hold(croot: str, parsed: _Parsed) -> bool:
    """Whether both bolt files are at the txids `parsed` was read at (a failed look says no:
    the read that follows counts it)."""
    try:
        return bolt.txid(os.path.join(croot, META_DB)) == parsed.meta.txid and (
            bolt.txid(os.path.join(croot, SNAPSHOTTER, "metadata.db")) == parsed.snaps.txid
        )
    except bolt.BoltError:
        return False


@dataclass(frozen=True)
class _Parsed:
    """What the two bolt files say, by their txids: re-read only when one moves."""

    meta: Metadata
    snaps: Snapshots


@register
class ContainerdReader:
    name: ClassVar[str] = "containerd"

    def __init__(self, options: StoreOptions | None = None) -> None:
        self.options = options or StoreOptions()
        self.docker = Overlay2Reader(self.options)  # containers/, volumes/, the rest of Docker's root
        self._parsed: _Parsed | None = None
        self._errors: dict[str, int] = {}
        self._failing: set[str] = set()
        self.content = ContentStore()
        self._classified: Derived[_Classified] = Derived()
        self._image_content: Derived[dict[str, tuple[Key, ...]]] = Derived()
        self._snapshot_dirs = DirNames()  # snapshots/: the same object while the same names
        self._new_in: tuple[tuple[str, ...], bool] | None = None
        self._last: StoreLayout | None = None  # the last read's
        self._steady: _Steady | None = None  # what a read may hand back instead (read)
        self._used: tuple[str, _Parsed, int | bool] | None = None  # the last _read's root, bolt view, clock

    @classmethod
    def applies(cls, info: EngineInfo) -> bool:
        return info.image_store == "containerd"

    def prefetch(self, root: str, info: EngineInfo) -> tuple[Prefetch, ...]:
        """Whatever the records say, each content blob is stat'ed (a walk of a file is its
        lstat) and every snapshot dir with a record's name (a number) is walked beside its
        content (`fs/`): the workers do both while the bolt files are read, the blobs first."""
        croot = self._root(root, info)
        if croot is None:
            return ()
        area = os.path.join(croot, SNAPSHOTTER, "snapshots")
        names = self._snapshot_dirs.get(area)
        return (
            self.content.prefetch(croot),
            Prefetch(area, tuple(filter(str.isdigit, names)), REST_EXCLUDE),
        )

    def read(self, root: str, info: EngineInfo, prefetched: Prefetched = NOTHING_STARTED) -> StoreLayout:
        """As _read reads it; while what the last steady read went by holds (its settled dir
        stamps, its single inodes, both bolt files' txids, containerd's root), that layout,
        the same object: a rescan of an unchanged store is a stat of each, in C."""
        steady = self._steady
        if (
            steady is not None
            and prefetched is NOTHING_STARTED
            and steady.root == root
            and steady.info == info
            and (steady.clock is False or steady.clock == _clock())
            and self._root(root, info) == steady.croot
            and _txids_hold(steady.croot, steady.parsed)
            and steady.witness.holds()
        ):
            return steady.layout
        self._steady = self._used = None
        with witnessing() as witness:
            layout = self._read(root, info, prefetched)
        # Taken as the next reads' stand-in once a read that went by stamps alone gave what
        # the read before gave (every cache as full as it gets).
        last, self._last = self._last, layout
        if not witness.void and layout == last and self._used is not None:
            self._steady = _Steady(root, info, *self._used, witness, layout)
        return layout

    def _read(self, root: str, info: EngineInfo, prefetched: Prefetched) -> StoreLayout:
        base = self.docker.read(root, info)  # unattributed: this store keeps no layers there
        croot = self._root(root, info)
        if croot is None:
            return replace(
                base,
                reader=self.name,
                attribution_reason=(
                    "containerd image store: no containerd root with an overlayfs snapshotter "
                    f"found (tried {', '.join(self._candidates(root, info))}; set --containerd.root)"
                ),
            )
        parsed = self._read_bolt(croot)
        area_path = os.path.join(croot, SNAPSHOTTER, "snapshots")
        top = within(root, croot)
        cids = {c.id for c in base.containers}
        ns = self.options.containerd_namespace or info.containerd_namespace or "moby"
        listing = self._snapshot_dirs.get(area_path)
        # A young `new-*` dir turns orphan with age alone: then the classes are redone every 5 min.
        clock = self._young_new(listing) and _clock()
        c = self._classified.get(
            lambda: self._classify(parsed, ns, croot, listing, cids),
            parsed,
            key=(listing, frozenset(cids), clock),
        )
        self._used = (croot, parsed, clock)  # what a stand-in for the next read checks (read)
        content, measured, blobs = self.content.measure(
            croot, root, parsed.meta, c.doc_kinds, c.blob_labels, prefetched
        )
        image_content = self._image_content.get(lambda: self.content.image_content(c.image_blobs), blobs, c)
        entries, meta = list(base.entries), list(base.meta)
        itemised = set(base.itemised)
        area_top = blob_top = None
        if top is not None:  # Docker's own containerd: under its root, walked but for its stores
            apart = (_rel(root, area_path), _rel(root, croot, CONTENT))  # the snapshots, the content
            entries.append(apart[0])  # the snapshots dir's own inode (the content store counts its own)
            # Each top-level dir holding one of them walked without them (one walk: containerd/
            # for Docker's own; each of them apart if containerd's root is the Docker root).
            heads: dict[str, set[str]] = {}
            for rel in apart:
                head, _, below = rel.partition("/")
                heads.setdefault(head, set()).add(below)
            for head, below in heads.items():
                itemised.add(head)
                if "" not in below:  # not a store itself
                    meta.append(MetaDir(head, exclude=frozenset(below)))
            area_top, blob_top = (rel.partition("/")[0] for rel in apart)
        area_parts = (Part.LAYER, Part.LAYER_REST, Part.AREA_DIR, Part.AREA_CONTENT, Part.AREA_REST)
        return replace(
            base,
            reader=self.name,
            attribution=True,
            attribution_reason="",
            area=LayerArea(
                _rel(root, area_path) if top is not None else area_path,
                area_path,
                "fs",
                REST_EXCLUDE,
                frozenset(),
                host=local_to_host(area_path, self.options.rootfs),
            ),
            layers=c.layers,
            layer_dirs=c.layer_dirs,
            image_layers=c.image_layers,
            area_dirs=c.area_dirs,
            writable=c.writable,
            meta=tuple(meta),
            entries=tuple(entries),
            itemised=frozenset(itemised),
            areas={
                **base.areas,
                **dict.fromkeys(area_parts, area_top),
                Part.WRITABLE: area_top,
                Part.WRITABLE_REST: area_top,
                Part.BLOB: blob_top,
            },
            owners=OWNERS,
            rw_allocated=True,  # SizeRw here is containerd's Usage: continuity's du, st_blocks
            content=content,
            measured=measured,
            measured_settled=blobs,
            image_content=image_content,
            image_dirs=c.image_dirs,
            read_errors={name: self._errors.get(name, 0) for name in BOLT_FILES},
        )

    def _young_new(self, listing: tuple[str, ...]) -> bool:
        """Whether the listing holds a `new-*` dir (asked once per listing)."""
        if self._new_in is None or self._new_in[0] is not listing:
            i = bisect_left(listing, "new-")  # the listing is sorted: where they would be
            self._new_in = (listing, i < len(listing) and listing[i].startswith("new-"))
        return self._new_in[1]

    # -- where containerd keeps its files ---------------------------------------------------

    def _candidates(self, root: str, info: EngineInfo) -> list[str]:
        rootfs = self.options.rootfs
        if self.options.containerd_root:
            return [host_to_local(self.options.containerd_root, rootfs)]
        managed = os.path.join(root, "containerd", "daemon")
        system = host_to_local(SYSTEM_ROOT, rootfs)
        # API 1.46+ names containerd's socket: Docker's own lives under its exec root.
        if info.containerd_address and "/docker/containerd/" not in info.containerd_address:
            return [system, managed]
        return [managed, system]

    def _root(self, root: str, info: EngineInfo) -> str | None:
        for cand in self._candidates(root, info):
            if os.path.isfile(os.path.join(cand, SNAPSHOTTER, "metadata.db")):
                return cand
        return None

    def _read_bolt(self, croot: str) -> _Parsed:
        """Both files, each re-read only when its txid moved. A read that fails after bolt's
        retries keeps the last good view and is counted; with none yet, the scan fails."""
        paths = {
            "meta.db": os.path.join(croot, META_DB),
            "metadata.db": os.path.join(croot, SNAPSHOTTER, "metadata.db"),
        }
        last = self._parsed
        meta, snaps = (last.meta, last.snaps) if last is not None else (None, None)
        for name, path in paths.items():
            try:
                txid = bolt.txid(path)
                if name == "meta.db" and (meta is None or meta.txid != txid):
                    meta = containerd_meta.read_metadata(path)
                elif name == "metadata.db" and (snaps is None or snaps.txid != txid):
                    snaps = containerd_meta.read_snapshots(path)
                self._failing.discard(name)
            except bolt.BoltError as exc:
                self._failed(name, path, exc)
                if (meta if name == "meta.db" else snaps) is None:
                    raise
        assert meta is not None and snaps is not None
        if last is None or last.meta is not meta or last.snaps is not snaps:
            self._parsed = _Parsed(meta, snaps)
        assert self._parsed is not None
        return self._parsed

    def _failed(self, name: str, path: str, exc: bolt.BoltError, read: str = "") -> None:
        """A read of a bolt file failed: counted every time, logged once until that read
        (`read`, the whole file's by default) succeeds."""
        self._errors[name] = self._errors.get(name, 0) + 1
        if (read or name) not in self._failing:
            log.warning("containerd metadata unreadable", file=path, error=f"{type(exc).__name__}: {exc}")
            self._failing.add(read or name)

    def _blob_labels(
        self, croot: str, meta: Metadata, doc_kinds: Mapping[str, str]
    ) -> dict[str, frozenset[str]]:
        """The label keys of the blobs no image's manifests reach, all namespaces' (what tells
        their kind), read apart: on a host a few, if any. Read at a later txid than `meta`'s,
        they still name the same blobs, and the next scan, seeing meta.db's txid moved, reads
        and classifies again. A failed read fails this scan (its last figures stand), counted."""
        wanted = unreached(meta, doc_kinds)
        if not wanted:
            return {}
        path = os.path.join(croot, META_DB)
        try:
            got = containerd_meta.read_blob_labels(path, wanted)
        except bolt.BoltError as exc:
            self._failed("meta.db", path, exc, read="blob labels")
            raise
        self._failing.discard("blob labels")
        keys: dict[str, set[str]] = {}
        for blobs in got.labels.values():
            for digest, labels in blobs.items():
                keys.setdefault(digest, set()).update(labels)
        return {d: frozenset(k) for d, k in keys.items()}

    # -- the snapshots --------------------------------------------------------------------

    def _classify(
        self, parsed: _Parsed, ns_name: str, croot: str, listing: tuple[str, ...], cids: set[str]
    ) -> _Classified:
        unwitnessed()  # made anew: it stats and reads what no stamp covers
        meta, snaps = parsed.meta, parsed.snaps
        ns = meta.namespaces.get(ns_name)
        records = (n.snapshots.values() for n in meta.namespaces.values())
        named = set(map(_backend, _chain.from_iterable(records)))  # in C: 10,000 records
        images, diffs, doc_kinds, image_blobs = self.content.images(croot, ns)
        blob_labels = self._blob_labels(croot, meta, doc_kinds)
        chains = set(_chain.from_iterable(images.values()))
        leased: dict[str, bool] = {}  # key -> held by a BuildKit (gc.flat) lease
        for lease in ns.leases.values() if ns else ():
            for key in lease.snapshots:
                leased[key] = leased.get(key, False) or GC_FLAT in lease.labels
        area = os.path.join(croot, SNAPSHOTTER, "snapshots")
        # Each image's snapshots: its top layer's parent chain, as the snapshotter records it.
        # Docker sizes an image by that chain (image_snapshot.go calculateSnapshotTotalUsage),
        # which on a classic build also holds the build containers' committed init layers.
        image_dirs: dict[str, tuple[str, ...]] = {}
        held: set[str] = set()  # backend names in some image's chain
        by_key = dict(zip(ns.snapshots, map(_backend, ns.snapshots.values()), strict=True)) if ns else {}
        for image, chain in images.items():
            names: list[str] = []
            rec = snaps.by_backend.get(by_key.get(chain[-1], "")) if chain else None
            while rec is not None and len(names) < 1000:
                names.append(str(rec.id))
                held.add(rec.backend)
                rec = snaps.by_backend.get(rec.parent) if rec.parent else None
            image_dirs[image] = tuple(names)
        layers, dirs, writable = [], [], {}
        now = time.time()
        by_id, by_backend = snaps.by_id.get, snaps.by_backend.get  # 10,000 lookups each
        for name in listing:
            rec = by_id(int(name)) if name.isdigit() else None
            if rec is None:
                young = name.startswith("new-") and _age(os.path.join(area, name), now) < NEW_DIR_GRACE
                dirs.append(AreaDir(name, Owner.UNPACKING if young else Owner.ORPHAN))
                continue
            recorded = (
                make_usage((rec.size, rec.size, rec.inodes or 0, 0, False))
                if rec.kind == COMMITTED and rec.size is not None
                else None
            )
            backend = rec.backend
            namespace, _, seq_key = backend.partition("/")  # SnapshotRecord.namespace and .key
            key = seq_key.partition("/")[2]
            if backend not in named:
                owner = Owner.UNREFERENCED
            elif namespace != ns_name:
                owner = Owner.OTHER_NAMESPACE
            elif key in chains and rec.kind == COMMITTED:
                pkey = rec.parent.partition("/")[2].partition("/")[2] if by_backend(rec.parent) else ""
                layers.append(_layer_dir(name, key, diffs.get(key, key), pkey, rec.size, recorded))
                continue
            elif rec.backend in held and rec.kind == COMMITTED:  # below an image's layer
                owner = Owner.IMAGE
            elif key in cids or (_hex64(key) and key in leased):
                owner = Owner.CONTAINER
                writable[key] = name
            elif key.endswith(("-init", "-init-key")):
                owner = Owner.INIT
            elif key.startswith(("extract-", "tmp-")):
                owner = Owner.UNPACKING
            elif key in leased:  # BuildKit's records (gc.flat leases, 25-char IDs), else a pull's
                owner = Owner.BUILD_CACHE if leased[key] or len(key) == 25 else Owner.UNPACKING
            else:
                owner = Owner.UNREFERENCED
            dirs.append(AreaDir(name, owner, split=recorded is None, recorded=recorded))
        return _Classified(
            layers=tuple(layers),
            layer_dirs=frozenset(map(_store_id, layers)),
            image_layers=images,
            area_dirs=tuple(dirs),
            writable=writable,
            doc_kinds=doc_kinds,
            blob_labels=blob_labels,
            image_blobs=image_blobs,
            image_dirs=image_dirs,
        )


_layer_dir = maker(LayerDir)  # ten thousand a first scan
_store_id = attrgetter("store_id")
_backend = attrgetter("backend")


@dataclass(frozen=True)
class _Classified:
    layers: tuple[LayerDir, ...]
    layer_dirs: frozenset[str]
    image_layers: Mapping[str, tuple[str, ...]]
    area_dirs: tuple[AreaDir, ...]
    writable: Mapping[str, str]
    doc_kinds: Mapping[str, str]
    blob_labels: Mapping[str, frozenset[str]]  # digest -> its label keys, of blobs no manifest reaches
    image_blobs: Mapping[str, frozenset[str]]  # image -> the digests of its blobs
    image_dirs: Mapping[str, tuple[str, ...]]  # image -> its snapshots' dirs, top first


def _hex64(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def _age(path: str, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _rel(root: str, *parts: str) -> str:
    path = os.path.join(*parts)
    rel = within(root, path)
    return rel if rel is not None else os.path.relpath(path, root)
