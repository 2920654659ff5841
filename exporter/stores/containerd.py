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

import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import structlog

from exporter.memo import Derived
from exporter.model import EngineInfo, Usage
from exporter.sources import bolt, containerd_meta
from exporter.sources.containerd_meta import COMMITTED, Metadata, Snapshots
from exporter.sources.du import one_inode, walk
from exporter.sources.fs import host_to_local
from exporter.sources.layout import chain_ids, names_in
from exporter.sources.rawfs import open_regular
from exporter.sources.stamps import settled_stamp
from exporter.stores import register
from exporter.stores.inventory import (
    AreaDir,
    Key,
    LayerArea,
    LayerDir,
    MetaDir,
    Owner,
    Part,
    StoreLayout,
    StoreOptions,
)
from exporter.stores.overlay2 import Overlay2Reader

log = structlog.get_logger("exporter.stores.containerd")

SNAPSHOTTER = "io.containerd.snapshotter.v1.overlayfs"
CONTENT = "io.containerd.content.v1.content"
META_DB = "io.containerd.metadata.v1.bolt/meta.db"
SYSTEM_ROOT = "/var/lib/containerd"
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
MAX_JSON = 4 << 20  # a manifest or config blob; anything bigger is not one
GC_FLAT = "containerd.io/gc.flat"  # BuildKit's leases (moby/buildkit cache/manager.go)


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
        self._docs: dict[str, Any] = {}  # parsed manifest/config blobs by digest (immutable)
        self._blobs: dict[str, Usage] = {}  # blob file name -> its stat (immutable content)
        self._blob_list: Derived[tuple[str, ...]] = Derived()
        self._classified: Derived[_Classified] = Derived()
        self._blob_part: Derived[tuple[dict[Key, str], dict[Key, Usage]]] = Derived()

    @classmethod
    def applies(cls, info: EngineInfo) -> bool:
        return info.image_store == "containerd"

    def read(self, root: str, info: EngineInfo) -> StoreLayout:
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
        top = _top(root, croot)
        cids = {c.id for c in base.containers}
        ns = self.options.containerd_namespace or info.containerd_namespace or "moby"
        listing = tuple(names_in(area_path))
        c = self._classified.get(
            lambda: self._classify(parsed, ns, croot, listing, cids),
            parsed,
            key=(listing, frozenset(cids)),
        )
        content, measured = self._content(croot, root, parsed.meta, c.doc_kinds)
        entries, meta = list(base.entries), list(base.meta)
        itemised = set(base.itemised)
        if top is not None:  # Docker's own containerd: under its root, given item by item
            itemised.add(top.split("/", 1)[0])
            e, m = _cover(root, top.split("/", 1)[0], {_rel(root, area_path), _rel(root, croot, CONTENT)})
            entries += [*e, _rel(root, area_path)]
            meta += m
        area_top = top.split("/", 1)[0] if top is not None else None
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
                frozenset({"fs"}),
                frozenset(),
                host=_host(area_path, self.options.rootfs),
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
                Part.BLOB: area_top,
            },
            owners=OWNERS,
            rw_allocated=True,  # SizeRw here is containerd's Usage: continuity's du, st_blocks
            content=content,
            measured=measured,
            read_errors=dict(self._errors),
        )

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
                self._errors[name] = self._errors.get(name, 0) + 1
                if name not in self._failing:
                    log.warning(
                        "containerd metadata unreadable", file=path, error=f"{type(exc).__name__}: {exc}"
                    )
                    self._failing.add(name)
                if (meta if name == "meta.db" else snaps) is None:
                    raise
        assert meta is not None and snaps is not None
        if last is None or last.meta is not meta or last.snaps is not snaps:
            self._parsed = _Parsed(meta, snaps)
        assert self._parsed is not None
        return self._parsed

    # -- the snapshots --------------------------------------------------------------------

    def _classify(
        self, parsed: _Parsed, ns_name: str, croot: str, listing: tuple[str, ...], cids: set[str]
    ) -> _Classified:
        meta, snaps = parsed.meta, parsed.snaps
        ns = meta.namespaces.get(ns_name)
        named = {s.backend for n in meta.namespaces.values() for s in n.snapshots.values()}
        images, diffs, doc_kinds = self._images(croot, ns)
        chains = {c for chain in images.values() for c in chain}
        leased: dict[str, bool] = {}  # key -> held by a BuildKit (gc.flat) lease
        for lease in ns.leases.values() if ns else ():
            for key in lease.snapshots:
                leased[key] = leased.get(key, False) or GC_FLAT in lease.labels
        area = os.path.join(croot, SNAPSHOTTER, "snapshots")
        layers, dirs, writable = [], [], {}
        now = time.time()
        for name in listing:
            rec = snaps.by_id.get(int(name)) if name.isdigit() else None
            if rec is None:
                young = name.startswith("new-") and _age(os.path.join(area, name), now) < NEW_DIR_GRACE
                dirs.append(AreaDir(name, Owner.UNPACKING if young else Owner.ORPHAN))
                continue
            recorded = (
                Usage(rec.size, rec.size, rec.inodes or 0, 0)
                if rec.kind == COMMITTED and rec.size is not None
                else None
            )
            key = rec.key
            if rec.backend not in named:
                owner = Owner.UNREFERENCED
            elif rec.namespace != ns_name:
                owner = Owner.OTHER_NAMESPACE
            elif key in chains and rec.kind == COMMITTED:
                parent = snaps.by_backend.get(rec.parent)
                layers.append(
                    LayerDir(name, key, diffs.get(key, key), parent.key if parent else "", rec.size, recorded)
                )
                continue
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
            layer_dirs=frozenset(x.store_id for x in layers),
            image_layers=images,
            area_dirs=tuple(dirs),
            writable=writable,
            doc_kinds=doc_kinds,
        )

    def _images(
        self, croot: str, ns: containerd_meta.Namespace | None
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, str], dict[str, str]]:
        """Image (its target digest, Docker's image ID here) -> the chain IDs of its unpacked
        platforms; chain ID -> diff ID; and the kind of each blob the images reach. From the
        manifests and configs themselves (OCI image spec): an index lists manifests, a
        manifest its config and layers, a config its rootfs.diff_ids."""
        images: dict[str, tuple[str, ...]] = {}
        diffs: dict[str, str] = {}
        kinds: dict[str, str] = {}
        keys = set(ns.snapshots) if ns else set()
        for target in sorted(set(ns.images.values()) if ns else ()):
            chain: list[str] = []
            for manifest in self._manifests(croot, target, kinds):
                config = self._doc(croot, _digest(manifest.get("config")))
                kinds[_digest(manifest.get("config"))] = "config"
                for layer in manifest.get("layers") or ():
                    kinds[_digest(layer)] = "layer"
                diff_ids = _diff_ids(config)
                ids = chain_ids(diff_ids) if diff_ids else ()
                if ids and ids[-1] in keys:  # this platform is unpacked
                    diffs.update(zip(ids, diff_ids, strict=True))
                    chain += [c for c in ids if c not in chain]
            images[target] = tuple(chain)
        return images, diffs, kinds

    def _manifests(
        self, croot: str, digest: str, kinds: dict[str, str], depth: int = 0
    ) -> Iterable[dict[str, Any]]:
        doc = self._doc(croot, digest)
        if not isinstance(doc, dict) or depth > 4:
            return
        kinds[digest] = "manifest"
        if isinstance(doc.get("manifests"), list):  # an index or a manifest list
            for m in doc["manifests"]:
                yield from self._manifests(croot, _digest(m), kinds, depth + 1)
        elif "config" in doc:
            yield doc

    def _doc(self, croot: str, digest: str) -> Any:
        """A JSON blob of the content store, parsed once (blobs never change)."""
        if not digest.startswith("sha256:") or len(digest) != 71:
            return None
        if digest in self._docs:
            return self._docs[digest]
        path = os.path.join(croot, CONTENT, "blobs", "sha256", digest[7:])
        try:
            with open_regular(path) as f:
                raw = f.read(MAX_JSON + 1)
            doc = json.loads(raw) if len(raw) <= MAX_JSON else None
        except (OSError, ValueError, RecursionError):
            return None  # not there (another platform's), or not JSON: not a manifest of ours
        self._docs[digest] = doc
        return doc

    # -- the content store ----------------------------------------------------------------

    def _blob_records(
        self, sha: str, rel: str, names: tuple[str, ...], meta: Metadata, doc_kinds: Mapping[str, str]
    ) -> tuple[dict[Key, str], dict[Key, Usage]]:
        """Each blob's stat (kept by name: a blob's bytes never change) and kind."""
        labels = _labels_by_digest(meta)
        kinds: dict[Key, str] = {}
        measured: dict[Key, Usage] = {}
        live = {}
        for name in names:
            usage = self._blobs.get(name) or one_inode(os.path.join(sha, name))
            live[name] = usage
            key = Key(Part.BLOB, f"{rel}/blobs/sha256/{name}")
            measured[key] = usage
            kinds[key] = _blob_kind(f"sha256:{name}", labels, doc_kinds)
        self._blobs = live
        return kinds, measured

    def _content(
        self, croot: str, root: str, meta: Metadata, doc_kinds: Mapping[str, str]
    ) -> tuple[dict[Key, str], dict[Key, Usage]]:
        """Each blob stat'ed once (content-addressed: immutable), by kind; downloads in
        progress walked every scan; the store's own dirs. Keys relative to the Docker root when
        the store lies in it, else absolute."""
        base = os.path.join(croot, CONTENT)
        rel = _rel(root, base) if _top(root, base) else base
        sha = os.path.join(base, "blobs", "sha256")
        names = self._blob_list.get(lambda: tuple(names_in(sha)), key=settled_stamp(sha))
        kinds, measured = self._blob_part.get(
            lambda: self._blob_records(sha, rel, names, meta, doc_kinds), names, meta, doc_kinds
        )
        kinds, measured = dict(kinds), dict(measured)
        for d in (rel, f"{rel}/blobs", f"{rel}/blobs/sha256", f"{rel}/ingest"):
            key = Key(Part.BLOB, d)
            measured[key] = one_inode(os.path.join(root, d) if not os.path.isabs(d) else d)
            kinds[key] = "other"
        for name in names_in(os.path.join(base, "ingest")):
            key = Key(Part.BLOB, f"{rel}/ingest/{name}")
            measured[key] = _walk_small(os.path.join(base, "ingest", name))
            kinds[key] = "partial"
        for name in names_in(base):
            if name not in ("blobs", "ingest"):
                key = Key(Part.BLOB, f"{rel}/{name}")
                measured[key] = _walk_small(os.path.join(base, name))
                kinds[key] = "other"
        return kinds, measured


