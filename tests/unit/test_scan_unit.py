"""exporter.scan.ScanSampler on synthetic Docker roots, against GNU du as ground truth.

The engine snapshot is synthetic (published in a real Store); the walk is the real one,
in-process (Walker(workers=1)). No Docker engine needed. The tree builder is test_layout's.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from exporter.collector import StorageCollector
from exporter.model import Container, EngineInfo, EngineSnapshot, SamplerStatus, ScanSnapshot, Volume
from exporter.samplers import Store
from exporter.scan import BYTES_PER_FILE, ScanSampler
from exporter.sources.du import Usage, Walker, WalkJob
from exporter.stores.inventory import OWNERS
from tests.unit.test_layout import (
    KB,
    DockerRoot,
    age,
    blob,
    build_standard,
    digest,
    hexid,
    put,
    short,
    tree_apparent,
)

PROMTOOL = "/usr/bin/promtool"


# --- ground truth ------------------------------------------------------------------------


def du(path: Path | str, *opts: str) -> tuple[int, int]:
    """(allocated bytes, inodes) as GNU du -s -x reports them."""
    out = []
    for unit in ("--block-size=1", "--inodes"):
        res = subprocess.run(
            ["du", "-s", "-x", unit, *opts, os.fsencode(path)], capture_output=True, check=True
        )
        out.append(int(res.stdout.split(b"\t", 1)[0]))
    return out[0], out[1]


def du_sum(paths: list[Path], *opts: str) -> tuple[int, int]:
    disk = files = 0
    for p in paths:
        d, f = du(p, *opts)
        disk, files = disk + d, files + f
    return disk, files


def pair(u: Usage) -> tuple[int, int]:
    return u.disk_bytes, u.files


# --- set-up ------------------------------------------------------------------------------


def engine_snapshot(t: DockerRoot, **info: str) -> EngineSnapshot:
    fields = {
        "engine": "docker",
        "version": "20.10.24+dfsg1",
        "api_version": "1.41",
        "storage_driver": t.driver,
        "image_store": "graphdriver",
        "root_dir": str(t.root),
    }
    fields.update(info)
    containers = tuple(
        Container(
            id=cid,
            name=f"c{i}",
            image_id=next(iter(t.images), ""),
            image=f"img{i}:latest",
            state="running" if i == 0 else "exited",
            volumes=(t.volumes[0],) if i == 0 and t.volumes else (),
        )
        for i, cid in enumerate(t.containers)
    )
    volumes = tuple(
        Volume(
            name=v, driver="local", mountpoint=str(t.root / "volumes" / v / "_data"), containers=int(i == 0)
        )
        for i, v in enumerate(t.volumes)
    )
    return EngineSnapshot(
        info=EngineInfo(**fields),
        images=(),
        containers=containers,
        volumes=volumes,
        image_usage=None,
    )


class RecordingWalker(Walker):
    """The real walk, in-process, remembering every run's jobs: what a scan walked (and so
    what it took from its cache instead)."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.runs: list[list[WalkJob]] = []

    def run(self, jobs: list[WalkJob], *args: Any, **kw: Any) -> dict[Hashable, Usage]:
        self.runs.append(list(jobs))
        return super().run(jobs, *args, **kw)

    @property
    def walked(self) -> list[str]:
        """Paths the last run walked."""
        return [j.path for j in self.runs[-1]] if self.runs else []

    def hints(self, run: int) -> dict[str, int]:
        """Each path's hint in one run."""
        return {j.path: j.hint for j in self.runs[run]}


def make_sampler(t: DockerRoot, budget: float = 300.0, **info: str) -> tuple[Store, ScanSampler]:
    store = Store()
    store.publish(SamplerStatus(name="engine", success=True), engine_snapshot(t, **info))
    return store, ScanSampler(store, RecordingWalker(), budget=budget)


def walker_of(sampler: ScanSampler) -> RecordingWalker:
    assert isinstance(sampler.walker, RecordingWalker)
    return sampler.walker


def scan(t: DockerRoot, **info: str) -> tuple[Store, ScanSampler, ScanSnapshot]:
    store, sampler = make_sampler(t, **info)
    assert sampler.run(), store.status("scan")
    snap = store.snapshot("scan")
    assert isinstance(snap, ScanSnapshot)
    return store, sampler, snap


