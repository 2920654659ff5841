"""The attribution: a store's layout and this scan's results -> the scan's snapshot.

No I/O and no layout knowledge: what each result measures is in its key (Part), whose it is
in the layout's records; every byte lands in exactly one top-level dir of the root and, in
the layer area, with exactly one owner.
"""

from __future__ import annotations

import operator
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import chain as _chain
from operator import itemgetter

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
    make_usage,
    total,
)
from exporter.records import maker
from exporter.scan.results import Results
from exporter.stores.inventory import AreaDir, Key, Owner, Part, StoreLayout


@dataclass(frozen=True)
class _ImagePart:
    layers: tuple[LayerScan, ...]  # biggest first
    total: Usage  # their dirs'
    dirs: dict[str, Usage]  # each layer dir's, by store id


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
    dirs: dict[str, Usage]  # each settled dir's figure, by name


class Attribution:
    """Builds snapshots. What is derived from the settled results alone (exporter.scan.results)
    is last scan's answer while the layout's records and those results are the same objects: a
    rescan sums only what it measured itself."""

    def __init__(self) -> None:
        self._image_part: Derived[_ImagePart] = Derived()
        self._tops: list[Derived[_Tops]] = []
        self._area: Derived[_AreaPart] = Derived()
        self._content: Derived[tuple[dict[str, Usage], tuple[tuple[Key, str], ...]]] = Derived()
        self._images: Derived[tuple[tuple[ImageScan, ...], bool]] = Derived()
        self._last: tuple[_Inputs, ScanSnapshot] | None = None  # the last snapshot, from what

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
        inputs = _Inputs(layout, root_host, engine, r.live, r.settled, walks, cached_layers)
        if self._last is not None and self._last[0].same(inputs):
            return self._last[1]  # a rescan that found everything as it was: last scan's snapshot
        snap = self._snapshot(layout, root_host, engine, r, walks, cached_layers)
        self._last = (inputs, snap)
        return snap

    def _snapshot(
        self,
        layout: StoreLayout,
        root_host: str,
        engine: EngineSnapshot,
        r: Results,
        walks: Mapping[str, int],
        cached_layers: int,
    ) -> ScanSnapshot:
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
        image_part, area, live_dirs = None, None, {}
        if layout.attribution and layout.area is not None:
            image_part = self._image_part_of(layout, r, fresh=walks.get("layer", 0) > 0)
            layers = image_part.layers
            where = layout.area.host or os.path.join(root_host, layout.area.rel)
            area = self._area.get(
                lambda: _area_part(layout, r, where), layout.area_dirs, *r.settled, key=where
            )
            if not any(r.settled):  # nothing settled: every figure is this scan's, none kept
                self._area.forget()
            acc: dict[Owner, list[Usage]] = {owner: [] for owner in layout.owners}
            acc[Owner.IMAGE].append(image_part.total)
            for owner, usage in area.owners.items():
                acc[owner].append(usage)
            orphans.extend(area.orphans)
            for d in area.live:
                assert d.owner is not None
                u = live_dirs[d.name] = _area_dir(r, d)
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
            if not any(r.settled):
                self._content.forget()
            acc_kinds: dict[str, list[Usage]] = {kind: [u] for kind, u in settled_kinds.items()}
            for key, kind in live_keys:
                usage = r.get(key)
                if usage is not None:
                    acc_kinds.setdefault(kind, []).append(usage)
            content = {kind: total(acc_kinds.get(kind, ())) for kind in CONTENT_KINDS}
        images: tuple[ImageScan, ...] = ()
        if layout.image_content and image_part is not None and area is not None:
            # A store that keeps images twice: each image's two copies. Last scan's while the
            # figures it sums are (a dir summed every scan makes it this scan's).
            images, of_live = self._images.get(
                lambda: _images(layout, image_part, area, live_dirs, r),
                layout.image_content,
                layout.image_dirs,
                image_part,
                area,
                *r.settled,
            )
            if of_live:
                self._images.forget()
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


@dataclass(frozen=True, slots=True, eq=False)
class _Inputs:
    """What a snapshot is made from: the same inputs, the same snapshot."""

    layout: StoreLayout
    root_host: str
    engine: EngineSnapshot
    live: Mapping[Key, Usage]
    settled: tuple[Mapping[Key, Usage], ...]
    walks: Mapping[str, int]
    cached_layers: int

    def same(self, new: _Inputs) -> bool:
        """Whether `new` would make the snapshot these made: each input the same object or equal
        (the settled chunks by identity, as Results keeps them; of the engine's snapshot, only
        the containers and volumes a snapshot reads)."""
        old, e0, e1 = self, self.engine, new.engine
        return (
            old.cached_layers == new.cached_layers
            and old.root_host == new.root_host
            and len(old.settled) == len(new.settled)
            and all(map(operator.is_, old.settled, new.settled))
            and old.walks == new.walks
            and (e0 is e1 or (e0.containers == e1.containers and e0.volumes == e1.volumes))
            and old.live == new.live
            and (old.layout is new.layout or old.layout == new.layout)
        )