def _labels_by_digest(meta: Metadata) -> dict[str, list[Mapping[str, str]]]:
    out: dict[str, list[Mapping[str, str]]] = {}
    for ns in meta.namespaces.values():
        for digest, blob in ns.blobs.items():
            out.setdefault(digest, []).append(blob.labels)
    return out


@dataclass(frozen=True)
class _Classified:
    layers: tuple[LayerDir, ...]
    layer_dirs: frozenset[str]
    image_layers: Mapping[str, tuple[str, ...]]
    area_dirs: tuple[AreaDir, ...]
    writable: Mapping[str, str]
    doc_kinds: Mapping[str, str]


def _blob_kind(
    digest: str, labels: Mapping[str, list[Mapping[str, str]]], doc_kinds: Mapping[str, str]
) -> str:
    """What a blob is: as the images' manifests say, else as containerd's GC labels say (the
    unpacker's `uncompressed` on layers, gc.ref.snapshot on configs, gc.ref.content on
    manifests and indexes); a blob no namespace records is unreferenced."""
    records = labels.get(digest)
    if not records:
        return "unreferenced"
    if digest in doc_kinds:
        return doc_kinds[digest]
    keys = {k for ls in records for k in ls}
    if "containerd.io/uncompressed" in keys:
        return "layer"
    if any(k.startswith("containerd.io/gc.ref.snapshot.") for k in keys):
        return "config"
    if any(k.startswith("containerd.io/gc.ref.content.") for k in keys):
        return "manifest"
    return "other"