@pytest.fixture
def std(tmp_path: Path) -> DockerRoot:
    return build_standard(tmp_path / "docker")


@pytest.fixture
def scanned(std: DockerRoot) -> Iterator[tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]]:
    store, sampler, snap = scan(std)
    yield std, store, sampler, snap
    sampler.walker.close()


# --- the figures against du ----------------------------------------------------------------


def test_root_dirs_match_du(scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]) -> None:
    t, _, _, snap = scanned
    assert snap.attribution and snap.attribution_reason == ""
    assert snap.root_dir == str(t.root) and snap.driver == "overlay2"
    assert set(snap.root_dirs) == set(os.listdir(t.root))
    for name, usage in snap.root_dirs.items():
        opts = {"overlay2": ("--exclude=merged",), "containers": ("--exclude=mounts",)}.get(name, ())
        assert pair(usage) == du(t.root / name, *opts), name
        assert not usage.partial and usage.errors == 0
    assert snap.errors == 0 and snap.skipped == 0


def test_owners_match_du(scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]) -> None:
    t, _, _, snap = scanned
    d = t.ddir
    assert set(snap.owners) == set(OWNERS)
    want = {
        "image": du_sum([d / e.cache_id for e in t.layers.values()]),
        "container": du_sum([d / m for m, _ in t.mounts.values()], "--exclude=merged"),
        "init": du_sum([d / i for _, i in t.mounts.values()]),
        # The lookalike (a snapshot-shaped dir snapshots.db does not name) is an orphan.
        "build_cache": du_sum([d / n for n in t.buildkit]),
        "links": du(d / "l"),
        "orphan": du_sum([d / n for n in [*t.orphans, *lookalikes(t)]]),
    }
    got = {k: pair(u) for k, u in snap.owners.items()}
    assert got == want
    assert all(u > (0, 0) for u in got.values())

    itself = Usage(os.lstat(d).st_blocks * 512, 0, 1, 0)  # the overlay2 dir's own blocks
    total = sum(snap.owners.values(), itself)
    assert pair(total) == pair(snap.root_dirs["overlay2"]) == du(d, "--exclude=merged")

    orphans = {o.name: o for o in snap.orphans}
    assert set(orphans) == {*t.orphans, *lookalikes(t)}
    for name, o in orphans.items():
        assert o.path == os.path.join(str(t.root), "overlay2", name)
        assert pair(o.usage) == du(d / name)


def lookalikes(t: DockerRoot) -> list[str]:
    owned = (
        {e.cache_id for e in t.layers.values()}
        | {m for m, _ in t.mounts.values()}
        | {i for _, i in t.mounts.values()}
        | set(t.buildkit)
        | set(t.orphans)
        | {"l"}
    )
    return sorted(set(os.listdir(t.ddir)) - owned)


def test_layers_match_du_and_docker_size(
    scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot],
) -> None:
    t, _, _, snap = scanned
    assert {x.chain_id for x in snap.layers} == set(t.layers)
    users = {c: sum(c in chain for chain in t.images.values()) for c in t.layers}
    assert users[t.layer("base").chain_id] == 2
    for x in snap.layers:
        want = t.layers[x.chain_id]
        ldir = t.ddir / want.cache_id
        assert (x.diff_id, x.cache_id, x.size) == (want.diff_id, want.cache_id, want.size)
        assert x.diff.apparent_bytes == tree_apparent(ldir / "diff") == want.apparent, x.diff_id
        assert pair(x.diff) == du(ldir / "diff")
        assert pair(x.total) == du(ldir)
        assert x.images == users[x.chain_id]
    # The base layer has a hard link, a symlink, a whiteout and a sparse file.
    base = next(x for x in snap.layers if x.chain_id == t.layer("base").chain_id)
    assert base.diff.apparent_bytes > base.diff.disk_bytes  # the sparse file
    assert [x.total.disk_bytes for x in snap.layers] == sorted(
        (x.total.disk_bytes for x in snap.layers), reverse=True
    )


