"""What the scan sampler's own walk of the Docker root found: top-level dirs, the storage
driver's dirs by owner, image layers, containers' writable layers and logs, volumes, and the
walk itself. One group: its families come from one snapshot."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

from prometheus_client.core import Metric

from exporter.collector.families import counter, folded, gauge, skipped, usage
from exporter.collector.folding import OTHER, Fold, Memo, fold
from exporter.collector.labels import IMAGE_LABELS, hidden, image_labels, shown
from exporter.model import (
    VOLUME_STATES,
    WALK_KINDS,
    ContainerScan,
    DiskUsage,
    EngineSnapshot,
    Image,
    ImageScan,
    LayerScan,
    ScanSnapshot,
    VolumeScan,
)

ATTRIBUTION = gauge(
    "layer_attribution_available",
    "1 if image layers and storage-driver dirs can be attributed (overlay2 with the "
    "graphdriver image store, or the containerd image store); 0 means layer and driver "
    "families are absent, not zero.",
)
ROOT_DISK = gauge(
    "root_disk_bytes",
    "Allocated bytes (du) under each top-level entry of the Docker root, by our walk.",
    ["dir"],
)
ROOT_FILES = gauge("root_files", "Inodes under each top-level entry of the Docker root.", ["dir"])
DRIVER_DISK = gauge(
    "driver_disk_bytes",
    "Allocated bytes of the store's layer dirs (overlay2/, or containerd's snapshots/) by "
    "owner: image (layers), container (writable layers), init, build_cache (BuildKit "
    "snapshots), links (overlay2 l/), orphan (no record names it); on the containerd store "
    "also unpacking (extract-*, new-*), other_namespace (k8s.io, default...) and "
    "unreferenced (a record nothing holds: containerd's GC will take it).",
    ["owner"],
)
CONTENT_DISK = gauge(
    "content_disk_bytes",
    "Allocated bytes of the containerd content store (compressed blobs, kept beside the "
    "unpacked layers) by kind: layer, config, manifest (manifests and indexes), partial "
    "(downloads in progress), unreferenced (no namespace records the blob), other.",
    ["kind"],
)
CONTENT_FILES = gauge("content_files", "Inodes of the containerd content store by kind.", ["kind"])
IMAGE_CONTENT = gauge(
    "image_content_disk_bytes",
    "Allocated bytes of the image's blobs in the containerd content store (its compressed "
    "layers, config and manifests), kept beside its unpacked layers. Top images by both; the "
    "rest summed in __other__.",
    IMAGE_LABELS,
)
IMAGE_UNPACKED = gauge(
    "image_unpacked_disk_bytes",
    "Allocated bytes of the image's unpacked layer dirs in containerd's snapshots/ (a layer "
    "shared by several images counted in each).",
    IMAGE_LABELS,
)
READ_ERRORS = counter(
    "store_read_errors",
    "Reads of a store's metadata files (containerd's meta.db, metadata.db) that failed even "
    "after retries since start; the scan kept the last good figures.",
    ["file"],
)
DRIVER_FILES = gauge("driver_files", "Inodes of the storage driver's dir by owner.", ["owner"])
ORPHANS = gauge("orphan_dirs", "Dirs of the store's layer area that no record names (leaked).")
LAYERS = gauge("layers", "Image layers in the layer store (layerdb).")
LAYERS_SIZE = gauge(
    "layers_size_bytes", "Sum of the layer sizes Docker recorded at pull or build (apparent bytes)."
)
LAYERS_DISK = gauge("layers_disk_bytes", "Allocated bytes of all layer dirs, by our walk.")
LAYER_SIZE = gauge("layer_size_bytes", "Docker's recorded size of the layer (apparent bytes).", ["diff_id"])
LAYER_DISK = gauge("layer_disk_bytes", "Allocated bytes of the layer's dir, by our walk.", ["diff_id"])
LAYER_FILES = gauge("layer_files", "Inodes in the layer's dir.", ["diff_id"])
LAYER_IMAGES = gauge("layer_images", "Images whose layer chain holds the layer.", ["diff_id"])
CONTAINER_LABELS = ("container", "image")
CONTAINER_RW = gauge(
    "container_rw_bytes",
    "Allocated bytes of the container's writable layer (its overlay2 upper dir).",
    CONTAINER_LABELS,
)
CONTAINER_LOGS = gauge(
    "container_log_bytes",
    "Allocated bytes of the container's logs: json-file logs with their rotated files, "
    "and the local driver's.",
    CONTAINER_LABELS,
)
VOLUME_LABELS = ("volume", "driver")
VOLUME_DISK = gauge("volume_disk_bytes", "Allocated bytes of the volume's dir, by our walk.", VOLUME_LABELS)
VOLUME_FILES = gauge("volume_files", "Inodes in the volume's dir.", VOLUME_LABELS)
VOLUME_CONTAINERS = gauge("volume_containers", "Containers (any state) that mount the volume.", VOLUME_LABELS)
VOLUMES_DISK = gauge(
    "volumes_disk_bytes",
    "Allocated bytes of volumes by state: in_use (mounted by a container) or unused.",
    ["state"],
)
WALKS = gauge(
    "scan_walks",
    "Directories walked by the last scan, by kind; layers come from the cache once walked.",
    ["kind"],
)
CACHED = gauge("scan_cached_layers", "Image layers whose walk is cached (immutable).")
UNREADABLE = gauge(
    "scan_unreadable_entries",
    "Entries the last scan could not read (permission denied); their bytes are missing.",
)


class LayerSums(NamedTuple):
    """One diff ID's figures (the same content under two chains is summed), or several's."""

    size: int
    disk_bytes: int
    files: int
    images: int


class ContainerSums(NamedTuple):
    rw: int  # writable layers' allocated bytes; 0 without attribution
    logs: int


class VolumeSums(NamedTuple):
    disk_bytes: int
    files: int
    containers: int


def scan(
    snap: ScanSnapshot,
    engine: EngineSnapshot | None,
    top_n: int,
    hide: bool,
    memo: Memo,
    engine_memo: Memo,
) -> Iterator[Metric]:
    attr = ATTRIBUTION.new()
    attr.add_metric([], 1 if snap.attribution else 0)
    yield attr
    rd, rf = ROOT_DISK.new(), ROOT_FILES.new()
    for name, u in sorted(snap.root_dirs.items()):
        rd.add_metric([name], u.disk_bytes)
        rf.add_metric([name], u.files)
    yield from (rd, rf)
    if snap.attribution:
        yield from _driver(snap)
        yield from _layers(snap, top_n, memo)
    yield from _containers(snap, top_n, memo, _image_ids(engine, engine_memo) if hide else None)
    yield from _volumes(snap, top_n, hide, memo)
    walks = WALKS.new()
    for kind in WALK_KINDS:
        walks.add_metric([kind], snap.walks.get(kind, 0))
    cached = CACHED.new()
    cached.add_metric([], snap.cached_layers)
    errs = UNREADABLE.new()
    errs.add_metric([], snap.errors)
    yield from (walks, cached, errs, skipped("scan", snap.skipped))
    if snap.content:
        cd, cf = CONTENT_DISK.new(), CONTENT_FILES.new()
        for kind, u in snap.content.items():
            cd.add_metric([kind], u.disk_bytes)
            cf.add_metric([kind], u.files)
        yield from (cd, cf)
    if snap.images:
        yield from _images(snap, engine, top_n, hide, memo, engine_memo)
    if snap.read_errors:  # the metadata files the store reads, each with its count (0 too)
        errors = READ_ERRORS.new()
        for name, n in sorted(snap.read_errors.items()):
            errors.add_metric([name], n)
        yield errors


def _driver(snap: ScanSnapshot) -> Iterator[Metric]:
    dd, df = DRIVER_DISK.new(), DRIVER_FILES.new()
    for owner, u in snap.owners.items():
        dd.add_metric([owner], u.disk_bytes)
        df.add_metric([owner], u.files)
    orphans = ORPHANS.new()
    orphans.add_metric([], len(snap.orphans))
    yield from (dd, df, orphans)


# -- layers --------------------------------------------------------------------------------


def _layers(snap: ScanSnapshot, top_n: int, memo: Memo) -> Iterator[Metric]:
    totals = memo.get(snap, "layer_totals", lambda: add_layers(map(layer_sums, snap.layers)))
    n, size, disk = LAYERS.new(), LAYERS_SIZE.new(), LAYERS_DISK.new()
    n.add_metric([], len(snap.layers))
    size.add_metric([], totals.size)
    disk.add_metric([], totals.disk_bytes)
    yield from (n, size, disk)
    fams = [f.new() for f in (LAYER_SIZE, LAYER_DISK, LAYER_FILES, LAYER_IMAGES)]
    f = memo.get(snap, "layers", lambda: fold_layers(snap, top_n))
    for key, sums in f.kept:
        for fam, v in zip(fams, sums, strict=True):
            fam.add_metric([key], v)
    if f.other is not None:
        for fam, v in zip(fams, f.other, strict=True):
            fam.add_metric([OTHER], v)
    yield from fams
    yield folded(fams, f.folded)


def layer_sums(x: LayerScan) -> LayerSums:
    return LayerSums(x.size, x.total.disk_bytes, x.total.files, x.images)


def add_layers(rows: Iterable[LayerSums]) -> LayerSums:
    rows = list(rows)
    return LayerSums(
        sum(r.size for r in rows),
        sum(r.disk_bytes for r in rows),
        sum(r.files for r in rows),
        sum(r.images for r in rows),
    )


def fold_layers(snap: ScanSnapshot, top_n: int) -> Fold[tuple[str, LayerSums], LayerSums]:
    """One item per diff ID (short form), biggest on disk first."""
    by_diff: dict[str, list[LayerSums]] = defaultdict(list)
    for x in snap.layers:
        by_diff[x.diff_id.split(":", 1)[-1][:12]].append(layer_sums(x))
    rows = sorted(((k, add_layers(v)) for k, v in by_diff.items()), key=lambda kv: (-kv[1].disk_bytes, kv[0]))
    return fold(rows, top_n, lambda rest: add_layers(sums for _, sums in rest))


# -- containers ----------------------------------------------------------------------------


def _images(
    snap: ScanSnapshot, engine: EngineSnapshot | None, top_n: int, hide: bool, memo: Memo, engine_memo: Memo
) -> Iterator[Metric]:
    """Each image's two copies, labelled as the engine's image families are."""
    known: Mapping[str, Image] = (
        engine_memo.get(engine, "images_by_id", lambda: {i.id: i for i in engine.images}) if engine else {}
    )
    content, unpacked = IMAGE_CONTENT.new(), IMAGE_UNPACKED.new()
    f = memo.get(snap, "images", lambda: fold(snap.images, top_n, _image_sums))
    for x in f.kept:
        img = known.get(x.id)
        lv = image_labels(img, hide) if img else [x.id.split(":", 1)[-1][:12], "<none>", "<none>"]
        content.add_metric(lv, x.content.disk_bytes)
        unpacked.add_metric(lv, x.unpacked.disk_bytes)
    if f.other is not None:
        content.add_metric([OTHER] * 3, f.other[0])
        unpacked.add_metric([OTHER] * 3, f.other[1])
    yield from (content, unpacked)
    yield folded([content, unpacked], f.folded)


def _image_sums(rest: list[ImageScan]) -> tuple[int, int]:
    return sum(i.content.disk_bytes for i in rest), sum(i.unpacked.disk_bytes for i in rest)


def _image_ids(engine: EngineSnapshot | None, engine_memo: Memo) -> Mapping[str, str]:
    """Container id -> image id, for --metrics.hide-names' container labels."""
    if engine is None:
        return {}
    return engine_memo.get(engine, "image_ids", lambda: {c.id: c.image_id for c in engine.containers})