def _walk_small(path: str) -> Usage:
    """A download in progress or a small dir of the store: walked here, every scan."""
    return walk(path)


def _digest(desc: Any) -> str:
    return desc.get("digest", "") if isinstance(desc, dict) and isinstance(desc.get("digest"), str) else ""


def _diff_ids(config: Any) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(d, str) and d.startswith("sha256:") for d in ids):
        return []
    return ids


def _hex64(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def _age(path: str, now: float) -> float:
    try:
        return now - os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _top(root: str, path: str) -> str | None:
    """`path` relative to `root` when it lies in it, else None."""
    rel = os.path.relpath(path, root)
    return None if rel == ".." or rel.startswith("../") else rel


def _rel(root: str, *parts: str) -> str:
    return os.path.relpath(os.path.join(*parts), root)


def _host(local: str, rootfs: str) -> str:
    """A local path as the host names it (the inverse of host_to_local)."""
    if rootfs in ("", "/"):
        return local
    rel = os.path.relpath(local, rootfs)
    return "/" + rel if not rel.startswith("..") else local


def _cover(root: str, top: str, keep: set[str]) -> tuple[list[str], list[MetaDir]]:
    """A top-level dir given item by item: each dir on the way to a path in `keep` as its own
    inode, everything beside them walked whole (the kept paths are the caller's)."""
    entries: list[str] = []
    metas: list[MetaDir] = []

    def visit(rel: str, depth: int) -> None:
        entries.append(rel)
        for name in names_in(os.path.join(root, rel)):
            child = f"{rel}/{name}"
            if child in keep:
                continue
            path = os.path.join(root, child)
            if depth < 8 and any(k.startswith(child + "/") for k in keep):
                visit(child, depth + 1)
            elif os.path.isdir(path) and not os.path.islink(path):
                metas.append(MetaDir(child))
            else:
                entries.append(child)

    visit(top, 0)
    return entries, metas