def test_containers_rw_and_logs(scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]) -> None:
    t, _, _, snap = scanned
    got = {c.id: c for c in snap.containers}
    assert set(got) == set(t.containers)
    names = {cid: f"c{i}" for i, cid in enumerate(t.containers)}
    for cid, logs in t.containers.items():
        c = got[cid]
        assert c.name == names[cid]
        assert c.state == ("running" if names[cid] == "c0" else "exited")
        if cid in t.mounts:
            assert c.rw is not None
            assert pair(c.rw) == du(t.ddir / t.mounts[cid][0] / "diff")
            assert c.rw.apparent_bytes == tree_apparent(t.ddir / t.mounts[cid][0] / "diff")
        else:
            assert c.rw is None  # no layerdb mount: nothing to attribute
        assert logs, cid
        assert pair(c.logs) == du_sum(logs)
        assert c.logs.apparent_bytes == sum(p.stat().st_size for p in logs)
    web = got[hexid("container:web")]
    assert len(t.containers[web.id]) == 5  # json.log, .1, .2, local-logs container.log and .1.gz
    assert web.logs.apparent_bytes == 3000 + 9000 * 2 + 7000 + 900


def test_volumes_data_and_total(scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]) -> None:
    t, _, _, snap = scanned
    got = {v.name: v for v in snap.volumes}
    assert set(got) == set(t.volumes)
    for i, name in enumerate(t.volumes):
        v = got[name]
        assert pair(v.data) == du(t.root / "volumes" / name / "_data")
        assert v.data.apparent_bytes == tree_apparent(t.root / "volumes" / name / "_data")
        assert pair(v.total) == du(t.root / "volumes" / name)
        assert (v.driver, v.containers) == ("local", int(i == 0))


def test_walk_counts(scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]) -> None:
    t, _, sampler, snap = scanned
    assert snap.walks["layer"] == 2 * len(t.layers)  # diff/ and the rest of each layer dir
    assert snap.walks["volume"] == 2 * len(t.volumes)
    assert snap.walks["container"] == 2 * len(t.mounts) + len(t.containers)
    assert snap.cached_layers == len(t.layers)
    assert sampler.walker.walks == sum(snap.walks.values())


# --- the layer cache ---------------------------------------------------------------------


def test_second_scan_walks_no_layer_but_rewalks_the_rest(
    scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot],
) -> None:
    t, store, sampler, first = scanned
    cid = hexid("container:web")
    put(t.ddir / t.mounts[cid][0] / "diff" / "new" / "file.bin", blob(50 * KB, "new"))
    put(t.root / "volumes" / "pgdata" / "_data" / "more.bin", blob(20 * KB, "more"))
    with open(t.containers[cid][0], "ab") as f:
        f.write(blob(10 * KB, "more log"))

    assert sampler.run()
    second: ScanSnapshot = store.snapshot("scan")
    assert second is not first
    assert second.walks.get("layer", 0) == 0
    assert second.cached_layers == len(t.layers)
    layer_dirs = {str(t.ddir / x.cache_id) for x in t.layers.values()}
    walked = walker_of(sampler).walked
    assert not {p.removesuffix("/diff") for p in walked} & layer_dirs  # every layer from the cache
    assert str(t.ddir / t.mounts[cid][0] / "diff") in walked and str(t.containers[cid][0].parent) in walked
    assert [pair(x.total) for x in second.layers] == [pair(x.total) for x in first.layers]
    assert {o: pair(u) for o, u in second.owners.items() if o != "container"} == {
        o: pair(u) for o, u in first.owners.items() if o != "container"
    }
    c = next(x for x in second.containers if x.id == cid)
    assert c.rw is not None and pair(c.rw) == du(t.ddir / t.mounts[cid][0] / "diff")
    assert pair(c.logs) == du_sum(t.containers[cid])
    v = next(x for x in second.volumes if x.name == "pgdata")
    assert pair(v.total) == du(t.root / "volumes" / "pgdata")
    assert pair(second.root_dirs["overlay2"]) == du(t.ddir, "--exclude=merged")


