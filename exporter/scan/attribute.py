"""The attribution: a store's layout and this scan's results -> the scan's snapshot.

No I/O and no layout knowledge: what each result measures is in its key (Part), whose it is
in the layout's records; every byte lands in exactly one top-level dir of the root and, in
the layer area, with exactly one owner.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from exporter.memo import Derived
from exporter.model import (
    CONTENT_KINDS,
    EMPTY,
    ContainerScan,
    EngineSnapshot,
    ImageScan,
    LayerScan,
    OrphanDir,
    ScanSnapshot,
    Usage,
    VolumeScan,
    total,
)
from exporter.scan.results import Reads, Results
from exporter.stores.inventory import AreaDir, Key, Owner, Part, StoreLayout

T = TypeVar("T")


_ImagePart = tuple[tuple[LayerScan, ...], Usage]


@dataclass(frozen=True)
class _Tops:
    """A settled chunk summed by top-level dir of the root."""

    usage: dict[str, Usage]
    errors: int


@dataclass(frozen=True)
class _AreaPart:
    """The layer area's dirs but image layers: owners' and orphans' figures from the settled
    results, and the dirs whose figures are this scan's (summed every scan)."""

    owners: dict[Owner, Usage]
    orphans: tuple[OrphanDir, ...]
    live: tuple[AreaDir, ...]


