"""The scan's parts alone, on hand-made store layouts: the cache's expiry rule, the plan
(layout + cache -> walks), the attribution (layout + results -> snapshot) and the reader
registry. The whole pass against du is test_scan_unit's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from exporter.model import EMPTY, Container, EngineInfo, EngineSnapshot, ScanSnapshot, Usage, total
from exporter.scan.attribute import Attribution
from exporter.scan.cache import UsageCache
from exporter.scan.plan import BYTES_PER_FILE, PlanMemo, make_plan
from exporter.scan.results import Results
from exporter.sources.du import one_inode
from exporter.stores import READERS, reader_for, register
from exporter.stores.containerd import ContainerdReader
from exporter.stores.inventory import (
    OWNERS,
    AreaDir,
    ContainerDir,
    Key,
    LayerArea,
    LayerDir,
    MetaDir,
    Owner,
    Part,
    Reuse,
    StoreLayout,
    VolumeDir,
)
from exporter.stores.overlay2 import Overlay2Reader

U = Usage(4096, 100, 3, 0, False)


def u(n: int) -> Usage:
    return Usage(4096 * n, 100 * n, n, 0, False)


# --- the cache -------------------------------------------------------------------------------


def test_cache_keeps_only_what_a_scan_read_or_wrote() -> None:
    cache = UsageCache()
    a, b, c = Key(Part.LAYER, "a"), Key(Part.LAYER, "b"), Key(Part.AREA_DIR, "c")
    cache.put(a, U)
    cache.put(b, U)
    cache.put(c, U, stamp=(1, 2))
    assert cache.get(a) is None  # not until the scan that wrote them is over
    cache.sweep()
    assert len(cache) == 3 and cache.count(Part.LAYER) == 2
    assert cache.get(a) == U
    assert cache.get(c, (1, 3)) is None  # the dir's stamp moved: not valid, and not kept
    cache.sweep()
    assert len(cache) == 1 and cache.get(a) == U and cache.get(b) is None and cache.get(c, (1, 2)) is None
    cache.sweep()
    assert len(cache) == 1  # read again by that scan: still there
    cache.sweep()
    assert len(cache) == 0  # a scan that asked for nothing: everything gone


@pytest.mark.parametrize(
    "usage",
    [Usage(4096, 100, 3, 0, True), Usage(4096, 100, 3, 1, False), EMPTY],
    ids=["partial", "errors", "missing"],
)
def test_cache_never_keeps_an_incomplete_walk(usage: Usage) -> None:
    cache = UsageCache()
    cache.put(Key(Part.LAYER, "x"), usage)
    cache.sweep()
    assert len(cache) == 0


# --- the plan ---------------------------------------------------------------------------------


def layout_over(root: Path, **over: Any) -> StoreLayout:
    """A small attributed layout over real dirs under `root`: two layers, a writable layer,
    an init dir with a settled stamp, an orphan, a container with a log, a volume, and the
    store's metadata (a rename-only tree and a dir walked every time)."""
    area = root / "area"
    for d in ("L1/diff", "L2/diff", "W/diff", "I", "O", "meta/tree", "meta/live", "c1", "v1/_data"):
        (root / d if not d[0].isupper() else area / d).mkdir(parents=True, exist_ok=True)
    (root / "c1" / "c1-json.log").write_bytes(b"x" * 5000)
    (root / "loose").write_bytes(b"y" * 10)
    fields: dict[str, Any] = dict(
        reader="test",
        root=str(root),
        driver="testfs",
        attribution=True,
        attribution_reason="",
        area=LayerArea("area", str(area), "diff", frozenset({"diff"}), frozenset()),
        layers=(
            LayerDir("L1", "sha256:c1", "sha256:d1", "", 3 * BYTES_PER_FILE),
            LayerDir("L2", "sha256:c2", "sha256:d2", "sha256:c1", None),
            LayerDir("GONE", "sha256:c3", "sha256:d3", "sha256:c2", 10),
        ),
        layer_dirs=frozenset({"L1", "L2"}),
        image_layers={"sha256:i1": ("sha256:c1", "sha256:c2"), "sha256:i2": ("sha256:c1",)},
        area_dirs=(
            AreaDir("W", Owner.CONTAINER),
            AreaDir("I", Owner.INIT, Reuse.SETTLED),
            AreaDir("O", Owner.ORPHAN),
        ),
        writable={"c1": "W"},
        containers=(ContainerDir("c1", str(root / "c1"), (str(root / "c1" / "c1-json.log"),)),),
        volumes=(VolumeDir("v1", str(root / "v1"), str(root / "v1" / "_data"), frozenset({"_data"})),),
        meta=(MetaDir("meta/tree", Reuse.TREE), MetaDir("meta/live")),
        entries=("area", "loose"),
        itemised=frozenset({"area", "meta", "c1", "v1"}),
        top_dirs=tuple(sorted(os.listdir(root))),
        owners=OWNERS,
        areas={
            Part.LAYER: "area",
            Part.LAYER_REST: "area",
            Part.WRITABLE: "area",
            Part.WRITABLE_REST: "area",
            Part.AREA_DIR: "area",
            Part.CONTAINER: "c1",
            Part.VOLUME_DATA: "v1",
            Part.VOLUME_REST: "v1",
        },
    )
    fields.update(over)
    return StoreLayout(**fields)


