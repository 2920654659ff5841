"""What the Engine API reports: the engine's identity, images (per image, by state, by
registry) and object counts. Three groups, each failing alone: a bad image must not take
engine_info or the container counts with it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client.core import Metric

from exporter.collector.families import folded, gauge, skipped, usage
from exporter.collector.folding import OTHER, Fold, Memo, fold
from exporter.collector.labels import IMAGE_LABELS, image_labels, reference_labels, registry_label
from exporter.model import CONTAINER_STATES, IMAGE_STATES, VOLUME_STATES, EngineSnapshot, Image

INFO = gauge(
    "engine_info",
    "Always 1; the engine's identity from /version and /info (last successful sample).",
    ["engine", "version", "api_version", "storage_driver", "image_store", "root_dir"],
)
IMAGES = gauge(
    "images",
    "Images by state (exclusive): in_use = a container uses it; intermediate = "
    "untagged with child images (docker images -a); dangling = untagged, no "
    "children, no container (docker image prune removes these); unused = tagged, "
    "no container (docker image prune -a).",
    ["state"],
)
IMAGE_SIZE = gauge(
    "image_size_bytes",
    "Apparent bytes of all the image's layers, as Docker reports SIZE (shared layers "
    "counted in every image). Top images by size; the rest summed in __other__.",
    IMAGE_LABELS,
)
IMAGE_UNIQUE = gauge(
    "image_unique_bytes",
    "Bytes only this image holds, as `docker system df -v` UNIQUE SIZE: removing "
    "the image frees this much. Absent when a layer size could not be known.",
    IMAGE_LABELS,
)
IMAGE_CONTAINERS = gauge("image_containers", "Containers (any state) created from the image.", IMAGE_LABELS)
IMAGE_CREATED = gauge(
    "image_created_timestamp_seconds",
    "Unix time the image was created; for __other__ the oldest of the folded images.",
    IMAGE_LABELS,
)
IMAGE_TAGS = gauge(
    "image_tag_info",
    "Always 1; one series per tag of each listed image (image_size_bytes carries "
    "only the first tag so that sizes are not counted twice).",
    IMAGE_LABELS,
)
REGISTRY_IMAGES = gauge(
    "registry_images",
    "Images by registry: that of their RepoDigests (pulled from or pushed to), else of a tag "
    "naming a registry host, else docker.io for plain names, else none; each image counted once.",
    ["registry"],
)
REGISTRY_UNIQUE = gauge(
    "registry_unique_bytes",
    "Sum of image_unique_bytes of the images counted in registry_images (images whose "
    "unique size could not be known add nothing).",
    ["registry"],
)
CONTAINERS = gauge("containers", "Containers by state, as /containers/json?all=1 reports them.", ["state"])
VOLUMES = gauge(
    "volumes",
    "Volumes by state: in_use = mounted by at least one container (any state), as "
    "`docker system df` ACTIVE; unused = `docker volume prune` candidates.",
    ["state"],
)


class ImageSums(NamedTuple):
    """The folded images' __other__ series."""

    size: int
    unique: int | None  # None when any folded image's unique size is unknown: never under-report
    containers: int
    oldest: float  # the folded images' oldest creation time, not a sum


def info(snap: EngineSnapshot) -> Iterator[Metric]:
    i = snap.info
    fam = INFO.new()
    fam.add_metric([i.engine, i.version, i.api_version, i.storage_driver, i.image_store, i.root_dir], 1)
    yield fam
    yield skipped("engine", snap.skipped)


def images(snap: EngineSnapshot, top_n: int, hide: bool, memo: Memo) -> Iterator[Metric]:
    states = IMAGES.new()
    for state in IMAGE_STATES:
        states.add_metric([state], snap.image_states.get(state, 0))
    yield states

    per_image = size, unique, containers, created = [
        f.new() for f in (IMAGE_SIZE, IMAGE_UNIQUE, IMAGE_CONTAINERS, IMAGE_CREATED)
    ]
    tags = IMAGE_TAGS.new()
    f = memo.get(snap, "images", lambda: fold_images(snap.images, top_n))
    for img in f.kept:
        labels = image_labels(img, hide)
        size.add_metric(labels, img.size)
        if img.unique_size is not None:
            unique.add_metric(labels, img.unique_size)
        containers.add_metric(labels, img.containers)
        created.add_metric(labels, img.created)
        for ref in img.tags:
            tags.add_metric(reference_labels(img, ref, hide), 1)
    if f.other is not None:
        other = [OTHER] * 3
        size.add_metric(other, f.other.size)
        if f.other.unique is not None:
            unique.add_metric(other, f.other.unique)
        containers.add_metric(other, f.other.containers)
        created.add_metric(other, f.other.oldest)
    yield from (*per_image, tags)
    yield from _registries(snap, hide)
    yield folded(per_image, f.folded)
    if snap.image_usage is not None:
        yield from usage("images", snap.image_usage.used, snap.image_usage.reclaimable)


def fold_images(items: tuple[Image, ...], top_n: int) -> Fold[Image, ImageSums]:
    def combine(rest: list[Image]) -> ImageSums:
        known = all(i.unique_size is not None for i in rest)
        return ImageSums(
            size=sum(i.size for i in rest),
            unique=sum(i.unique_size for i in rest if i.unique_size is not None) if known else None,
            containers=sum(i.containers for i in rest),
            oldest=min(i.created for i in rest),
        )

    return fold(items, top_n, combine)


def _registries(snap: EngineSnapshot, hide: bool) -> Iterator[Metric]:
    # Stand-ins may coincide (a hex name keeps only its first 12 digits): those are summed.
    n_images: dict[str, int] = defaultdict(int)
    unique_bytes: dict[str, int] = defaultdict(int)
    for reg, (n, unique) in snap.registries.items():
        label = registry_label(reg, hide)
        n_images[label] += n
        unique_bytes[label] += unique
    ri, ru = REGISTRY_IMAGES.new(), REGISTRY_UNIQUE.new()
    for reg in sorted(n_images):
        ri.add_metric([reg], n_images[reg])
        ru.add_metric([reg], unique_bytes[reg])
    yield from (ri, ru)


def objects(snap: EngineSnapshot, memo: Memo) -> Iterator[Metric]:
    by_state = memo.get(snap, "container_states", lambda: Counter(c.state for c in snap.containers))
    containers = CONTAINERS.new()
    for state in CONTAINER_STATES:
        containers.add_metric([state], by_state.get(state, 0))
    yield containers
    volume_states = memo.get(
        snap, "volume_states", lambda: Counter("in_use" if v.containers else "unused" for v in snap.volumes)
    )
    volumes = VOLUMES.new()
    for state in VOLUME_STATES:
        volumes.add_metric([state], volume_states.get(state, 0))
    yield volumes
