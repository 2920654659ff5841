"""The attribution: a store's layout and this scan's results -> the scan's snapshot.

No I/O and no layout knowledge: what each result measures is in its key (Part), whose it is
in the layout's records; every byte lands in exactly one top-level dir of the root and, in
the layer area, with exactly one owner.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping

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
from exporter.stores.inventory import AreaDir, Key, Owner, Part, StoreLayout

_ImagePart = tuple[tuple[LayerScan, ...], Usage]


class Attribution:
    """Builds snapshots; remembers the image layers' part, which is last scan's answer unless
    a layer was walked or the layout's listings changed (a reader hands back the same objects
    while they have not)."""

    def __init__(self) -> None:
        self._image_part: Derived[_ImagePart] = Derived()

    def snapshot(
        self,
        layout: StoreLayout,
        root_host: str,
        engine: EngineSnapshot,
        results: Mapping[Key, Usage],
        walks: Mapping[str, int],
        cached_layers: int,
    ) -> ScanSnapshot:
        r = results
        parts: dict[str, list[Usage]] = defaultdict(list)
        for key, usage in r.items():
            top = layout.top_of(key)
            if top is not None:
                parts[top].append(usage)
        root_dirs = {name: total(parts.get(name, ())) for name in layout.top_dirs}

        owners: dict[str, Usage] = {}
        layers: tuple[LayerScan, ...] = ()
        orphans: list[OrphanDir] = []
        if layout.attribution and layout.area is not None:
            layers, image_total = self._image_part_of(layout, r, fresh=walks.get("layer", 0) > 0)
            acc: dict[Owner, list[Usage]] = {owner: [] for owner in layout.owners}
            acc[Owner.IMAGE].append(image_total)
            for d in layout.area_dirs:
                if d.owner is None:
                    continue
                u = _area_dir(r, d)
                acc[d.owner].append(u)
                if d.owner is Owner.ORPHAN:
                    where = layout.area.host or os.path.join(root_host, layout.area.rel)
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
                    total=data + r.get(Key(Part.VOLUME_REST, vdir.name), EMPTY),
                )
            )
        content: dict[str, list[Usage]] = defaultdict(list)
        for key, kind in layout.content.items():
            usage = r.get(key)
            if usage is not None:
                content[kind].append(usage)
        images = []
        if layout.image_content:  # a store that keeps images twice: each image's two copies
            others = {d.name: d for d in layout.area_dirs}
            for image, keys in layout.image_content.items():
                dirs = [n for n in layout.image_dirs.get(image, ()) if n in layout.layer_dirs or n in others]
                unpacked = total(
                    _layer_dir(r, n) if n in layout.layer_dirs else _area_dir(r, others[n]) for n in dirs
                )
                images.append(ImageScan(image, total(r[k] for k in keys if k in r), unpacked))
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
            errors=sum(u.errors for u in r.values()),
            content={kind: total(content.get(kind, ())) for kind in CONTENT_KINDS} if layout.content else {},
            store=layout.reader,
            read_errors=dict(layout.read_errors),
            images=tuple(
                sorted(images, key=lambda i: (-(i.content.disk_bytes + i.unpacked.disk_bytes), i.id))
            ),
        )

    def _image_part_of(self, layout: StoreLayout, r: Mapping[Key, Usage], fresh: bool) -> _ImagePart:
        """The image layers, biggest first, and their dirs' total."""
        if fresh:  # a layer walked this scan: its figures may differ from an earlier walk's
            self._image_part.forget()
        return self._image_part.get(
            lambda: _image_part(layout, r), layout.layers, layout.image_layers, layout.layer_dirs
        )


def _image_part(layout: StoreLayout, r: Mapping[Key, Usage]) -> _ImagePart:
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


def _layer_dir(r: Mapping[Key, Usage], store_id: str) -> Usage:
    """A layer's whole dir: its content and the rest, walked apart."""
    return r.get(Key(Part.LAYER, store_id), EMPTY) + r.get(Key(Part.LAYER_REST, store_id), EMPTY)


def _area_dir(r: Mapping[Key, Usage], d: AreaDir) -> Usage:
    parts = d.parts
    if parts is None:
        return r.get(Key(Part.AREA_DIR, d.name), EMPTY)
    return r.get(Key(parts[0], d.name), EMPTY) + r.get(Key(parts[1], d.name), EMPTY)


def _biggest_container(c: ContainerScan) -> tuple[int, str]:
    return -(c.logs.disk_bytes + (c.rw.disk_bytes if c.rw else 0)), c.id
