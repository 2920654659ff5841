"""Image states, registries and the shared/unique size math of `docker system df`.

Docker's definitions, which we reproduce so our numbers equal `docker system df -v`:
- The images that count are the "top-level" ones: every image except untagged, digest-less
  images that have children (intermediate images, listed only by `docker images -a`).
- A layer (by chain ID) is shared when more than one top-level image contains it.
  SHARED SIZE is the sum of an image's shared layers, UNIQUE SIZE = SIZE - SHARED SIZE.
- Images TOTAL SIZE is the sum of every distinct layer of the top-level images, and
  RECLAIMABLE is that total minus the unique size of every image some container uses.
An intermediate image's layers all belong to its descendants, so its unique size is 0.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from exporter.layersizes import ROOT, LayerChain, LayerSizes, align
from exporter.model import DiskUsage, Image
from exporter.sources.engine import as_dict, as_int, as_list, as_str, real_tags
from exporter.sources.layout import chain_ids

# The diff ID of an empty tar: what Docker records for a step that changed no file.
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


class RawImage(NamedTuple):
    """One entry of /images/json. A tuple: a host may list tens of thousands, each sample."""

    id: str
    tags: tuple[str, ...]
    parent_id: str
    created: float
    size: int
    has_digest: bool = False  # pulled by digest: listed by `docker images` even untagged
    digest_registry: str = ""  # the registry of its RepoDigests (the first, sorted, of several)


def _raw_image(item: Any) -> RawImage | None:
    """One listing entry, or None when it has no usable Id."""
    if not isinstance(item, dict):
        return None
    iid = item.get("Id")
    if not isinstance(iid, str) or not iid:
        return None
    size = as_int(item.get("Size"), -1)
    if size < 0:  # some engines put it only in VirtualSize (gone from 1.44)
        size = as_int(item.get("VirtualSize"), 0)
    digests = item.get("RepoDigests")
    registry = ""
    if digests:
        hosts = [
            registry_of(d) for d in as_list(digests) if isinstance(d, str) and "@" in d and "<none>" not in d
        ]
        registry = min(hosts, default="")
    return RawImage(
        iid,
        real_tags(item.get("RepoTags")),
        as_str(item.get("ParentId")),
        float(max(0, as_int(item.get("Created")))),
        max(0, size),
        bool(registry),
        registry,
    )


def _image_hook(obj: dict[str, Any]) -> Any:
    # json's object_hook sees every object, innermost first. Any object with a usable Id
    # becomes a RawImage at once, so the listing never exists as 10,000 dicts. An object
    # nested in an entry (Labels) that happens to carry an Id is turned too; the readers
    # treat a tuple where they want a string, list or number like any other wrong type.
    img = _raw_image(obj)
    return obj if img is None else img


def parse_images(raw: Any) -> tuple[list[RawImage], int]:
    """The /images/json listing, decoded JSON or its undecoded body (bytes)."""
    if isinstance(raw, (bytes, bytearray)):
        raw = json.loads(raw, object_hook=_image_hook)
    out: list[RawImage] = []
    skipped = 0
    seen: set[str] = set()
    for item in as_list(raw):
        img = item if type(item) is RawImage else _raw_image(item)
        if img is None or img.id in seen:
            skipped += 1
            continue
        seen.add(img.id)
        out.append(img)
    return out, skipped


_REGISTRIES: dict[str, str] = {}  # one string per registry, not one per image


def registry_host(reference: str) -> str:
    """The registry host a reference names, with Docker's rules (a first path component with
    a `.` or `:`, or `localhost`); '' for a plain name."""
    name = reference.split("@", 1)[0]
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host = first.lower()
        if len(_REGISTRIES) < 4096:
            return _REGISTRIES.setdefault(host, host)
        return host
    return ""


def registry_of(reference: str) -> str:
    """The registry of an image reference: the host it names, else docker.io."""
    return registry_host(reference) or "docker.io"


def image_registry(image: RawImage) -> str:
    """Where an image came from or goes to: the registry of its RepoDigests (the record of a
    pull or push), else of the first tag (sorted) that names a registry host, else docker.io
    for an image with only plain names, else none."""
    if image.digest_registry:
        return image.digest_registry
    for tag in image.tags:
        host = registry_host(tag)
        if host:
            return host
    return "docker.io" if image.tags else "none"


def split_reference(reference: str) -> tuple[str, str]:
    """'host:5000/a/b:v1' -> ('host:5000/a/b', 'v1'); a missing tag reads as ''."""
    repo, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:
        return reference, ""
    return repo, tag


def layer_chain(
    inspect: Any, history: Any, image_size: int, empty_layers: Sequence[bool] | None = None
) -> LayerChain:
    """Chain IDs from the image's diff IDs and layer sizes from its history.

    `/images/{id}/history` lists each build step (newest first) with the size of the layer it
    made, 0 for a step that made none, and 0 too for a real layer of 0 bytes. Where the image
    config's `empty_layer` flags are known (`empty_layers`, one per entry, oldest first) the
    entries that made layers are exactly those not flagged. Otherwise every way of taking the
    layers from the entries in order, every non-zero one among them, is tried (`align`): what
    all of them agree on is known, and the history is kept for `LayerSizes` to align again
    with what other images tell. A history that fits no way, or does not add up to the image
    size, tells nothing.
    """
    diff_ids = [
        d for d in as_list(as_dict(as_dict(inspect).get("RootFS")).get("Layers")) if isinstance(d, str)
    ]
    chain = chain_ids(diff_ids)
    n = len(diff_ids)
    unknown: list[int | None] = [0 if d == EMPTY_LAYER else None for d in diff_ids]
    # History comes newest first.
    steps = [max(0, as_int(as_dict(h).get("Size"))) for h in reversed(as_list(history))]
    if image_size == 0:  # sizes are not negative
        return LayerChain(chain=chain, sizes=(0,) * n)
    if sum(steps) != image_size:
        return LayerChain(chain=chain, sizes=tuple(unknown))
    if empty_layers is not None and len(empty_layers) == len(steps):
        made = [z for z, empty in zip(steps, empty_layers, strict=True) if not empty]
        if len(made) == n and all(u is None or z == 0 for u, z in zip(unknown, made, strict=True)):
            return LayerChain(chain=chain, sizes=tuple(made))
    found = align(steps, n, unknown)
    if found is None:
        return LayerChain(chain=chain, sizes=tuple(unknown))
    sizes = tuple(next(iter(s)) if len(s) == 1 else None for s in found.sizes)
    return LayerChain(chain=chain, sizes=sizes, steps=tuple(steps) if None in sizes else ())


def infer_sizes(chains: Mapping[str, LayerChain], image_sizes: Mapping[str, int]) -> dict[str, int]:
    """Size of each chain ID that the histories and the image sizes settle (`LayerSizes`)."""
    solved = LayerSizes(chains, image_sizes)
    known = {}
    for c in solved.parent:
        size = solved.layer(c)
        if size is not None:
            known[c] = size
    return known


def top_level(images: Iterable[RawImage]) -> set[str]:
    images = list(images)
    parents = {i.parent_id for i in images if i.parent_id}
    return {i.id for i in images if i.tags or i.has_digest or i.id not in parents}


def classify(image: RawImage, containers: int, parents: set[str]) -> str:
    """Exclusive states; precedence in_use > intermediate > dangling > unused."""
    if containers > 0:
        return "in_use"
    if not image.tags:
        # Docker hides untagged parents from `docker images` unless they carry a digest.
        return "intermediate" if image.id in parents and not image.has_digest else "dangling"
    return "unused"


@dataclass(frozen=True)
class Sizes:
    unique: dict[str, int | None]
    usage: DiskUsage | None
    unknown: int  # images whose unique size could not be known


def sizes_from_layers(
    images: Sequence[RawImage], chains: Mapping[str, LayerChain], containers: Counter[str]
) -> Sizes:
    """API 1.41: compute what `docker system df` would say from each image's layer chain.

    No single layer size is needed where a sum of them is known: an image's UNIQUE SIZE is its
    Size minus the cumulative size of its deepest shared layer, and Images SIZE is a sum over
    the distinct layers that, written in cumulative sizes, needs only the top of each
    top-level image (its Size) and the layers where their chains part (`LayerSizes`)."""
    tops = top_level(images)
    image_sizes = {i.id: i.size for i in images}
    chains = {k: v for k, v in chains.items() if k in image_sizes}
    solved = LayerSizes(chains, image_sizes)
    refs: Counter[str] = Counter()
    for iid in tops:
        if iid in chains:
            refs.update(set(chains[iid].chain))
    unique: dict[str, int | None] = {}
    deepest_shared: dict[str, str] = {}
    unknown = 0
    for img in images:
        lc = chains.get(img.id)
        if lc is None:
            unique[img.id] = None
            unknown += 1
            continue
        self_ref = 1 if img.id in tops else 0
        shared = ROOT  # an image holding c holds every layer below it: the shared ones are a prefix
        for c in lc.chain:
            if refs[c] - self_ref <= 0:
                break
            shared = c
        deepest_shared[img.id] = shared
        below = solved.cumulative(shared)
        if below is None:
            unique[img.id] = None
            unknown += 1
        else:
            unique[img.id] = min(img.size, max(0, img.size - below))
    usage = None
    in_use = [i for i in images if i.id in tops and containers.get(i.id, 0) > 0]
    if all(t in chains for t in tops):
        total = solved.sum_of_layers(refs)
        if total is not None:
            if all(unique[i.id] is not None for i in in_use):
                used_unique: int | None = sum(unique[i.id] or 0 for i in in_use)
            else:  # each unknown alone, but perhaps not their sum
                shared_sum = solved.evaluate(Counter(deepest_shared[i.id] for i in in_use))
                used_unique = None if shared_sum is None else sum(i.size for i in in_use) - shared_sum
            if used_unique is not None:
                usage = DiskUsage(used=total, reclaimable=min(total, max(0, total - used_unique)))
    return Sizes(unique=unique, usage=usage, unknown=unknown)


def sizes_from_df(images: Sequence[RawImage], df: Any, containers: Counter[str]) -> Sizes:
    """API 1.42+: the engine's own `/system/df?type=image` numbers (legacy or 1.52 shape)."""
    df = as_dict(df)
    usage_obj = df.get("ImageUsage")
    items = as_list(df.get("Images"))
    if isinstance(usage_obj, dict):
        items = as_list(usage_obj.get("Items")) or items
    shared: dict[str, int] = {}
    for item in map(as_dict, items):
        iid, s = as_str(item.get("Id")), as_int(item.get("SharedSize"), -1)
        if iid and s >= 0:
            shared[iid] = s
    tops = top_level(images)
    unique: dict[str, int | None] = {}
    unknown = 0
    for img in images:
        if img.id not in tops:
            unique[img.id] = 0
        elif img.id in shared:
            unique[img.id] = max(0, img.size - shared[img.id])
        else:
            unique[img.id] = None
            unknown += 1
    usage = None
    if isinstance(usage_obj, dict) and "TotalSize" in usage_obj:
        usage = DiskUsage(
            used=max(0, as_int(usage_obj.get("TotalSize"))),
            reclaimable=max(0, as_int(usage_obj.get("Reclaimable"))),
        )
    elif "LayersSize" in df:
        total = max(0, as_int(df.get("LayersSize")))
        in_use = sum(unique[i.id] or 0 for i in images if i.id in tops and containers.get(i.id, 0) > 0)
        usage = DiskUsage(used=total, reclaimable=max(0, total - in_use))
    return Sizes(unique=unique, usage=usage, unknown=unknown)


def build_images(images: Sequence[RawImage], sizes: Sizes, containers: Counter[str]) -> tuple[Image, ...]:
    parents = {i.parent_id for i in images if i.parent_id}
    out = []
    for img in images:
        n = containers.get(img.id, 0)
        out.append(
            Image(
                id=img.id,
                tags=img.tags,
                parent_id=img.parent_id,
                created=img.created,
                size=img.size,
                unique_size=sizes.unique.get(img.id),
                containers=n,
                state=classify(img, n, parents),
                registry=image_registry(img),
            )
        )
    return tuple(sorted(out, key=lambda i: (-i.size, i.id)))
