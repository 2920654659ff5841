"""Reader of the Docker root's on-disk layout (overlay2 graphdriver). Read-only.

What it reads (DESIGN.md, "Facts about Docker's storage"):
- `image/<driver>/layerdb/sha256/<chain-id>/{diff,size,cache-id,parent}`: image layers;
- `image/<driver>/layerdb/mounts/<container-id>/{mount-id,init-id,parent}`: container layers;
- `image/<driver>/imagedb/content/sha256/<image-id>`: image configs (`rootfs.diff_ids`);
- `buildkit/snapshots.db`: BuildKit's snapshots (a bbolt file: one top-level bucket per
  snapshot, named by its key, which is also its graphdriver dir's name);
- `containers/<id>/` with its json-file (`<id>-json.log*`) and `local` (`local-logs/`) logs;
- `volumes/<name>/_data`.
Entries are written by dockerd while we read: a truncated, empty or missing file makes that
one entry skipped and counted, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple, TypeAlias

from exporter.memo import Derived
from exporter.sources import bolt
from exporter.sources.rawfs import (
    DIR_FLAGS,
    entry_is_dir,
    names_in,
    open_regular,
    read_regular,
    read_short,
    scandir_or_none,
    scandir_sorted,
)
from exporter.sources.stamps import Stamp, settled_stamp
from exporter.sources.witness import unwitnessed

HEX64 = re.compile(r"^[0-9a-f]{64}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def chain_ids(diff_ids: Sequence[str]) -> tuple[str, ...]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + ' ' + DiffID(Ln))."""
    if not diff_ids:
        return ()
    intern, sha256 = sys.intern, hashlib.sha256  # interned: images share their bases' chain IDs
    last = intern(diff_ids[0])
    out = [last]
    for diff in diff_ids[1:]:
        last = intern("sha256:" + sha256(f"{last} {diff}".encode("utf-8", "surrogatepass")).hexdigest())
        out.append(last)
    return tuple(out)


@dataclass(frozen=True, slots=True)  # slots: a host can hold tens of thousands
class LayerEntry:
    chain_id: str  # "sha256:…"
    diff_id: str
    size: int  # apparent bytes Docker recorded when the layer was committed
    cache_id: str  # dir name under the driver's dir
    parent: str


@dataclass(frozen=True)
class MountEntry:
    container_id: str
    mount_id: str
    init_id: str


@dataclass(frozen=True)
class ContainerDir:
    id: str
    path: str  # as this process sees it
    logs: tuple[str, ...]  # json-file and local driver log files, rotated ones included


@dataclass(frozen=True)
class Layout:
    root: str  # as this process sees it
    driver: str
    layers: tuple[LayerEntry, ...]
    mounts: tuple[MountEntry, ...]
    image_layers: dict[str, tuple[str, ...]]  # image ID -> chain IDs, bottom-up
    buildkit_names: frozenset[str]  # driver dirs that are BuildKit snapshots
    driver_dirs: tuple[str, ...]  # dirs under the driver's dir
    driver_files: tuple[str, ...]  # anything else there (e.g. xfs quota's backingFsBlockDev)
    chain_stamps: dict[str, tuple[int, int]]  # layerdb chain dir -> (inode, mtime)
    chains_stamp: tuple[int, int] | None  # layerdb/sha256 itself, when settled (see settled_stamp)
    containers: tuple[ContainerDir, ...]
    volumes: tuple[str, ...]  # names of dirs under volumes/
    top_dirs: tuple[str, ...]  # entries of the Docker root
    skipped: int
    problems: tuple[str, ...]  # what was skipped and why (first few), for the log


Listing = tuple[tuple[str, bool], ...]  # (name, is a directory) of each entry, by name
Added = tuple[int, tuple[str, ...]]  # problems found by one part of the read: count, first few