def test_settled_root_rescan_walks_only_live_dirs_and_still_sees_new_layers(std: DockerRoot) -> None:
    """On a root nobody touched lately, read_layout's listings and the scan's derived figures
    are reused: a rescan walks no layer and no layerdb dir. A layer that arrives moves the
    dirs' stamps, and only it is walked."""
    age(std.root)
    store, sampler, first = scan(std)
    rec = walker_of(sampler)
    chains = str(std.layerdb / "sha256")
    layer_dirs = {str(std.ddir / x.cache_id) for x in std.layers.values()}

    def matches_du(snap: ScanSnapshot) -> None:
        opts = {"overlay2": ("--exclude=merged",), "containers": ("--exclude=mounts",)}
        for name, usage in snap.root_dirs.items():
            assert pair(usage) == du(std.root / name, *opts.get(name, ())), name
        layers = [std.ddir / x.cache_id for x in std.layers.values()]
        assert pair(snap.owners["image"]) == du_sum(layers, "--exclude=merged")
        assert {x.chain_id: pair(x.total) for x in snap.layers} == {
            c: du(std.ddir / x.cache_id) for c, x in std.layers.items()
        }

    assert sampler.run()
    second: ScanSnapshot = store.snapshot("scan")
    walked = rec.walked
    assert not [p for p in walked if p.startswith(chains) or p.removesuffix("/diff") in layer_dirs]
    assert (second.root_dirs, second.owners, second.layers) == (first.root_dirs, first.owners, first.layers)
    assert second.layers is first.layers  # nothing changed: not even rebuilt (a host has 50k)
    matches_du(second)

    std.add_image("late", ["base", "late1"])
    new = std.layer("late1")
    assert sampler.run()
    walked = rec.walked
    third: ScanSnapshot = store.snapshot("scan")
    assert sorted(p for p in walked if p.startswith(chains)) == [f"{chains}/{new.chain_id[7:]}"]
    assert {p.removesuffix("/diff") for p in walked} & layer_dirs == set()
    assert len(third.layers) == len(first.layers) + 1 and third.walks["layer"] == 2
    matches_du(third)

    age(std.root)  # every stamp moves (chain dirs' too: walked again once), then settles
    assert sampler.run()
    assert sampler.run()
    walked = rec.walked
    fourth: ScanSnapshot = store.snapshot("scan")
    assert not [p for p in walked if p.startswith(chains)] and fourth.walks.get("layer", 0) == 0
    assert (fourth.root_dirs, fourth.layers) == (third.root_dirs, third.layers)
    matches_du(fourth)

    # A layer arrives and its dirs settle before the next scan: the listings' new stamps, not
    # their age, tell the scan that layerdb changed. Only the new chain dir is walked.
    seen_mtimes = {c: os.lstat(std.layerdb / "sha256" / c[7:]).st_mtime_ns for c in std.layers}
    std.add_image("later", ["base", "later1"])
    age(std.root)
    for chain, x in std.layers.items():  # back to the stamps the scan has seen, all but the new
        if x.diff_id != digest("diff:later1"):
            os.utime(std.layerdb / "sha256" / chain[7:], ns=(0, seen_mtimes[chain]))
    assert sampler.run()
    walked = rec.walked
    fifth: ScanSnapshot = store.snapshot("scan")
    assert [p for p in walked if p.startswith(chains)] == [f"{chains}/{std.layer('later1').chain_id[7:]}"]
    assert len(fifth.layers) == len(first.layers) + 2
    matches_du(fifth)


def test_image_store_reused_by_stamps_but_a_layer_being_written_is_walked_each_time(std: DockerRoot) -> None:
    """image/<driver>/ is written by renames only, so a rescan reads only the dirs whose stamp
    moved; layerdb/tmp holds a layer being pulled, whose files grow in place: walked every time."""
    tar_split = std.layerdb / "tmp" / "write-set-1" / "tar-split.json.gz"
    put(tar_split, blob(10 * KB, "pulling"))
    age(std.root)
    store, sampler, _ = scan(std)
    assert sampler.run()
    assert sampler.last_pass.tree_dirs_listed == 0  # every dir of the image store reused
    with open(tar_split, "ab") as f:  # grows in place: no dir's stamp moves
        f.write(blob(300 * KB, "more"))
    put(std.image_dir / "repositories.json.tmp", "{}")  # dockerd's atomic write of repositories.json
    os.rename(std.image_dir / "repositories.json.tmp", std.image_dir / "repositories.json")
    assert sampler.run()
    snap: ScanSnapshot = store.snapshot("scan")
    assert pair(snap.root_dirs["image"]) == du(std.root / "image")
    assert sampler.last_pass.tree_dirs_listed == 1  # image/overlay2/ itself, where the rename landed
    assert str(tar_split.parent.parent) in walker_of(sampler).walked  # layerdb/tmp: every scan