class Attribution:
    """Builds snapshots. What is derived from the settled results alone (exporter.scan.results)
    is last scan's answer while the layout's records and those results are the same objects: a
    rescan sums only what it measured itself."""

    def __init__(self) -> None:
        self._image_part: Derived[_ImagePart] = Derived()
        self._tops: list[Derived[_Tops]] = []
        self._area: Derived[_AreaPart] = Derived()
        self._content: Derived[tuple[dict[str, Usage], tuple[tuple[Key, str], ...]]] = Derived()
        self._images: Derived[tuple[ImageScan, ...]] = Derived()

    def snapshot(
        self,
        layout: StoreLayout,
        root_host: str,
        engine: EngineSnapshot,
        results: Results | Mapping[Key, Usage],
        walks: Mapping[str, int],
        cached_layers: int,
    ) -> ScanSnapshot:
        r = results if isinstance(results, Results) else Results(results)
        tops = self._settled_tops(layout, r)
        parts: dict[str, list[Usage]] = defaultdict(list)
        errors = sum(t.errors for t in tops)
        for key, usage in r.live.items():
            top = layout.top_of(key)
            if top is not None:
                parts[top].append(usage)
            errors += usage.errors
        for t in tops:
            for top, usage in t.usage.items():
                parts[top].append(usage)
        root_dirs = {name: total(parts.get(name, ())) for name in layout.top_dirs}

        owners: dict[str, Usage] = {}
        layers: tuple[LayerScan, ...] = ()
        orphans: list[OrphanDir] = []
        if layout.attribution and layout.area is not None:
            layers, image_total = self._image_part_of(layout, r, fresh=walks.get("layer", 0) > 0)
            where = layout.area.host or os.path.join(root_host, layout.area.rel)
            area = self._area.get(
                lambda: _area_part(layout, r, where), layout.area_dirs, *r.settled, key=where
            )
            acc: dict[Owner, list[Usage]] = {owner: [] for owner in layout.owners}
            acc[Owner.IMAGE].append(image_total)
            for owner, usage in area.owners.items():
                acc[owner].append(usage)
            orphans.extend(area.orphans)
            for d in area.live:
                assert d.owner is not None
                u = _area_dir(r, d)
                acc[d.owner].append(u)
                if d.owner is Owner.ORPHAN:
                    orphans.append(OrphanDir(d.name, os.path.join(where, d.name), u))
            owners = {str(owner): total(us) for owner, us in acc.items()}

        known = {c.id: c for c in engine.containers}
        containers = []
        for cdir in layout.containers:
            ct = known.get(cdir.id)
            store_id = layout.writable.get(cdir.id)
            rw = r.get(Key(Part.WRITABLE, store_id)) if store_id is not None else None
            containers.append(
                ContainerScan(
                    id=cdir.id,
                    name=ct.name if ct else cdir.id[:12],
                    image=ct.image if ct else "",
                    state=ct.state if ct else "unknown",
                    rw=rw,
                    logs=r.get(Key(Part.LOGS, cdir.id), EMPTY),
                    # What the engine's SizeRw counts on this store (docker system df's figure).
                    size_rw=None
                    if rw is None
                    else (rw.disk_bytes if layout.rw_allocated else rw.apparent_bytes),
                )
            )
        vols = {v.name: v for v in engine.volumes}
        volumes = []
        for vdir in layout.volumes:
            v = vols.get(vdir.name)
            data = r.get(Key(Part.VOLUME_DATA, vdir.name), EMPTY)
            volumes.append(
                VolumeScan(
                    name=vdir.name,
                    driver=v.driver if v else "local",
                    containers=v.containers if v else 0,
                    data=data,
                    total=data + (r.get(Key(Part.VOLUME_REST, vdir.name), EMPTY)),
                )
            )
        content: dict[str, Usage] = {}
        if layout.content:
            settled_kinds, live_keys = self._content.get(
                lambda: _content_part(layout, r), layout.content, *r.settled
            )
            acc_kinds: dict[str, list[Usage]] = {kind: [u] for kind, u in settled_kinds.items()}
            for key, kind in live_keys:
                usage = r.get(key)
                if usage is not None:
                    acc_kinds.setdefault(kind, []).append(usage)
            content = {kind: total(acc_kinds.get(kind, ())) for kind in CONTENT_KINDS}
        images: tuple[ImageScan, ...] = ()
        if layout.image_content:  # a store that keeps images twice: each image's two copies
            images = self._memo(
                self._images,
                lambda rd: _images(layout, rd),
                r,
                layout.image_content,
                layout.image_dirs,
                layout.layer_dirs,
                layout.area_dirs,
            )
        return ScanSnapshot(
            root_dir=root_host,
            driver=layout.driver,
            attribution=layout.attribution,
            attribution_reason=layout.attribution_reason,
            root_dirs=root_dirs,
            owners=owners,
            layers=layers,
            containers=tuple(sorted(containers, key=_biggest_container)),
            volumes=tuple(sorted(volumes, key=lambda v: (-v.total.disk_bytes, v.name))),
            orphans=tuple(sorted(orphans, key=lambda o: (-o.usage.disk_bytes, o.name))),
            walks=dict(walks),
            cached_layers=cached_layers,
            skipped=layout.skipped,
            errors=errors,
            content=content,
            store=layout.reader,
            read_errors=dict(layout.read_errors),
            images=images,
        )

    def _image_part_of(self, layout: StoreLayout, r: Results, fresh: bool) -> _ImagePart:
        """The image layers, biggest first, and their dirs' total. Their results are settled
        (recorded, or walked once and cached): while the layout's records are the same
        objects and no layer was walked this scan, last scan's answer holds."""
        if fresh:  # a layer walked this scan: its figures may differ from an earlier walk's
            self._image_part.forget()
        return self._image_part.get(
            lambda: _image_part(layout, r), layout.layers, layout.image_layers, layout.layer_dirs
        )

    def _settled_tops(self, layout: StoreLayout, r: Results) -> list[_Tops]:
        while len(self._tops) < len(r.settled):
            self._tops.append(Derived())
        areas = tuple(sorted(layout.areas.items()))  # where each part's results lie
        return [
            memo.get(lambda c=chunk: _tops(layout, c), chunk, key=areas)  # type: ignore[misc]
            for memo, chunk in zip(self._tops, r.settled, strict=False)
        ]

    @staticmethod
    def _memo(memo: Derived[T], compute: Callable[[Reads], T], r: Results, *inputs: object) -> T:
        """A value derived from the layout's records and the results: kept only when it read
        settled results alone (a live one is this scan's)."""
        reads = Reads(r)
        value = memo.get(lambda: compute(reads), *inputs, *r.settled)
        if reads.live:
            memo.forget()
        return value