class _Problems:
    def __init__(self) -> None:
        self.count = 0
        self.first: list[str] = []

    def add(self, what: str) -> None:
        self.count += 1
        if len(self.first) < 20:
            self.first.append(what)

    def since(self, mark: tuple[int, int]) -> tuple[int, tuple[str, ...]]:
        """What was added after `mark` (a (count, len(first)) pair): to replay on a memo hit."""
        return self.count - mark[0], tuple(self.first[mark[1] :])

    def replay(self, added: tuple[int, tuple[str, ...]]) -> None:
        count, first = added
        for what in first:
            self.add(what)
        self.count += count - len(first)


class _Parsed(NamedTuple):
    stamp: Stamp  # of the entry's dir when it was read
    entry: LayerEntry


class _Listed(NamedTuple):
    stamp: Stamp  # the dir's settled stamp when it was listed
    listing: Listing


class _LayerSet(NamedTuple):
    stamp: Stamp  # layerdb/sha256's settled stamp
    layers: tuple[LayerEntry, ...]
    stamps: dict[str, Stamp]  # each chain dir's
    problems: Added


class _ImageSet(NamedTuple):
    stamp: Stamp  # imagedb/content/sha256's settled stamp
    images: dict[str, tuple[str, ...]]
    problems: Added


class ReadCache:
    """Parsed layout entries that never change once complete: a layer's layerdb dir (named by
    its chain ID), an image's config (named by its ID) and a container's mount ids. Only good
    entries are kept, so a half-written one is read again next time; `retain` drops the gone."""

    def __init__(self) -> None:
        # By chain ID, with the entry dir's (inode, mtime): a layer removed and pulled again
        # comes back under the same chain ID but in a new dir, with a new cache-id.
        self.layers: dict[str, _Parsed] = {}
        self.images: dict[str, tuple[str, ...]] = {}
        self.mounts: dict[str, MountEntry] = {}
        # Whole listings, valid while their dir's settled stamp holds: what a rescan of an
        # unchanged root reuses without a stat per entry (the same objects, so callers can
        # tell "unchanged" by identity).
        self.layer_set: _LayerSet | None = None
        self.image_set: _ImageSet | None = None
        self.listings: dict[str, _Listed] = {}  # a few fixed dirs and the containers': see listing
        # read_containers' last answer: each container's record by the listings it came from,
        # and the whole tuple by the containers/ listing (the same objects while they hold).
        self.containers: dict[str, tuple[Listing, Listing, ContainerDir]] = {}
        self.container_set: tuple[Listing, tuple[ContainerDir, ...]] | None = None
        self.driver_split: Derived[tuple[tuple[str, ...], tuple[str, ...]]] = Derived()

    def retain(self, layers: set[str], images: set[str], mounts: set[str]) -> None:
        for cache, live in ((self.layers, layers), (self.images, images), (self.mounts, mounts)):
            for gone in [k for k in cache if k not in live]:
                del cache[gone]


def listing(path: str, cache: ReadCache | None) -> Listing:
    """A dir's entries with d_type from the listing (no stat per entry). Any entry added,
    removed, renamed or replaced moves the dir's mtime, so a listing is reused while the dir's
    settled stamp holds: one lstat instead of reading thousands of entries."""
    stamp = settled_stamp(path) if cache is not None else None
    if stamp and cache is not None:
        hit = cache.listings.get(path)
        if hit is not None and hit.stamp == stamp:
            return hit.listing
    read = scandir_or_none(path)
    out = tuple((sys.intern(e.name), entry_is_dir(e)) for e in read or ())  # see read_layers
    if stamp and cache is not None:
        if read is not None:
            cache.listings[path] = _Listed(stamp, out)
        else:  # unread (EMFILE, EIO): read again next time, not trusted by a stamp that holds
            cache.listings.pop(path, None)
    return out


def _split(entries: Listing) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A listing's dirs and its other entries."""
    return tuple(n for n, is_dir in entries if is_dir), tuple(n for n, is_dir in entries if not is_dir)


