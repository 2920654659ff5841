"""A containerd content store, read-only: its blobs by kind, and the images' layers as their
own manifests and configs name them (OCI image spec: an index lists manifests, a manifest its
config and layers, a config its rootfs.diff_ids). Blobs are content-addressed and never
change: each is stat'ed and parsed once."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

from exporter.memo import Derived
from exporter.model import Usage
from exporter.sources import containerd_meta
from exporter.sources.containerd_meta import Metadata
from exporter.sources.du import NOTHING_STARTED, Prefetched, one_inode, walk
from exporter.sources.layout import DIGEST, chain_ids
from exporter.sources.rawfs import DIR_FLAGS, read_regular
from exporter.sources.stamps import DirNames
from exporter.sources.witness import unwitnessed, witnessed_inode
from exporter.stores.inventory import Key, Part, Prefetch, make_key

CONTENT = "io.containerd.content.v1.content"
MAX_JSON = 4 << 20  # a manifest or config blob; anything bigger is not one


class Platform(NamedTuple):
    """One manifest of an image: its config, its layers, and the config's diff IDs and the
    chain IDs they make (empty when the config is not there or names none)."""

    config: str
    layers: tuple[str, ...]
    diff_ids: tuple[str, ...]
    chain_ids: tuple[str, ...]


class ImageDocs(NamedTuple):
    """What one image's own documents say. Content-addressed, so it stands for good while
    none of `missing` (what it names that the store did not hold: another platform's, or a
    download to come) has come."""

    manifests: tuple[str, ...]  # its index and the manifests in it that are there
    platforms: tuple[Platform, ...]
    missing: frozenset[str]  # the file names (hex digests) of documents not there


def image_docs(croot: str, target: str, blobs_fd: int | None = None) -> ImageDocs:
    """An image's index or manifest, the manifests an index lists, their configs (OCI image
    spec), read and parsed. `blobs_fd`: blobs/sha256 open, to open each by its name alone."""
    manifests: list[str] = []
    platforms: list[Platform] = []
    missing: set[str] = set()

    def visit(digest: str, depth: int) -> None:
        doc = _doc(croot, digest, missing, blobs_fd)
        if not isinstance(doc, dict) or depth > 4:
            return
        manifests.append(digest)
        if isinstance(doc.get("manifests"), list):  # an index or a manifest list
            for m in doc["manifests"]:
                visit(_digest(m), depth + 1)
        elif "config" in doc:
            cdigest = _digest(doc.get("config"))
            diff_ids = _diff_ids(_doc(croot, cdigest, missing, blobs_fd))
            layers = doc.get("layers")
            platforms.append(
                Platform(
                    cdigest,
                    tuple(map(_digest, layers)) if isinstance(layers, list) else (),
                    tuple(diff_ids),
                    chain_ids(diff_ids) if diff_ids else (),
                )
            )

    visit(target, 0)
    return ImageDocs(tuple(manifests), tuple(platforms), frozenset(missing))


def _doc(croot: str, digest: str, missing: set[str], blobs_fd: int | None = None) -> Any:
    """A JSON blob of the content store, parsed; None if it is not one. One that is not there
    (or not readable now) is added to `missing`."""
    if DIGEST.match(digest) is None:  # a name in blobs/sha256, nothing like "../"
        return None
    try:
        if blobs_fd is not None:
            raw = read_regular(digest[7:], MAX_JSON, dir_fd=blobs_fd)
        else:
            raw = read_regular(os.path.join(croot, CONTENT, "blobs", "sha256", digest[7:]), MAX_JSON)
    except OSError:
        missing.add(digest[7:])  # another platform's, or not downloaded yet
        return None
    try:
        return json.loads(raw) if len(raw) <= MAX_JSON else None
    except (ValueError, RecursionError):
        return None  # not JSON: not a manifest of ours, for good


@contextmanager
def _blobs_dir(croot: str) -> Iterator[int | None]:
    """blobs/sha256 open for the documents' opens (a path lookup of one name each, not of
    nine); None where it cannot be opened, and they are opened by their paths."""
    try:
        fd = os.open(os.path.join(croot, CONTENT, "blobs", "sha256"), DIR_FLAGS)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


class ContentStore:
    """One containerd root's content store. Keeps what it parsed and stat'ed."""

    def __init__(self) -> None:
        self._images: dict[str, ImageDocs] = {}  # by target digest
        self._blobs: dict[str, Usage] = {}  # blob file name -> its stat
        self._blob_names = DirNames()  # blobs/sha256: the same object while the same blobs
        self._ingest_names = DirNames()  # ingest/: each download's dir (walked every scan)
        self._base_names = DirNames()  # the store's own top dir
        self._present: tuple[tuple[str, ...], frozenset[str]] | None = None
        self._blob_part: Derived[tuple[dict[Key, str], dict[Key, Usage], dict[str, Key]]] = Derived()
        self._kinds: Derived[dict[Key, str]] = Derived()
        self._by_digest: dict[str, Key] = {}  # the blobs' keys (measure's) by their digests

    def images(
        self, croot: str, ns: containerd_meta.Namespace | None
    ) -> tuple[dict[str, tuple[str, ...]], dict[str, str], dict[str, str], dict[str, frozenset[str]]]:
        """Image (its target digest, Docker's image ID here) -> the chain IDs of its unpacked
        platforms; chain ID -> diff ID; the kind of each blob the images reach; and each
        image's blobs (its index, manifests, configs and layers). From the manifests and
        configs themselves (image_docs), each image's read once: on a rescan after a pull,
        only the new image's."""
        images: dict[str, tuple[str, ...]] = {}
        diffs: dict[str, str] = {}
        kinds: dict[str, str] = {}
        blobs: dict[str, frozenset[str]] = {}
        keys = set(ns.snapshots) if ns else set()
        present = self._present_blobs(croot)
        known: dict[str, ImageDocs] = {}
        with _blobs_dir(croot) as blobs_fd:
            for target in sorted(set(ns.images.values()) if ns else ()):
                docs = self._images.get(target)
                if docs is None or not docs.missing.isdisjoint(present):
                    docs = image_docs(croot, target, blobs_fd)
                known[target] = docs
        for target, docs in known.items():
            chain: list[str] = []
            kinds.update(dict.fromkeys(docs.manifests, "manifest"))
            mine = {target, *docs.manifests}
            for p in docs.platforms:
                kinds[p.config] = "config"
                kinds.update(dict.fromkeys(p.layers, "layer"))
                mine.add(p.config)
                mine.update(p.layers)
                ids = p.chain_ids
                if ids and ids[-1] in keys:  # this platform is unpacked
                    diffs.update(zip(ids, p.diff_ids, strict=True))
                    chain += [c for c in ids if c not in chain]
            images[target] = tuple(chain)
            blobs[target] = frozenset(d for d in mine if d)
        self._images = known  # the images that are gone are not kept
        return images, diffs, kinds, blobs

    def image_content(self, image_blobs: Mapping[str, frozenset[str]]) -> dict[str, tuple[Key, ...]]:
        """Each image's blobs (images()'s) as the keys of the last measure(), those in the
        store."""
        get = self._by_digest.get
        return {image: tuple(filter(None, map(get, sorted(ds)))) for image, ds in image_blobs.items()}

    def _present_blobs(self, croot: str) -> frozenset[str]:
        """The blob files there, as a set (made once per listing)."""
        names = self._blob_names.get(os.path.join(croot, CONTENT, "blobs", "sha256"))
        if self._present is None or self._present[0] is not names:
            self._present = (names, frozenset(names))
        return self._present[1]

    def prefetch(self, croot: str) -> Prefetch:
        """Every blob, to be stat'ed by the workers while the metadata is read (a first scan)."""
        sha = os.path.join(croot, CONTENT, "blobs", "sha256")
        return Prefetch(sha, self._blob_names.get(sha))

    def _blob_records(
        self,
        sha: str,
        rel: str,
        names: tuple[str, ...],
        meta: Metadata,
        doc_kinds: Mapping[str, str],
        labels: Mapping[str, frozenset[str]],
        stat_ahead: Mapping[str, Usage],
    ) -> tuple[dict[Key, str], dict[Key, Usage], dict[str, Key]]:
        """Each blob's stat (kept by name: a blob's bytes never change; the workers' if they
        made it), its kind, and its key by its digest."""
        unwitnessed()  # blobs stat'ed (exporter.sources.witness)
        recorded = frozenset().union(*(ns.blobs for ns in meta.namespaces.values()))
        kinds: dict[Key, str] = {}
        measured: dict[Key, Usage] = {}
        by_digest: dict[str, Key] = {}
        live = {}
        known, ahead, prefix = self._blobs.get, stat_ahead.get, f"{rel}/blobs/sha256/"
        for name in names:
            usage = known(name) or ahead(name) or one_inode(f"{sha}/{name}")
            live[name] = usage
            key = make_key((Part.BLOB, prefix + name))
            measured[key] = usage
            digest = "sha256:" + name
            by_digest[digest] = key
            kinds[key] = _blob_kind(digest, recorded, doc_kinds, labels)
        self._blobs = live
        return kinds, measured, by_digest

    def measure(
        self,
        croot: str,
        root: str,
        meta: Metadata,
        doc_kinds: Mapping[str, str],
        labels: Mapping[str, frozenset[str]],
        prefetched: Prefetched = NOTHING_STARTED,
    ) -> tuple[dict[Key, str], dict[Key, Usage], dict[Key, Usage]]:
        """Each blob stat'ed once (content-addressed: immutable), by kind; downloads in
        progress walked every scan; the store's own dirs. Keys relative to the Docker root when
        the store lies in it, else absolute. Returns the kinds of all, what was measured now,
        and the blobs' stats (the same object while the blobs are). `labels`: unreached()'s
        blobs' label keys."""
        base = os.path.join(croot, CONTENT)
        rel = within(root, base) or base
        sha = os.path.join(base, "blobs", "sha256")
        names = self._blob_names.get(sha)

        def records() -> tuple[dict[Key, str], dict[Key, Usage], dict[str, Key]]:
            ahead = prefetched.children(sha, frozenset())  # waited for only when blobs are new
            return self._blob_records(sha, rel, names, meta, doc_kinds, labels, ahead)

        kinds, blobs, self._by_digest = self._blob_part.get(records, names, meta, doc_kinds, labels)
        extra: dict[Key, str] = {}
        measured: dict[Key, Usage] = {}
        for d in (rel, f"{rel}/blobs", f"{rel}/blobs/sha256", f"{rel}/ingest"):
            key = Key(Part.BLOB, d)
            measured[key] = witnessed_inode(os.path.join(root, d) if not os.path.isabs(d) else d)
            extra[key] = "other"
        for name in self._ingest_names.get(os.path.join(base, "ingest")):
            key = Key(Part.BLOB, f"{rel}/ingest/{name}")
            measured[key] = _walk_small(os.path.join(base, "ingest", name))
            extra[key] = "partial"
        for name in self._base_names.get(base):
            if name not in ("blobs", "ingest"):
                key = Key(Part.BLOB, f"{rel}/{name}")
                measured[key] = _walk_small(os.path.join(base, name))
                extra[key] = "other"
        # The same objects while no blob and no download came or went: the scan sums the
        # blobs once (exporter.scan.results), not every rescan.
        all_kinds = self._kinds.get(lambda: {**kinds, **extra}, kinds, key=tuple(extra.items()))
        return all_kinds, measured, blobs


def unreached(meta: Metadata, doc_kinds: Mapping[str, str]) -> dict[str, list[str]]:
    """Per namespace, the blobs it records that no image's manifests reach: their kind is told
    by their labels (containerd_meta.read_blob_labels), read for these alone."""
    wanted = {ns.name: sorted(ns.blobs.difference(doc_kinds)) for ns in meta.namespaces.values()}
    return {ns: digests for ns, digests in wanted.items() if digests}


def _blob_kind(
    digest: str, recorded: frozenset[str], doc_kinds: Mapping[str, str], labels: Mapping[str, frozenset[str]]
) -> str:
    """What a blob is: as the images' manifests say, else as containerd's GC labels say (the
    unpacker's `uncompressed` on layers, gc.ref.snapshot on configs, gc.ref.content on
    manifests and indexes); a blob no namespace records (`recorded`: all namespaces') is
    unreferenced. `labels`: the label keys, all namespaces', of each blob the manifests do not
    reach."""
    if digest not in recorded:
        return "unreferenced"
    kind = doc_kinds.get(digest)
    if kind is not None:
        return kind
    keys = labels.get(digest, frozenset())
    if "containerd.io/uncompressed" in keys:
        return "layer"
    if any(k.startswith("containerd.io/gc.ref.snapshot.") for k in keys):
        return "config"
    if any(k.startswith("containerd.io/gc.ref.content.") for k in keys):
        return "manifest"
    return "other"


def _walk_small(path: str) -> Usage:
    """A download in progress or a small dir of the store: walked here, every scan."""
    unwitnessed()  # its figure is this walk's: a read holding one is no stand-in for the next
    return walk(path)


def _digest(desc: Any) -> str:
    return desc.get("digest", "") if isinstance(desc, dict) and isinstance(desc.get("digest"), str) else ""


def _diff_ids(config: Any) -> list[str]:
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(ids, list) or not all(isinstance(d, str) and d.startswith("sha256:") for d in ids):
        return []
    return ids


def within(root: str, path: str) -> str | None:
    """`path` relative to `root` when it lies in it, else None (as os.path.relpath would say,
    by the names alone: no link is resolved). Absolute paths, the common case of every scan,
    without relpath's abspath of each."""
    root, path = os.path.normpath(root), os.path.normpath(path)
    if not (root.startswith("/") and path.startswith("/")) or "//" in (root[:2], path[:2]):
        rel = os.path.relpath(path, root)
        return None if rel == ".." or rel.startswith("../") else rel
    if path == root:
        return "."
    prefix = root if root == "/" else root + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None