def _tops(layout: StoreLayout, chunk: Mapping[Key, Usage]) -> _Tops:
    parts: dict[str, list[Usage]] = defaultdict(list)
    errors = 0
    for key, usage in chunk.items():
        top = layout.top_of(key)
        if top is not None:
            parts[top].append(usage)
        errors += usage.errors
    return _Tops({top: total(us) for top, us in parts.items()}, errors)


def _area_keys(d: AreaDir) -> tuple[Key, ...]:
    parts = d.parts
    return (Key(Part.AREA_DIR, d.name),) if parts is None else (Key(parts[0], d.name), Key(parts[1], d.name))


def _area_part(layout: StoreLayout, r: Results, where: str) -> _AreaPart:
    acc: dict[Owner, list[Usage]] = defaultdict(list)
    orphans, live = [], []
    for d in layout.area_dirs:
        if d.owner is None:
            continue
        keys = _area_keys(d)
        if any(k in r.live for k in keys):
            live.append(d)
            continue
        u = total(r.get(k, EMPTY) for k in keys)
        acc[d.owner].append(u)
        if d.owner is Owner.ORPHAN:
            orphans.append(OrphanDir(d.name, os.path.join(where, d.name), u))
    return _AreaPart({o: total(us) for o, us in acc.items()}, tuple(orphans), tuple(live))


def _content_part(layout: StoreLayout, r: Results) -> tuple[dict[str, Usage], tuple[tuple[Key, str], ...]]:
    """The content store's settled blobs summed by kind, and the keys measured this scan."""
    acc: dict[str, list[Usage]] = defaultdict(list)
    live = []
    for key, kind in layout.content.items():
        if key in r.live:
            live.append((key, kind))
            continue
        usage = r.get(key)
        if usage is not None:
            acc[kind].append(usage)
    return {kind: total(us) for kind, us in acc.items()}, tuple(live)


def _images(layout: StoreLayout, r: Reads) -> tuple[ImageScan, ...]:
    others = {d.name: d for d in layout.area_dirs}
    images = []
    for image, keys in layout.image_content.items():
        dirs = [n for n in layout.image_dirs.get(image, ()) if n in layout.layer_dirs or n in others]
        unpacked = total(
            _layer_dir(r, n) if n in layout.layer_dirs else _area_dir(r, others[n]) for n in dirs
        )
        blobs = [r.get(k, _MISSING) for k in keys]
        images.append(ImageScan(image, total(u for u in blobs if u is not _MISSING), unpacked))
    return tuple(sorted(images, key=lambda i: (-(i.content.disk_bytes + i.unpacked.disk_bytes), i.id)))


def _image_part(layout: StoreLayout, r: _Lookup) -> _ImagePart:
    users: dict[str, int] = defaultdict(int)
    for chain in layout.image_layers.values():
        for cid in set(chain):
            users[cid] += 1
    layers = [
        LayerScan(
            chain_id=x.chain_id,
            diff_id=x.diff_id,
            cache_id=x.store_id,
            size=x.size or 0,
            diff=r.get(Key(Part.LAYER, x.store_id), EMPTY),
            total=_layer_dir(r, x.store_id),
            images=users.get(x.chain_id, 0),
        )
        for x in layout.layers
    ]
    return (
        tuple(sorted(layers, key=lambda x: (-x.total.disk_bytes, x.diff_id))),
        total(_layer_dir(r, sid) for sid in layout.layer_dirs),
    )


class _Lookup(Protocol):
    def get(self, key: Key, default: Usage) -> Usage: ...


_MISSING = Usage(0, 0, 0, 0)  # an identity apart from EMPTY: "no such result"


def _layer_dir(r: _Lookup, store_id: str) -> Usage:
    """A layer's whole dir: its content and the rest, walked apart."""
    return r.get(Key(Part.LAYER, store_id), EMPTY) + r.get(Key(Part.LAYER_REST, store_id), EMPTY)


def _area_dir(r: _Lookup, d: AreaDir) -> Usage:
    return total(r.get(k, EMPTY) for k in _area_keys(d))


def _biggest_container(c: ContainerScan) -> tuple[int, str]:
    return -(c.logs.disk_bytes + (c.rw.disk_bytes if c.rw else 0)), c.id