def read_layers(
    layerdb: str,
    problems: _Problems,
    cache: ReadCache | None = None,
    stamps: dict[str, tuple[int, int]] | None = None,
) -> list[LayerEntry]:
    """Layer entries; `stamps` receives each chain dir's (inode, mtime), which tells a dir
    that is still the one read before from one made anew under the same chain ID."""
    out = []
    base = os.path.join(layerdb, "sha256")
    for dent in scandir_sorted(base):
        if not HEX64.fullmatch(dent.name):
            continue  # e.g. "<id>-<random>-removing" while dockerd deletes a layer
        name = sys.intern(dent.name)  # one string per chain ID, whoever keys on it
        d = dent.path
        try:
            st = dent.stat(follow_symlinks=False)
        except OSError:
            continue  # removed since the listing
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamps is not None:
            stamps[name] = stamp
        hit = cache.layers.get(name) if cache is not None else None
        if hit is not None and hit.stamp == stamp:
            out.append(hit.entry)
            continue
        diff = size = cache_id = parent = None
        try:
            dfd = os.open(d, DIR_FLAGS)
        except OSError:
            pass  # gone since the stat, or not a dir: malformed, below
        else:
            try:
                diff, size, cache_id, parent = (
                    read_short(f, dir_fd=dfd) for f in ("diff", "size", "cache-id", "parent")
                )
            finally:
                os.close(dfd)
        parent = parent or ""
        if (
            not diff
            or not DIGEST.fullmatch(diff)
            or not cache_id
            or "/" in cache_id
            or cache_id in (".", "..")
        ):
            problems.add(f"layer {name[:12]}: diff or cache-id missing or malformed")
            continue
        # As Go's ParseInt reads it: digits, and within int64.
        if not size or not re.fullmatch(r"-?[0-9]{1,19}", size) or not -(2**63) <= int(size) < 2**63:
            problems.add(f"layer {name[:12]}: size missing or malformed")
            continue
        size_n = int(size)
        # Interned: a parent is another layer's chain ID, a base layer's diff ID its chain ID.
        # cache_id: the name of its driver dir, which the listing of that dir interns too.
        chain, cache_id = sys.intern(f"sha256:{name}"), sys.intern(cache_id)
        entry = LayerEntry(chain, sys.intern(diff), max(0, size_n), cache_id, sys.intern(parent))
        if cache is not None:
            cache.layers[name] = _Parsed(stamp, entry)
        out.append(entry)
    return out


def read_mounts(layerdb: str, problems: _Problems, cache: ReadCache | None = None) -> list[MountEntry]:
    out = []
    base = os.path.join(layerdb, "mounts")
    for cid in names_in(base):
        if cache is not None and cid in cache.mounts:
            out.append(cache.mounts[cid])
            continue
        d = os.path.join(base, cid)
        mount_id = read_short(os.path.join(d, "mount-id"))
        init_id = read_short(os.path.join(d, "init-id")) or ""
        if not mount_id or "/" in mount_id:
            problems.add(f"mount {cid[:12]}: mount-id missing or malformed")
            continue
        entry = MountEntry(cid, mount_id, init_id if "/" not in init_id else "")
        # dockerd writes mount-id, init-id and parent one after the other, in place: kept only
        # once the dir has settled, so an entry read between two of them is read again.
        if cache is not None and settled_stamp(d) is not None:
            cache.mounts[cid] = entry
        out.append(entry)
    return out


def read_image_layers(
    imagedb: str, problems: _Problems, cache: ReadCache | None = None
) -> dict[str, tuple[str, ...]]:
    """Image ID -> its layers' chain IDs, from each image config's rootfs.diff_ids."""
    out: dict[str, tuple[str, ...]] = {}
    base = os.path.join(imagedb, "content", "sha256")
    for name in names_in(base):
        if not HEX64.fullmatch(name):
            continue
        if cache is not None and name in cache.images:
            out[f"sha256:{name}"] = cache.images[name]
            continue
        try:
            config = json.loads(read_regular(os.path.join(base, name), 16 * 2**20))
            diff_ids = config["rootfs"]["diff_ids"]
            if diff_ids is None:  # Go's nil slice: an image with no layers
                diff_ids = []
            if not isinstance(diff_ids, list) or not all(
                isinstance(d, str) and DIGEST.fullmatch(d) for d in diff_ids
            ):
                raise ValueError("bad diff_ids")
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            problems.add(f"image {name[:12]}: config unreadable")
            continue
        out[f"sha256:{name}"] = chain_ids(diff_ids)
        if cache is not None:
            cache.images[name] = out[f"sha256:{name}"]
    return out