def test_plan_walks_what_it_must_and_reuses_what_it_may(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()  # a top-level dir no record names: walked whole
    layout = layout_over(tmp_path)
    cache = UsageCache()
    plan = make_plan(layout, cache, hints={Key(Part.VOLUME_DATA, "v1"): 7})
    jobs = {j.key: j for j in plan.jobs}
    area = f"{tmp_path}/area"
    assert {k: j.path for k, j in jobs.items()} == {
        Key(Part.META, "other"): f"{tmp_path}/other",
        Key(Part.META, "meta/live"): f"{tmp_path}/meta/live",
        Key(Part.LAYER, "L1"): f"{area}/L1/diff",
        Key(Part.LAYER_REST, "L1"): f"{area}/L1",
        Key(Part.LAYER, "L2"): f"{area}/L2/diff",
        Key(Part.LAYER_REST, "L2"): f"{area}/L2",
        Key(Part.WRITABLE, "W"): f"{area}/W/diff",
        Key(Part.WRITABLE_REST, "W"): f"{area}/W",
        Key(Part.AREA_DIR, "I"): f"{area}/I",
        Key(Part.AREA_DIR, "O"): f"{area}/O",
        Key(Part.CONTAINER, "c1"): f"{tmp_path}/c1",
        Key(Part.VOLUME_DATA, "v1"): f"{tmp_path}/v1/_data",
        Key(Part.VOLUME_REST, "v1"): f"{tmp_path}/v1",
    }
    # A never-walked layer's cost is guessed from its recorded bytes; known costs are hints.
    assert jobs[Key(Part.LAYER, "L1")].hint == 4 and jobs[Key(Part.LAYER, "L2")].hint == 1
    assert jobs[Key(Part.VOLUME_DATA, "v1")].hint == 7 and jobs[Key(Part.CONTAINER, "c1")].hint == 0
    assert [k for k, j in jobs.items() if j.isolate] == [Key(Part.VOLUME_DATA, "v1")]
    assert jobs[Key(Part.LAYER_REST, "L1")].exclude == frozenset({"diff"})
    assert [t.key for t in plan.trees] == [Key(Part.META, "meta/tree")]
    # Single inodes are stat'ed, logs summed, without a walk.
    assert plan.known[Key(Part.ENTRY, "loose")].apparent_bytes == 10
    assert plan.known[Key(Part.ENTRY, "area")].files == 1
    assert plan.known[Key(Part.LOGS, "c1")].apparent_bytes == 5000
    assert set(plan.reusable) == {
        Key(Part.LAYER, "L1"),
        Key(Part.LAYER_REST, "L1"),
        Key(Part.LAYER, "L2"),
        Key(Part.LAYER_REST, "L2"),
        Key(Part.AREA_DIR, "I"),
    }

    # What the first scan walked and may keep comes from the cache next time; the rest again.
    plan.keep(cache, dict.fromkeys(plan.reusable, U), ok=True)
    memo = PlanMemo()
    again = make_plan(layout, cache, hints={}, memo=memo)
    assert {j.key for j in again.jobs} == set(jobs) - set(plan.reusable)
    results = again.results({})
    assert {k: results[k] for k in plan.reusable} == dict.fromkeys(plan.reusable, U)
    # The layer area's settled part is one mapping, handed over whole while the layout's
    # records are the same objects: a rescan does not visit each layer.
    assert set(again.settled) == set(plan.reusable)
    third = make_plan(layout, cache, hints={}, memo=memo)
    assert third.settled is again.settled and {j.key for j in third.jobs} == set(jobs) - set(plan.reusable)
    third.keep(cache, {}, ok=True)
    assert {k: make_plan(layout, cache, {}).results({})[k] for k in plan.reusable} == dict.fromkeys(
        plan.reusable, U
    )  # kept all along, untouched: the cache's sweep left the part whole
    relisted = layout_over(tmp_path, layers=tuple(layout.layers))  # equal, not the same
    # An equal layout: the whole last plan (PlanMemo.again); without it, the area's part is
    # told unchanged by identity alone, and made anew.
    assert make_plan(relisted, cache, {}, memo=memo).settled is third.settled
    memo.last = None
    assert make_plan(relisted, cache, {}, memo=memo).settled is not again.settled


def test_an_equal_layout_gets_the_last_plan_its_single_inodes_stated_anew(tmp_path: Path) -> None:
    """A rescan whose reader hands back an equal layout, the cache and hints as the last plan
    left them, gets that plan (PlanMemo.again): its jobs, its settled part, the cache untouched,
    its single inodes (loose files, logs) stat'ed now. Whatever else a plan depends on makes a
    new one."""
    (tmp_path / "stray").write_bytes(b"s" * 100)
    layout = layout_over(tmp_path)
    cache, memo = UsageCache(), PlanMemo()
    first = make_plan(layout, cache, {}, memo=memo)
    first.keep(cache, dict.fromkeys(first.reusable, U), ok=True)
    second = make_plan(layout, cache, {}, memo=memo)  # every settled dir a hit now: closed
    assert first.reusable and not first.again and not second.reusable and not second.again
    second.keep(cache, {}, ok=True)
    equal = layout_over(tmp_path)  # equal, not the same
    log, stray = tmp_path / "c1" / "c1-json.log", tmp_path / "stray"
    log.write_bytes(b"x" * 50_000)
    stray.write_bytes(b"s" * 20_000)
    third = make_plan(equal, cache, {}, memo=memo)
    assert third.again and third.jobs is second.jobs and third.settled is second.settled
    logs, entry = Key(Part.LOGS, "c1"), Key(Part.ENTRY, "stray")
    assert third.known[logs] == one_inode(str(log)) != second.known[logs]
    assert third.known[entry] == one_inode(str(stray)) != second.known[entry]
    assert {k: v for k, v in third.known.items() if k not in (logs, entry)} == {
        k: v for k, v in second.known.items() if k not in (logs, entry)
    }
    third.keep(cache, {}, ok=True)  # nothing read, nothing kept: the cache as it was
    fourth = make_plan(layout, cache, {}, memo=memo)
    assert fourth is third  # its single inodes as they were (one stat_inodes call): that very plan
    log.write_bytes(b"x" * 90_000)  # in place: the next one's figure is the new size
    fifth = make_plan(layout, cache, {}, memo=memo)
    assert (
        fifth.again and fifth is not third and fifth.known[logs] == one_inode(str(log)) != third.known[logs]
    )
    assert make_plan(layout, cache, {}, memo=memo) is fifth

    def primed() -> PlanMemo:
        fresh = PlanMemo()
        assert not make_plan(layout, cache, {}, memo=fresh).again
        return fresh

    assert not make_plan(layout, cache, {Key(Part.CONTAINER, "c1"): 7}, memo=primed()).again
    assert not make_plan(layout_over(tmp_path, entries=("area",)), cache, {}, memo=primed()).again
    assert not make_plan(layout, cache, {}, memo=primed(), mounted=lambda path: False).again
    memo = primed()
    stray.unlink()
    stray.mkdir()  # a top-level file turned dir: walked now
    turned = make_plan(layout, cache, {}, memo=memo)
    assert not turned.again and Key(Part.META, "stray") in {j.key for j in turned.jobs}


def test_plan_rewalks_a_settled_dir_whose_stamp_moved(tmp_path: Path) -> None:
    def links(stamp: tuple[int, int]) -> StoreLayout:
        return layout_over(tmp_path, area_dirs=(AreaDir("I", Owner.LINKS, Reuse.SETTLED, stamp),))

    cache = UsageCache()
    key = Key(Part.AREA_DIR, "I")
    assert key in make_plan(links((1, 1)), cache, {}).reusable
    cache.put(key, U, (1, 1))
    cache.sweep()
    assert key in make_plan(links((1, 1)), cache, {}).known
    assert key in {j.key for j in make_plan(links((1, 2)), cache, {}).jobs}


def test_plan_of_an_unattributed_layout_walks_every_area_dir_whole(tmp_path: Path) -> None:
    layout = layout_over(
        tmp_path, attribution=False, layers=(), layer_dirs=frozenset(), writable={},
        area_dirs=(AreaDir("L1", None), AreaDir("W", None)),
    )  # fmt: skip
    plan = make_plan(layout, UsageCache(), {})
    parts = {j.key for j in plan.jobs if j.key.part in (Part.AREA_DIR, Part.LAYER, Part.WRITABLE)}
    assert parts == {Key(Part.AREA_DIR, "L1"), Key(Part.AREA_DIR, "W")}


def test_a_group_is_one_figure_while_its_stamp_holds_and_keeps_its_members(tmp_path: Path) -> None:
    for m in ("g/a", "g/b", "g/c"):
        (tmp_path / m).mkdir(parents=True)
    members = tuple(MetaDir(f"g/{m}", Reuse.SETTLED, (i, 1)) for i, m in enumerate("abc"))

    def layout(stamp: tuple[int, int] | None, ms: tuple[MetaDir, ...] = members) -> StoreLayout:
        group = MetaDir("g", stamp=stamp, group=True, members=ms)
        return layout_over(tmp_path, meta=(group,), itemised=frozenset({"area", "meta", "c1", "v1", "g"}))

    def scan(lay: StoreLayout) -> tuple[set[str], dict[Key, Usage]]:
        plan = make_plan(lay, cache, {})
        walked = {j.key: u(2) for j in plan.jobs}
        plan.keep(cache, walked, ok=True)
        return {j.key.id for j in plan.jobs if j.key.id.startswith("g")}, {**plan.known, **walked}

    cache = UsageCache()
    walked, first = scan(layout((9, 9)))
    assert walked == {"g/a", "g/b", "g/c"}
    whole = first[Key(Part.ENTRY, "g")] + u(2) + u(2) + u(2)
    for _ in range(3):  # no member is asked for: the group's figure, as one
        walked, r = scan(layout((9, 9)))
        assert walked == set() and r[Key(Part.META, "g")] == whole and Key(Part.META, "g/a") not in r
    # A member comes: the group's stamp moved. The old members were kept all along.
    (tmp_path / "g" / "d").mkdir()
    walked, r = scan(layout(None, (*members, MetaDir("g/d", Reuse.SETTLED, (3, 1)))))
    assert walked == {"g/d"} and r[Key(Part.META, "g/a")] == u(2)
    assert Key(Part.META, "g") not in r  # unsettled: no figure for the whole, and none kept
    walked, r = scan(layout(None, members[:1]))  # two go
    assert walked == set() and set(k.id for k in r if k.id.startswith("g/")) == {"g/a"}


# --- the attribution ----------------------------------------------------------------------------


def engine_with(containers: tuple[Container, ...] = ()) -> EngineSnapshot:
    info = EngineInfo("docker", "x", "1.41", "testfs", "graphdriver", "/host/root")
    return EngineSnapshot(info=info, images=(), containers=containers, volumes=(), image_usage=None)


def results_for(layout: StoreLayout) -> dict[Key, Usage]:
    plan = make_plan(layout, UsageCache(), {})
    sizes = {job.key: u(i + 1) for i, job in enumerate(plan.jobs)}
    return {**plan.known, **sizes, **{t.key: u(50) for t in plan.trees}}


def test_attribution_puts_every_result_in_one_top_dir_and_one_owner(tmp_path: Path) -> None:
    layout = layout_over(tmp_path)
    r = results_for(layout)
    ct = Container("c1", "web", "sha256:i1", "web:1", "exited", ())
    snap = Attribution().snapshot(layout, "/host/root", engine_with((ct,)), r, {"layer": 4}, 4)

    counted = [(layout.top_of(k), v) for k, v in r.items() if k.part is not Part.LOGS]
    want = {top: sum((v for t, v in counted if t == top), EMPTY) for top in layout.top_dirs}
    assert snap.root_dirs == want
    # Logs lie inside their container's dir: a view, never added to the root's figures.
    assert snap.root_dirs["c1"] == r[Key(Part.CONTAINER, "c1")]
    assert sum(snap.root_dirs.values(), EMPTY) == sum((v for _, v in counted), EMPTY)

    def dir_of(part: Part, rest: Part, name: str) -> Usage:
        return r[Key(part, name)] + r[Key(rest, name)]

    assert set(snap.owners) == {str(o) for o in OWNERS}
    assert snap.owners["image"] == dir_of(Part.LAYER, Part.LAYER_REST, "L1") + dir_of(
        Part.LAYER, Part.LAYER_REST, "L2"
    )
    assert snap.owners["container"] == dir_of(Part.WRITABLE, Part.WRITABLE_REST, "W")
    assert snap.owners["init"] == r[Key(Part.AREA_DIR, "I")]
    assert snap.owners["build_cache"] == snap.owners["links"] == EMPTY
    # The area: its own inode, its owners, nothing else.
    assert sum(snap.owners.values(), r[Key(Part.ENTRY, "area")]) == snap.root_dirs["area"]
    (orphan,) = snap.orphans
    assert (orphan.name, orphan.path, orphan.usage) == ("O", "/host/root/area/O", r[Key(Part.AREA_DIR, "O")])

    layers = {x.chain_id: x for x in snap.layers}
    assert {c: x.images for c, x in layers.items()} == {"sha256:c1": 2, "sha256:c2": 1, "sha256:c3": 0}
    assert layers["sha256:c3"].total == EMPTY  # recorded, its dir gone
    assert layers["sha256:c2"].size == 0  # no recorded size: 0 bytes said, the walk beside it
    (c,) = snap.containers
    assert (c.name, c.state, c.rw, c.logs) == (
        "web",
        "exited",
        r[Key(Part.WRITABLE, "W")],
        r[Key(Part.LOGS, "c1")],
    )
    (v,) = snap.volumes
    assert v.total == r[Key(Part.VOLUME_DATA, "v1")] + r[Key(Part.VOLUME_REST, "v1")]


def test_layers_come_biggest_first_and_equal_ones_in_the_layout_s_order(tmp_path: Path) -> None:
    sizes = [3, 1, 3, 2, 1, 3]
    layers = tuple(LayerDir(f"L{i}", f"sha256:c{i}", f"sha256:d{9 - i}", "", None) for i in range(len(sizes)))
    layout = layout_over(tmp_path, layers=layers, layer_dirs=frozenset(x.store_id for x in layers))
    r = {
        Key(p, x.store_id): u(n)
        for x, n in zip(layers, sizes, strict=True)
        for p in (Part.LAYER, Part.LAYER_REST)
    }
    snap = Attribution().snapshot(layout, "/h", engine_with(), {**results_for(layout), **r}, {}, 0)
    assert [x.cache_id for x in snap.layers] == ["L0", "L2", "L5", "L3", "L1", "L4"]
    assert [x.total for x in snap.layers] == [u(2 * n) for n in sorted(sizes, reverse=True)]


def test_attribution_reuses_the_image_part_only_while_nothing_changed(tmp_path: Path) -> None:
    layout = layout_over(tmp_path)
    r = results_for(layout)
    attr = Attribution()
    first = attr.snapshot(layout, "/h", engine_with(), r, {"layer": 4}, 0)
    bigger = {**r, Key(Part.LAYER, "L1"): u(99)}
    # Same layout objects and no layer walked: the layers are last scan's (they are immutable).
    assert attr.snapshot(layout, "/h", engine_with(), bigger, {}, 0).layers == first.layers
    # A layer walked this scan, or another listing: computed anew.
    fresh = attr.snapshot(layout, "/h", engine_with(), bigger, {"layer": 1}, 0)
    assert fresh.layers != first.layers and fresh.layers[0].diff == u(99)
    relisted = layout_over(tmp_path, layers=tuple(list(layout.layers)))  # equal, not the same
    # (The memo holds `fresh`'s layers: only a recomputation from `r` gives `first`'s.)
    assert attr.snapshot(relisted, "/h", engine_with(), r, {}, 0).layers == first.layers != fresh.layers


def test_attribution_hands_back_its_last_snapshot_only_while_every_input_is_as_it_was(
    tmp_path: Path,
) -> None:
    """A rescan that measured everything as it was gets last scan's snapshot, that very object
    (inputs equal, none the same object); each input changed alone makes a new one that says so."""
    layout = layout_over(tmp_path)
    r = results_for(layout)
    ct = Container("c1", "web", "sha256:i1", "web:1", "exited", ())
    attr = Attribution()

    def snap(**over: Any) -> ScanSnapshot:
        args: dict[str, Any] = dict(
            layout=layout,
            root_host="/h",
            engine=engine_with((ct,)),
            results=r,
            walks={"layer": 4},
            cached_layers=4,
        )
        return attr.snapshot(**{**args, **over})

    first = snap()
    assert snap(layout=layout_over(tmp_path), results=dict(r), walks={"layer": 4}) is first
    grown = {**r, Key(Part.CONTAINER, "c1"): u(77)}
    assert snap(results=grown).root_dirs["c1"] == u(77) != first.root_dirs["c1"]
    assert snap().root_dirs["c1"] == first.root_dirs["c1"]
    renamed = Container("c1", "api", "sha256:i1", "web:1", "running", ())
    assert (snap(engine=engine_with((renamed,))).containers[0].name, snap().containers[0].name) == (
        "api",
        "web",
    )
    assert snap(root_host="/elsewhere").orphans[0].path == "/elsewhere/area/O"
    assert snap(walks={"layer": 1}).walks == {"layer": 1} and snap(cached_layers=9).cached_layers == 9
    fewer = layout_over(tmp_path, volumes=())
    assert snap(layout=fewer).volumes == () and snap().volumes == first.volumes
    assert snap() is not first and snap() == first  # made anew after the others, equal


def test_attribution_over_settled_chunks_sums_them_once_and_live_results_every_scan(
    tmp_path: Path,
) -> None:
    """Results taken whole (the plan's settled part, the reader's blob stats) are summed once
    per chunk object; what was measured this scan is summed every scan; the figures equal
    those of the same results given flat."""
    blobs = {Key(Part.BLOB, "area/blobs/b1"): u(7), Key(Part.BLOB, "area/blobs/b2"): u(8)}
    layout = layout_over(
        tmp_path,
        area_dirs=(AreaDir("I", Owner.INIT, Reuse.SETTLED), AreaDir("O", Owner.ORPHAN)),
        content={k: "layer" for k in blobs},
        image_content={"sha256:i1": tuple(blobs)},
        image_dirs={"sha256:i1": ("L2", "L1", "I")},
        areas={**layout_over(tmp_path).areas, Part.BLOB: "area"},
    )
    cache = UsageCache()
    first = make_plan(layout, cache, {})
    first.keep(cache, {j.key: u(2) for j in first.jobs}, ok=True)
    memo = PlanMemo()
    plan = make_plan(layout, cache, {}, memo=memo)  # everything settled is in the cache now
    settled = dict(plan.settled)
    assert Key(Part.AREA_DIR, "I") in settled and Key(Part.AREA_DIR, "O") not in settled
    live = {**plan.known, **{j.key: u(3) for j in plan.jobs}}
    attr = Attribution()
    ct = Container("c1", "web", "sha256:i1", "web:1", "exited", ())

    def snap(results: Results | dict[Key, Usage], attr: Attribution = attr) -> ScanSnapshot:
        return attr.snapshot(layout, "/h", engine_with((ct,)), results, {}, 0)

    a = snap(Results(live, (plan.settled, blobs)))
    flat = snap({**settled, **blobs, **live}, Attribution())
    assert (a.root_dirs, a.owners, a.layers, a.images, a.content, a.orphans) == (
        flat.root_dirs, flat.owners, flat.layers, flat.images, flat.content, flat.orphans,
    )  # fmt: skip
    (image,) = a.images
    assert image.content == u(7) + u(8) and image.unpacked == total(
        [settled[Key(p, n)] for p in (Part.LAYER, Part.LAYER_REST) for n in ("L1", "L2")]
        + [settled[Key(Part.AREA_DIR, "I")]]
    )
    # The next scan: the orphan grew (walked every scan), the settled chunks are the same objects.
    again = make_plan(layout, cache, {}, memo=memo)
    assert again.settled is plan.settled
    grown = {**live, Key(Part.AREA_DIR, "O"): u(50)}
    b = snap(Results(grown, (again.settled, blobs)))
    assert b.owners["orphan"] == u(50) and b.orphans[0].usage == u(50)
    assert total(b.root_dirs.values()) == total(a.root_dirs.values()) + u(47)
    assert b.images is a.images and b.layers is a.layers  # nothing they sum was measured anew
    assert b.content == a.content
    # A settled chunk that is another object (say a blob came back with other figures): anew.
    other_blobs = {**blobs, Key(Part.BLOB, "area/blobs/b2"): u(9)}
    c = snap(Results(grown, (again.settled, other_blobs)))
    assert c.images[0].content == u(7) + u(9) and c.content["layer"] == u(7) + u(9)
    # Results given flat (nothing settled): every figure is this call's, nothing kept.
    flat_attr = Attribution()
    without_init = {k: v for k, v in {**settled, **live}.items() if k != Key(Part.AREA_DIR, "I")}
    one = snap({**without_init, **blobs}, flat_attr)  # the init dir's figure missing
    two = snap({**without_init, **other_blobs, **grown, Key(Part.AREA_DIR, "I"): u(60)}, flat_attr)
    assert (one.owners["init"], one.owners["orphan"]) == (EMPTY, u(3))
    assert (two.owners["init"], two.owners["orphan"]) == (u(60), u(50))
    assert two.content["layer"] == u(7) + u(9)


def test_unattributed_layout_has_no_owners_layers_or_writable_layers(tmp_path: Path) -> None:
    layout = layout_over(
        tmp_path, attribution=False, attribution_reason="why", layers=(), layer_dirs=frozenset(),
        writable={}, area_dirs=(AreaDir("L1", None), AreaDir("O", None)),
    )  # fmt: skip
    snap = Attribution().snapshot(layout, "/h", engine_with(), results_for(layout), {}, 0)
    assert (snap.attribution, snap.attribution_reason) == (False, "why")
    assert snap.owners == {} and snap.layers == () and snap.orphans == ()
    assert snap.containers[0].rw is None
    assert snap.root_dirs["area"].files > 1  # the dirs still count where they lie


# --- the registry -------------------------------------------------------------------------------


class _TestReader:
    name: ClassVar[str] = "test"

    @classmethod
    def applies(cls, info: EngineInfo) -> bool:
        return info.image_store == "test-store"

    def read(self, root: str, info: EngineInfo) -> StoreLayout:
        raise NotImplementedError


@pytest.fixture
def registered() -> Iterator[None]:
    READERS.insert(0, register(_TestReader))  # asked first, as a new layout's module would be
    READERS.pop()  # register() appended it too
    try:
        yield
    finally:
        READERS.remove(_TestReader)  # type: ignore[arg-type]


@pytest.mark.usefixtures("registered")
def test_the_first_reader_that_applies_reads_the_root() -> None:
    info = EngineInfo("docker", "x", "1.41", "overlay2", "test-store", "/r")
    assert reader_for(info) is _TestReader
    assert reader_for(EngineInfo("docker", "x", "1.41", "overlay2", "graphdriver", "/r")) is Overlay2Reader
    containerd = EngineInfo("docker", "x", "1.45", "overlayfs", "containerd", "/r")
    assert reader_for(containerd) is ContainerdReader
    assert reader_for(EngineInfo("docker", "x", "1.41", "vfs", "graphdriver", "/r")) is Overlay2Reader


@pytest.mark.parametrize("n", [0, 1, 64, 65, 1000])
def test_total_is_the_sum_field_by_field_few_or_many(n: int) -> None:
    """total() sums a few by zip and many by a sum per field: the same figures either way, a
    partial one making the sum partial, from a list, a tuple or a generator."""
    us = [Usage(4096 * i, 100 * i + 1, i % 7, i % 3, False) for i in range(n)]
    want = EMPTY
    for x in us:
        want = want + x
    assert total(us) == total(tuple(us)) == total(x for x in us) == want and not total(us).partial
    if n:
        us[n // 2] = us[n // 2]._replace(partial=True)
        got = total(iter(us))
        assert got.partial is True and got[:4] == want[:4]
    assert type(total(us)) is Usage