def test_walk_hints_are_last_inodes_or_a_guess_from_the_recorded_size(std: DockerRoot) -> None:
    """The Walker balances its batches by hint: a layer never walked is guessed from Docker's
    recorded bytes (the first scan is then balanced by cost), any other dir is what it held
    last time, and an unknown cost stays 0."""
    _, sampler = make_sampler(std)
    rec = walker_of(sampler)
    assert sampler.run() and sampler.run()
    first, second = rec.hints(0), rec.hints(1)
    for x in std.layers.values():
        diff = str(std.ddir / x.cache_id / "diff")
        assert first[diff] == x.size // BYTES_PER_FILE + 1 > 0
        assert diff not in second  # cached
    web = hexid("container:web")
    upper = str(std.ddir / std.mounts[web][0] / "diff")
    assert first[upper] == 0 and second[upper] == du(upper)[1]
    data = str(std.root / "volumes/pgdata/_data")
    assert first[data] == 0 and second[data] == du(data)[1]
    # Plain volumes' data is walked like any dir of the root (test_volume_data_on_a_mount_...).
    assert not [j.path for jobs in rec.runs for j in jobs if j.isolate]


def test_volume_data_on_a_mount_is_walked_only_in_a_worker(std: DockerRoot) -> None:
    """A volume's _data with a mount at it or below it (the local driver's NFS options, a
    plugin's mount) may hang a walk: only it is an isolated job (walked in a worker that can be
    killed), found by the mount table the moment it is mounted, through a link in the root's
    path; unmounted, it is walked here again. The table is read again only on a change."""
    _, sampler = make_sampler(std)
    rec = walker_of(sampler)
    linked = std.root.parent / "root-link"
    linked.symlink_to(std.root)
    (name, *_) = std.volumes
    data = std.root / "volumes" / name / "_data"
    assert sampler.run() and sampler.run()
    reads = sampler.mounts.reads
    assert sampler.run() and sampler.mounts.reads == reads  # no change: one poll, no read
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(data)], check=True)
    try:
        assert sampler.run()
        assert {j.path for j in rec.runs[-1] if j.isolate} == {str(data)}
        assert sampler.mounts.reads == reads + 1
        assert sampler.mounts.view().under(str(linked / "volumes" / name / "_data"))
        assert sampler.mounts.view().under(str(std.root / "volumes" / name))  # a mount below
    finally:
        subprocess.run(["umount", str(data)], check=True)
    assert sampler.run()
    assert not [j.path for j in rec.runs[-1] if j.isolate]


def test_removed_layer_is_forgotten(scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]) -> None:
    t, store, sampler, _ = scanned
    solo = t.layer("solo1")
    before = store.snapshot("scan").cached_layers
    assert before == len(t.layers)
    # `docker rmi solo`: the config, the layerdb entry and the layer dir go.
    (image,) = [i for i, chain in t.images.items() if chain == (solo.chain_id,)]
    (t.image_dir / "imagedb" / "content" / "sha256" / image.split(":", 1)[1]).unlink()
    shutil.rmtree(t.layerdb / "sha256" / solo.chain_id.split(":", 1)[1])
    shutil.rmtree(t.ddir / solo.cache_id)
    (t.ddir / "l" / short(solo.cache_id)).unlink()
    assert sampler.run()
    snap: ScanSnapshot = store.snapshot("scan")
    assert snap.cached_layers == before - 1
    assert solo.chain_id not in {x.chain_id for x in snap.layers}
    assert snap.walks.get("layer", 0) == 0
    assert pair(snap.root_dirs["overlay2"]) == du(t.ddir, "--exclude=merged")
    # Pulled again: the same chain ID and cache-id, in new dirs. Nothing of the old walks
    # stands for them: both its layer dir and its layerdb dir are walked anew.
    del t.layers[solo.chain_id]
    again = t.add_layer("solo1")
    t.add_image("solo", ["solo1"])
    assert sampler.run()
    walked = walker_of(sampler).walked
    assert str(t.ddir / again.cache_id / "diff") in walked
    assert str(t.layerdb / "sha256" / again.chain_id[7:]) in walked
    assert store.snapshot("scan").cached_layers == before