def _containers(
    snap: ScanSnapshot, top_n: int, memo: Memo, image_ids: Mapping[str, str] | None
) -> Iterator[Metric]:
    """image_ids is None unless names are hidden: the labels are then the container's short
    id and its image's short id when known (joinable with image_id)."""
    rw, logs = CONTAINER_RW.new(), CONTAINER_LOGS.new()
    f = memo.get(snap, "containers", lambda: fold_containers(snap, top_n))
    for c in f.kept:
        lv = [c.name, c.image] if image_ids is None else [c.id[:12], hidden(image_ids.get(c.id) or c.image)]
        if c.rw is not None:
            rw.add_metric(lv, c.rw.disk_bytes)
        logs.add_metric(lv, c.logs.disk_bytes)
    if f.other is not None:
        if snap.attribution:
            rw.add_metric([OTHER, OTHER], f.other.rw)
        logs.add_metric([OTHER, OTHER], f.other.logs)
    yield from (rw, logs)
    yield folded([rw, logs], f.folded)
    if snap.attribution:
        u = memo.get(snap, "container_usage", lambda: container_usage(snap))
        yield from usage("containers", u.used, u.reclaimable)


def fold_containers(snap: ScanSnapshot, top_n: int) -> Fold[ContainerScan, ContainerSums]:
    def combine(rest: list[ContainerScan]) -> ContainerSums:
        return ContainerSums(
            rw=sum(c.rw.disk_bytes for c in rest if c.rw) if snap.attribution else 0,
            logs=sum(c.logs.disk_bytes for c in rest),
        )

    return fold(snap.containers, top_n, combine)