def buildkit_snapshot_names(root: str, candidates: list[str]) -> frozenset[str]:
    """Which of `candidates` are BuildKit's snapshots: the top-level buckets of its
    `buildkit/snapshots.db` (moby builder-next's snapshot adapter keeps one per snapshot, named
    by its key; a graphdriver dir is made under that name), read with the bbolt reader. A file
    that is no bbolt file we can read is searched for the names as plain bytes instead."""
    if not any(candidates):
        return frozenset()
    path = os.path.join(root, "buildkit", "snapshots.db")
    try:
        db = bolt.read_db(path)
    except bolt.Unreadable:
        return frozenset()  # missing, a fifo, a link: nothing is known as BuildKit's
    except bolt.BoltError:
        return _names_in_bytes(path, candidates)
    keys = db.root.buckets
    return frozenset(c for c in candidates if c and c.encode() in keys)


def _names_in_bytes(path: str, candidates: list[str], chunk: int = 2**20) -> frozenset[str]:
    """Which of `candidates` appear in the file, read in bounded chunks (only the names we
    look for are kept)."""
    wanted = {c.encode(): c for c in candidates if c}
    overlap = max(len(w) for w in wanted) - 1
    found: set[str] = set()
    tail = b""
    try:
        with open_regular(path) as f:
            while wanted and (block := f.read(chunk)):
                data = tail + block
                for raw in [w for w in wanted if w in data]:
                    found.add(wanted.pop(raw))
                tail = data[-overlap:] if overlap else b""
    except OSError:
        pass
    return frozenset(found)


def read_containers(root: str, cache: ReadCache | None = None) -> tuple[ContainerDir, ...]:
    """Each container's dir and its log files. With a `cache`, each dir's listing is reused
    while its settled stamp holds (a log rotated, a file written by rename, moves it): one
    stat a container a rescan, not a listing; and the records made from listings that held,
    the same objects as last time."""
    out = []
    base = os.path.join(root, "containers")
    listed = {base}
    top = listing(base, cache)
    kept = cache.containers if cache is not None else {}
    made: dict[str, tuple[Listing, Listing, ContainerDir]] = {}
    same = True
    for cid, _ in top:
        d = f"{base}/{cid}"  # names from a listing: no separator, never absolute
        listed.add(d)
        names = listing(d, cache)
        local: Listing = ()
        if ("local-logs", True) in names:
            listed.add(f"{d}/local-logs")
            local = listing(f"{d}/local-logs", cache)
        hit = kept.get(cid)
        if hit is not None and hit[0] is names and hit[1] is local:
            record = hit[2]
        else:
            same = False
            json_log = f"{cid}-json.log"
            logs = [f"{d}/{n}" for n, _ in names if n.startswith(json_log)]
            logs += [f"{d}/local-logs/{n}" for n, _ in local if n.startswith("container.log")]
            record = ContainerDir(cid, d, tuple(logs))
        made[cid] = (names, local, record)
        out.append(record)
    if cache is None:
        return tuple(out)
    last = cache.container_set
    if same and last is not None and last[0] is top:
        return last[1]
    cache.containers = made
    cache.container_set = (top, tuple(out))
    # forget the listings of containers gone
    gone = [p for p in cache.listings if p.startswith(f"{base}/") and p not in listed]
    for path in gone:
        del cache.listings[path]
    return cache.container_set[1]


_ImageStore: TypeAlias = tuple[
    tuple[LayerEntry, ...], dict[str, Stamp], Stamp | None, list[MountEntry], dict[str, tuple[str, ...]]
]