def test_layer_whose_entry_goes_but_dir_stays_becomes_an_orphan(
    scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot],
) -> None:
    t, store, sampler, _ = scanned
    solo = t.layer("solo1")
    shutil.rmtree(t.layerdb / "sha256" / solo.chain_id.split(":", 1)[1])
    assert sampler.run()
    snap: ScanSnapshot = store.snapshot("scan")
    assert snap.cached_layers == len(t.layers) - 1
    orphan = {o.name: o for o in snap.orphans}[solo.cache_id]
    assert pair(orphan.usage) == du(t.ddir / solo.cache_id)


# --- budget ----------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0.0, -5.0])
def test_budget_exceeded_keeps_last_good_snapshot(std: DockerRoot, budget: float) -> None:
    store, sampler = make_sampler(std)
    assert sampler.run()
    good = store.snapshot("scan")
    good_ok = store.status("scan")
    assert good_ok is not None and good_ok.success and good_ok.last_success is not None
    # More data, then a scan that cannot finish: the numbers must not move, either way.
    put(std.root / "volumes" / "pgdata" / "_data" / "grown.bin", blob(100 * KB, "grown"))
    std.add_image("unwalked", ["base", "unwalked1"])  # a layer never walked, too
    sampler.budget = budget
    assert sampler.run() is False
    status = store.status("scan")
    assert status is not None and not status.success and status.available
    assert "budget" in status.last_error
    assert status.failures == 1 and status.runs == 2
    assert status.last_success == good_ok.last_success
    assert store.snapshot("scan") is good


def test_budget_exceeded_on_first_scan_publishes_nothing(std: DockerRoot) -> None:
    store, sampler = make_sampler(std, budget=0.0)
    assert sampler.run() is False
    assert store.snapshot("scan") is None
    status = store.status("scan")
    assert status is not None and "budget" in status.last_error


# --- degraded setups -------------------------------------------------------------------------


def build_vfs(root: Path) -> DockerRoot:
    """A vfs root: layers are full copies under vfs/dir/<cache-id>; no overlay2, no l/."""
    t = DockerRoot(root, driver="vfs")
    t.add_misc()
    base_cache = hexid("vfs-base")
    put(t.root / "vfs" / "dir" / base_cache / "bin" / "busybox", blob(60 * KB, "busybox"))
    e = t.layerdb / "sha256" / hexid("diff:vbase")
    put(e / "diff", f"sha256:{hexid('diff:vbase')}")
    put(e / "size", str(60 * KB))
    put(e / "cache-id", base_cache)
    cid = hexid("container:vfs")
    put(t.layerdb / "mounts" / cid / "mount-id", hexid("vfs-mount"))
    put(t.layerdb / "mounts" / cid / "init-id", hexid("vfs-mount") + "-init")
    put(t.root / "vfs" / "dir" / hexid("vfs-mount") / "bin" / "busybox", blob(60 * KB, "busybox"))
    put(t.root / "vfs" / "dir" / hexid("vfs-mount") / "tmp" / "rw.bin", blob(8 * KB, "rw"))
    c = t.root / "containers" / cid
    t.containers[cid] = [
        put(c / f"{cid}-json.log", blob(5000, "l")),
        put(c / f"{cid}-json.log.1", blob(9000, "m")),
    ]
    put(c / "mounts" / "shm" / "x", blob(4 * KB, "shm"))
    t.add_volume("vfsvol")
    return t


@pytest.mark.parametrize(
    ("builder", "info", "reason"),
    [
        pytest.param(build_vfs, {"storage_driver": "vfs"}, "vfs", id="vfs"),
        pytest.param(build_standard, {"image_store": "containerd"}, "containerd", id="containerd-store"),
        pytest.param(build_standard, {"storage_driver": ""}, "unknown", id="driver-unknown"),
    ],
)
def test_no_attribution_still_reports_dirs_volumes_logs(
    tmp_path: Path, builder: object, info: dict[str, str], reason: str
) -> None:
    t: DockerRoot = builder(tmp_path / "docker")  # type: ignore[operator]
    store, _, snap = scan(t, **info)
    assert snap.attribution is False and reason in snap.attribution_reason
    assert snap.owners == {} and snap.layers == () and snap.orphans == ()
    assert set(snap.root_dirs) == set(os.listdir(t.root))
    for name, usage in snap.root_dirs.items():
        opts = {"overlay2": ("--exclude=merged",), "containers": ("--exclude=mounts",)}.get(name, ())
        assert pair(usage) == du(t.root / name, *opts), name
    assert {c.id for c in snap.containers} == set(t.containers)
    for c in snap.containers:
        assert c.rw is None
        assert pair(c.logs) == du_sum(t.containers[c.id]) and c.logs.disk_bytes > 0
    assert {v.name for v in snap.volumes} == set(t.volumes)
    for v in snap.volumes:
        assert pair(v.data) == du(t.root / "volumes" / v.name / "_data")
        assert pair(v.total) == du(t.root / "volumes" / v.name)
    assert snap.walks.get("layer", 0) == 0 and snap.cached_layers == 0
    # The collector says attribution is off and leaves the layer and driver families out.
    text = exposition(store)
    assert "docker_storage_layer_attribution_available 0.0" in text
    assert "docker_storage_driver_disk_bytes" not in text
    assert "docker_storage_layers " not in text
    assert "docker_storage_container_rw_bytes{" not in text
    assert "docker_storage_root_disk_bytes{" in text