def container_usage(snap: ScanSnapshot) -> DiskUsage:
    """`docker system df`: SIZE is the writable layers' apparent bytes, RECLAIMABLE those of
    containers that are not active (running, paused or restarting)."""
    return DiskUsage(
        used=sum(c.size_rw for c in snap.containers if c.size_rw is not None),
        reclaimable=sum(c.size_rw for c in snap.containers if c.size_rw is not None and c.prunable),
    )


# -- volumes -------------------------------------------------------------------------------


def _volumes(snap: ScanSnapshot, top_n: int, hide: bool, memo: Memo) -> Iterator[Metric]:
    per_volume = disk, files, users = [f.new() for f in (VOLUME_DISK, VOLUME_FILES, VOLUME_CONTAINERS)]
    f = memo.get(snap, "volumes", lambda: fold_volumes(snap, top_n))
    for v in f.kept:
        lv = [shown(v.name, hide), v.driver]
        disk.add_metric(lv, v.total.disk_bytes)
        files.add_metric(lv, v.total.files)
        users.add_metric(lv, v.containers)
    if f.other is not None:
        for fam, value in zip(per_volume, f.other, strict=True):
            fam.add_metric([OTHER, OTHER], value)
    yield from per_volume
    yield folded(per_volume, f.folded)
    by_state = VOLUMES_DISK.new()
    disk_by_state = memo.get(snap, "volume_disk_by_state", lambda: volume_disk_by_state(snap))
    for state in VOLUME_STATES:
        by_state.add_metric([state], disk_by_state[state])
    yield by_state
    u = memo.get(snap, "volume_usage", lambda: volume_usage(snap))
    yield from usage("volumes", u.used, u.reclaimable)


def fold_volumes(snap: ScanSnapshot, top_n: int) -> Fold[VolumeScan, VolumeSums]:
    def combine(rest: list[VolumeScan]) -> VolumeSums:
        return VolumeSums(
            disk_bytes=sum(v.total.disk_bytes for v in rest),
            files=sum(v.total.files for v in rest),
            containers=sum(v.containers for v in rest),
        )

    return fold(snap.volumes, top_n, combine)


def volume_disk_by_state(snap: ScanSnapshot) -> dict[str, int]:
    return {
        state: sum(v.total.disk_bytes for v in snap.volumes if (v.containers > 0) == (state == "in_use"))
        for state in VOLUME_STATES
    }


def volume_usage(snap: ScanSnapshot) -> DiskUsage:
    """`docker system df`: SIZE is the volumes' apparent bytes, RECLAIMABLE the unused ones'."""
    return DiskUsage(
        used=sum(v.data.apparent_bytes for v in snap.volumes),
        reclaimable=sum(v.data.apparent_bytes for v in snap.volumes if v.containers == 0),
    )