def _tops(layout: StoreLayout, chunk: Mapping[Key, Usage]) -> _Tops:
    tops = {layout.areas.get(p, _NOWHERE) for p in set(map(_part, chunk))}  # the parts in C: 20,000 keys
    if len(tops) == 1 and _NOWHERE not in tops:  # the common case: one dir holds the whole chunk
        (top,) = tops
        whole = total(chunk.values())
        return _Tops({} if top is None else {top: whole}, whole.errors)
    by_part: dict[Part, list[Usage]] = defaultdict(list)
    parts: dict[str, list[Usage]] = defaultdict(list)
    for key, usage in chunk.items():
        if key.part in layout.areas:  # most: a layer area's, one top dir for the part
            by_part[key.part].append(usage)
        else:
            top = layout.top_of(key)
            if top is not None:
                parts[top].append(usage)
    for part, us in by_part.items():
        top = layout.areas[part]
        if top is not None:
            parts[top].extend(us)
    summed = {top: total(us) for top, us in parts.items()}
    errors = sum(sum(map(_errors, us)) for us in (*by_part.values(), *parts.values()))
    return _Tops(summed, errors)


def _area_keys(d: AreaDir) -> tuple[Key, ...]:
    parts = d.parts
    return (Key(Part.AREA_DIR, d.name),) if parts is None else (Key(parts[0], d.name), Key(parts[1], d.name))


def _area_part(layout: StoreLayout, r: Results, where: str) -> _AreaPart:
    acc: dict[Owner, list[Usage]] = defaultdict(list)
    orphans, live = [], []
    dirs: dict[str, Usage] = {}
    for d in layout.area_dirs:
        if d.owner is None:
            continue
        keys = _area_keys(d)
        if any(k in r.live for k in keys):
            live.append(d)
            continue
        u = dirs[d.name] = total(r.get(k, EMPTY) for k in keys)
        acc[d.owner].append(u)
        if d.owner is Owner.ORPHAN:
            orphans.append(OrphanDir(d.name, os.path.join(where, d.name), u))
    return _AreaPart({o: total(us) for o, us in acc.items()}, tuple(orphans), tuple(live), dirs)


def _content_part(layout: StoreLayout, r: Results) -> tuple[dict[str, Usage], tuple[tuple[Key, str], ...]]:
    """The content store's settled blobs summed by kind, and the keys measured this scan."""
    acc: dict[str, list[Usage]] = defaultdict(list)
    live = []
    measured, get = r.live, r.flat().get
    for key, kind in layout.content.items():
        if key in measured:
            live.append((key, kind))
            continue
        usage = get(key)
        if usage is not None:
            acc[kind].append(usage)
    return {kind: total(us) for kind, us in acc.items()}, tuple(live)


def _images(
    layout: StoreLayout, layers: _ImagePart, area: _AreaPart, live: Mapping[str, Usage], r: Results
) -> tuple[tuple[ImageScan, ...], bool]:
    """Each image's blobs and unpacked dirs; and whether a dir summed every scan is one."""
    images = []
    of_live = False
    get = r.flat().get  # a plain dict's lookups: every image's blobs
    layer_dir = layers.dirs.get
    for image, keys in layout.image_content.items():
        names = layout.image_dirs.get(image, ())
        unpacked = list(map(layer_dir, names))  # the common case: all image layers, in C
        if None in unpacked:
            unpacked = []
            for n in names:
                u = layer_dir(n) or area.dirs.get(n)
                if u is None and n in live:
                    u, of_live = live[n], True
                if u is not None:
                    unpacked.append(u)
        blobs = list(filter(None, map(get, keys)))  # the blobs there (a Usage is never falsy)
        images.append(ImageScan(image, total(blobs), total(unpacked)))
    biggest = sorted(images, key=lambda i: (-(i.content.disk_bytes + i.unpacked.disk_bytes), i.id))
    return tuple(biggest), of_live


def _image_part(layout: StoreLayout, r: Results) -> _ImagePart:
    users = Counter(_chain.from_iterable(map(set, layout.image_layers.values())))  # in C: 10,000 chain IDs
    get = r.flat().get  # 20,000 lookups: a plain dict's
    content, rest, present = Part.LAYER, Part.LAYER_REST, layout.layer_dirs
    dirs: dict[str, Usage] = {}
    layers, smaller = [], []
    for x in layout.layers:
        sid = x.store_id
        if sid in present:
            # Plain tuples look the Keys up: equal and hashed alike, without a Key made for each.
            a, b = get((content, sid)), get((rest, sid))  # type: ignore[call-overload]
            if a is not None and b is not None:  # Usage.__add__ inline: ten thousand a first scan
                whole = make_usage((a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] or b[4]))
            else:
                whole = a or b or EMPTY
            dirs[sid] = whole
        else:
            a, whole = None, EMPTY
        layers.append(
            _layer_scan(x.chain_id, x.diff_id, sid, x.size or 0, a or EMPTY, whole, users.get(x.chain_id, 0))
        )
        smaller.append(-whole.disk_bytes)
    # Biggest first, ties in the layout's order: a stable sort by one int (by plain tuples of
    # the size and the diff ID it took three times as long: a host's layers share a few sizes).
    order = sorted(range(len(layers)), key=smaller.__getitem__)
    return _ImagePart(tuple([layers[i] for i in order]), total(dirs.values()), dirs)


_layer_scan = maker(LayerScan)
_errors = itemgetter(3)  # Usage.errors, read in C over tens of thousands
_part = itemgetter(0)  # Key.part
_NOWHERE = object()  # a part no layout area names (its results' top dir is in their keys)


def _area_dir(r: Results, d: AreaDir) -> Usage:
    return total(r.get(k, EMPTY) for k in _area_keys(d))


def _biggest_container(c: ContainerScan) -> tuple[int, str]:
    return -(c.logs.disk_bytes + (c.rw.disk_bytes if c.rw else 0)), c.id