def _read_image_store(root: str, driver: str, problems: _Problems, cache: ReadCache | None) -> _ImageStore:
    """`image/<driver>/`: the layers (layerdb), the containers' mounts and the images, each set
    reused while its dir's settled stamp holds."""
    unwitnessed()  # it also stats and opens entries itself (exporter.sources.witness)
    image_dir = os.path.join(root, "image", driver)
    layerdb = os.path.join(image_dir, "layerdb")
    chains_stamp = settled_stamp(os.path.join(layerdb, "sha256"))
    if cache is not None and chains_stamp and cache.layer_set and cache.layer_set.stamp == chains_stamp:
        layers, stamps = cache.layer_set.layers, cache.layer_set.stamps
        problems.replay(cache.layer_set.problems)  # the malformed entries are still there: still counted
    else:
        stamps = {}
        mark = (problems.count, len(problems.first))
        layers = tuple(read_layers(layerdb, problems, cache, stamps))
        if cache is not None:
            cache.layer_set = (
                _LayerSet(chains_stamp, layers, stamps, problems.since(mark)) if chains_stamp else None
            )
    mounts = read_mounts(layerdb, problems, cache)
    imagedb = os.path.join(image_dir, "imagedb")
    images_stamp = settled_stamp(os.path.join(imagedb, "content", "sha256"))
    if cache is not None and images_stamp and cache.image_set and cache.image_set.stamp == images_stamp:
        images = cache.image_set.images
        problems.replay(cache.image_set.problems)
    else:
        mark = (problems.count, len(problems.first))
        images = read_image_layers(imagedb, problems, cache)
        if cache is not None:
            cache.image_set = _ImageSet(images_stamp, images, problems.since(mark)) if images_stamp else None
    return layers, stamps, chains_stamp, mounts, images


def read_layout(root: str, driver: str, cache: ReadCache | None = None) -> Layout:
    """Everything but the walk. `root` is the Docker root as this process sees it. With a
    `cache`, entries that cannot change are parsed once (a rescan then mostly lists dirs)."""
    problems = _Problems()
    top = listing(root, cache)
    present = {name for name, _ in top} if cache is not None else None  # no cache: look all up
    if present is None or "image" in present:
        layers, stamps, chains_stamp, mounts, images = _read_image_store(root, driver, problems, cache)
    else:  # no image store (Docker's containerd image store keeps none): nothing of it to look up
        layers, stamps, chains_stamp, mounts, images = (), {}, None, [], {}
    if cache is not None:
        cache.retain(
            {e.chain_id.split(":", 1)[1] for e in layers},
            {i.split(":", 1)[1] for i in images},
            {m.container_id for m in mounts},
        )
    # A host has thousands of driver dirs: d_type, no stat per entry, and reused unchanged.
    entries = listing(os.path.join(root, driver), cache) if present is None or driver in present else ()
    # The same tuples while the listing is the same object: callers tell "unchanged" by identity.
    split = cache.driver_split if cache is not None else Derived()
    driver_dirs, driver_files = split.get(lambda: _split(entries), entries)
    known = {entry.cache_id for entry in layers} | {m.mount_id for m in mounts} | {m.init_id for m in mounts}
    unknown = [d for d in driver_dirs if d not in known and d != "l"]
    volumes = tuple(name for name, is_dir in listing(os.path.join(root, "volumes"), cache) if is_dir)
    return Layout(
        root=root,
        driver=driver,
        layers=layers,
        mounts=tuple(mounts),
        image_layers=images,
        buildkit_names=buildkit_snapshot_names(root, unknown),
        driver_dirs=driver_dirs,
        driver_files=driver_files,
        chain_stamps=stamps,
        chains_stamp=chains_stamp,
        containers=read_containers(root, cache),
        volumes=volumes,
        top_dirs=tuple(map(itemgetter(0), top)),
        skipped=problems.count,
        problems=tuple(problems.first),
    )