def test_root_not_visible_is_unavailable_and_logged_once(tmp_path: Path) -> None:
    t = DockerRoot(tmp_path / "docker")  # never created
    store, sampler = make_sampler(t)
    with capture_logs() as logs:
        assert sampler.run() is False
        assert sampler.run() is False
    status = store.status("scan")
    assert status is not None
    assert status.available is False and status.success is False
    assert str(t.root) in status.last_error
    assert status.runs == 2 and status.failures == 2
    assert store.snapshot("scan") is None
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1, logs
    assert warnings[0]["event"] == "scan unavailable" and str(t.root) in warnings[0]["reason"]

    # It appears: the scan works and says so.
    build_standard(t.root)
    assert sampler.run() is True
    status = store.status("scan")
    assert status is not None and status.available and status.success and status.last_error == ""
    # Gone again: said again, once.
    shutil.rmtree(t.root)
    with capture_logs() as logs:
        assert sampler.run() is False
        assert sampler.run() is False
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["scan unavailable"]


def test_root_that_is_a_file_is_unavailable(tmp_path: Path) -> None:
    t = DockerRoot(tmp_path / "docker")
    put(t.root, b"not a dir")
    store, sampler = make_sampler(t)
    assert sampler.run() is False
    status = store.status("scan")
    assert status is not None and status.available is False


def test_no_engine_snapshot_is_not_due(tmp_path: Path) -> None:
    store = Store()
    sampler = ScanSampler(store, Walker(workers=1))
    assert sampler.run() is False
    status = store.status("scan")
    assert status is not None and status.runs == 0 and status.failures == 0 and status.last_error == ""


def test_rootfs_prefix(tmp_path: Path) -> None:
    """--path.rootfs: the engine names /var/lib/docker, we read <rootfs>/var/lib/docker."""
    rootfs = tmp_path / "host"
    t = build_standard(rootfs / "var" / "lib" / "docker")
    store = Store()
    store.publish(SamplerStatus(name="engine", success=True), engine_snapshot(t, root_dir="/var/lib/docker"))
    sampler = ScanSampler(store, Walker(workers=1), rootfs=str(rootfs))
    assert sampler.run()
    snap: ScanSnapshot = store.snapshot("scan")
    assert snap.root_dir == "/var/lib/docker"
    assert {o.path for o in snap.orphans} >= {f"/var/lib/docker/overlay2/{n}" for n in t.orphans}
    assert pair(snap.root_dirs["overlay2"]) == du(t.ddir, "--exclude=merged")


# --- odd trees ----------------------------------------------------------------------------------


def test_malformed_entries_are_counted_not_fatal(std: DockerRoot) -> None:
    tool1 = std.layer("tool1")
    put(std.layerdb / "sha256" / tool1.chain_id.split(":", 1)[1] / "size", b"")
    put(std.image_dir / "imagedb" / "content" / "sha256" / hexid("broken"), b"{")
    _, _, snap = scan(std)
    assert snap.skipped == 2
    assert tool1.chain_id not in {x.chain_id for x in snap.layers}
    # Its dir is then owned by nobody: reported, not lost.
    assert tool1.cache_id in {o.name for o in snap.orphans}
    assert pair(snap.root_dirs["overlay2"]) == du(std.ddir, "--exclude=merged")


def test_one_unparseable_image_config_does_not_sink_the_scan(std: DockerRoot) -> None:
    """A single image config json cannot parse (nested past the recursion limit) is one skipped
    entry, like any other malformed one; the rest of the scan is published."""
    put(std.image_dir / "imagedb" / "content" / "sha256" / hexid("nested"), b"[" * 200_000)
    store, sampler = make_sampler(std)
    assert sampler.run(), store.status("scan")
    snap: ScanSnapshot = store.snapshot("scan")
    assert snap.skipped == 1
    assert len(snap.layers) == len(std.layers)


def test_backing_fs_block_dev_is_not_an_orphan_dir(std: DockerRoot) -> None:
    """On xfs with project quotas the overlay2 driver keeps `overlay2/backingFsBlockDev` (a block
    device node made by its quota control). It is no dir and nothing was left behind: it must not
    show up as an orphaned dir (that would fire orphan alerts on every such host)."""
    os.mknod(std.ddir / "backingFsBlockDev", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    _, _, snap = scan(std)
    assert "backingFsBlockDev" not in {o.name for o in snap.orphans}
    assert {o.name for o in snap.orphans} == {*std.orphans, *lookalikes(std)} - {"backingFsBlockDev"}
    root = snap.root_dirs["overlay2"]
    assert pair(root) == du(std.ddir, "--exclude=merged")
    # The node may count under an owner or as part of the driver dir itself; nowhere else.
    itself = Usage(os.lstat(std.ddir).st_blocks * 512, 0, 1, 0)
    node = Usage(os.lstat(std.ddir / "backingFsBlockDev").st_blocks * 512, 0, 1, 0)
    owned = pair(sum(snap.owners.values(), itself))
    assert owned in (pair(root), (root.disk_bytes - node.disk_bytes, root.files - node.files))


def test_symlinked_volume_dir_is_not_followed(std: DockerRoot, tmp_path: Path) -> None:
    """The walk never follows symlinks (DESIGN.md): a symlink under volumes/ is one inode."""
    elsewhere = tmp_path / "elsewhere"
    put(elsewhere / "_data" / "big.bin", blob(300 * KB, "elsewhere"))
    os.symlink(elsewhere, std.root / "volumes" / "linked")
    _, _, snap = scan(std)
    assert pair(snap.root_dirs["volumes"]) == du(std.root / "volumes")


def test_layer_with_missing_dir_reports_zero_and_is_not_cached(std: DockerRoot) -> None:
    solo = std.layer("solo1")
    shutil.rmtree(std.ddir / solo.cache_id)
    _, _, snap = scan(std)
    x = next(x for x in snap.layers if x.chain_id == solo.chain_id)
    assert pair(x.total) == (0, 0)
    assert snap.cached_layers == len(std.layers) - 1


# --- the collector on top --------------------------------------------------------------------


def exposition(store: Store) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(store))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_collector_exposes_the_scan(scanned: tuple[DockerRoot, Store, ScanSampler, ScanSnapshot]) -> None:
    t, store, _, snap = scanned
    text = exposition(store)
    got = samples(text)
    for name in os.listdir(t.root):
        opts = {"overlay2": ("--exclude=merged",), "containers": ("--exclude=mounts",)}.get(name, ())
        disk, files = du(t.root / name, *opts)
        assert got[("docker_storage_root_disk_bytes", (("dir", name),))] == disk, name
        assert got[("docker_storage_root_files", (("dir", name),))] == files, name
    orphan_du = du_sum([t.ddir / n for n in [*t.orphans, *lookalikes(t)]])
    assert got[("docker_storage_driver_disk_bytes", (("owner", "orphan"),))] == orphan_du[0]
    assert got[("docker_storage_driver_files", (("owner", "orphan"),))] == orphan_du[1]
    assert got[("docker_storage_driver_disk_bytes", (("owner", "image"),))] == snap.owners["image"].disk_bytes
    assert got[("docker_storage_orphan_dirs", ())] == len(t.orphans) + len(lookalikes(t))
    assert got[("docker_storage_layers", ())] == len(t.layers)
    assert got[("docker_storage_layer_attribution_available", ())] == 1
    assert got[("docker_storage_scan_cached_layers", ())] == len(t.layers)
    assert got[("docker_storage_sampler_success", (("sampler", "scan"),))] == 1

    assert os.path.exists(PROMTOOL), "promtool is required (apt-get install prometheus)"
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
