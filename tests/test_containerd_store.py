"""The containerd image store on a real engine (trixie's Docker 26.1 with containerd-snapshotter,
its known state and a planted leaked snapshot dir), against the ground truth: `du` of the same
dirs, the engine's own `/system/df` and image inspect, and the files' own listing.

Tolerances: the issue's (1 % for the owners and the containers' total, 64 KiB for SizeRw, 2 %
for the content store), for an engine that may still write a byte between our scan and the
check; on this idle engine the figures come out exact, and the summary says by how much.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from exporter.model import EngineSnapshot, SamplerStatus
from exporter.sources.engine import EngineClient
from tests.harness import SUMMARY
from tests.harness.exporter import ExporterProcess, Samples, sampled_after, value
from tests.harness.trixie_seed import SeededTrixie
from tests.harness.truth import one_df_at_a_time

SNAPSHOTTER = "io.containerd.snapshotter.v1.overlayfs"
CONTENT = "io.containerd.content.v1.content"
P = "docker_storage_"


def du(path: Path, *opts: str) -> tuple[int, int]:
    out = []
    for unit in ("--block-size=1", "--inodes"):
        res = subprocess.run(
            ["du", "-s", "-x", unit, *opts, str(path)], capture_output=True, check=True, text=True
        )
        out.append(int(res.stdout.split("\t", 1)[0]))
    return out[0], out[1]


def fresh(exp: ExporterProcess) -> Samples:
    """Samples from a scan that started after now (the state as it is)."""
    return exp.wait_until(sampled_after(time.time(), "scan", "engine"), timeout=60, what="a fresh scan")


def family(s: Samples, name: str, label: str) -> dict[str, float]:
    return {labels[label]: v for labels, v in s.get(name, [])}


def within(got: float, want: float, rel: float = 0.0, absolute: float = 0.0) -> bool:
    return abs(got - want) <= max(rel * want, absolute)


@pytest.fixture(scope="module")
def snapshots(trixie_cstore: SeededTrixie) -> Path:
    assert trixie_cstore.containerd_root is not None
    return trixie_cstore.containerd_root / SNAPSHOTTER / "snapshots"


def test_attribution_is_available_and_owners_sum_to_du(
    cstore_exporter: ExporterProcess, trixie_cstore: SeededTrixie, snapshots: Path
) -> None:
    trixie_cstore.ensure_leaked()
    s = fresh(cstore_exporter)
    assert value(s, P + "layer_attribution_available") == 1
    owners = family(s, P + "driver_disk_bytes", "owner")
    assert set(owners) == {
        "image", "container", "init", "build_cache", "unpacking", "other_namespace", "unreferenced", "orphan",
    }  # fmt: skip
    itself = os.lstat(snapshots).st_blocks * 512  # snapshots/ itself: no owner's
    disk, files = du(snapshots)
    assert within(sum(owners.values()) + itself, disk, rel=0.01), (owners, disk)
    assert within(sum(family(s, P + "driver_files", "owner").values()) + 1, files, rel=0.01)
    SUMMARY.append(f"containerd store: owners + snapshots/ = {sum(owners.values()) + itself}, du {disk}")
    assert owners["image"] > 0 and owners["container"] > 0 and owners["init"] > 0
    assert value(s, P + "store_read_errors_total", file="meta.db") == 0
    assert value(s, P + "store_read_errors_total", file="metadata.db") == 0


def test_the_leaked_dir_is_an_orphan_in_metrics_and_report(
    cstore_exporter: ExporterProcess, trixie_cstore: SeededTrixie
) -> None:
    leaked = trixie_cstore.ensure_leaked()
    assert leaked is not None
    s = fresh(cstore_exporter)
    assert value(s, P + "orphan_dirs") == 1
    assert value(s, P + "driver_disk_bytes", owner="orphan") == du(leaked)[0]
    res = subprocess.run(
        [sys.executable, "-m", "exporter", "report", "--json", "--docker.host", trixie_cstore.docker_host,
         "--path.rootfs", str(trixie_cstore.rootfs)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(res.stdout)
    host_path = "/" + str(leaked.relative_to(trixie_cstore.rootfs))  # as the host (the engine) names it
    assert [o["path"] for o in data["orphans"]] == [host_path]
    assert data["orphans"][0]["disk_bytes"] == du(leaked)[0]
    text = subprocess.run(
        [sys.executable, "-m", "exporter", "report", "--docker.host", trixie_cstore.docker_host,
         "--path.rootfs", str(trixie_cstore.rootfs)],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert host_path in text
    # The double storage, in both forms.
    assert "kept twice" in text and set(data["content"]) >= {"layer", "config", "manifest"}
    assert data["images_twice"] and all(i["content"]["disk_bytes"] > 0 for i in data["images_twice"])


def test_container_rw_is_du_of_its_snapshot_and_the_engines_size_rw(
    cstore_exporter: ExporterProcess, trixie_cstore: SeededTrixie, snapshots: Path
) -> None:
    seed = trixie_cstore.seed
    # The running container's writable snapshot: the one holding the file it wrote (found on
    # disk, not through any containerd record).
    (upper,) = [d for d in snapshots.iterdir() if (d / "fs" / seed.rw_file.lstrip("/")).exists()]
    s = fresh(cstore_exporter)
    rw = value(s, P + "container_rw_bytes", container=seed.rw_container)
    assert rw == du(upper / "fs")[0]
    df = one_df_at_a_time(trixie_cstore.engine.api().df)
    size_rw = {c["Names"][0].lstrip("/"): c.get("SizeRw", 0) for c in df["Containers"]}
    assert within(rw, size_rw[seed.rw_container], absolute=64 * 1024), (rw, size_rw)
    # docker system df Containers: SIZE and RECLAIMABLE (not running, paused or restarting).
    want_used = sum(size_rw.values())
    states = {c["Names"][0].lstrip("/"): c["State"] for c in df["Containers"]}
    want_idle = sum(v for n, v in size_rw.items() if states[n] in ("created", "exited", "dead"))
    assert within(value(s, P + "used_bytes", object="containers") or 0, want_used, rel=0.01)
    assert within(value(s, P + "reclaimable_bytes", object="containers") or 0, want_idle, rel=0.01)
    SUMMARY.append(f"containerd store: rw {rw} vs SizeRw {size_rw[seed.rw_container]}; used {want_used}")


def test_layers_are_the_distinct_chain_ids_of_all_images(
    cstore_exporter: ExporterProcess, trixie_cstore: SeededTrixie
) -> None:
    from exporter.sources.layout import chain_ids

    api = trixie_cstore.engine.api()
    chains: set[str] = set()
    for img in api.images(all=True):
        layers = api.inspect_image(img["Id"])["RootFS"].get("Layers") or []
        chains.update(chain_ids(layers))
    s = fresh(cstore_exporter)
    assert value(s, P + "layers") == len(chains)
    # Each layer's recorded size is the snapshotter's: the allocated bytes of its fs/.
    assert (value(s, P + "layers_size_bytes") or 0) > 0


def test_content_store_sums_to_du(cstore_exporter: ExporterProcess, trixie_cstore: SeededTrixie) -> None:
    assert trixie_cstore.containerd_root is not None
    content = trixie_cstore.containerd_root / CONTENT
    s = fresh(cstore_exporter)
    kinds = family(s, P + "content_disk_bytes", "kind")
    assert set(kinds) == {"layer", "config", "manifest", "partial", "unreferenced", "other"}
    disk, files = du(content)
    assert within(sum(kinds.values()), disk, rel=0.02), (kinds, disk)
    assert within(sum(family(s, P + "content_files", "kind").values()), files, rel=0.02)
    # Every image's layers are kept compressed too: the double storage.
    assert kinds["layer"] > 0 and kinds["config"] > 0 and kinds["manifest"] > 0
    blobs = list((content / "blobs" / "sha256").iterdir())
    assert value(s, P + "content_files", kind="layer") + value(s, P + "content_files", kind="config") <= len(
        blobs
    )
    SUMMARY.append(f"containerd store: content {sum(kinds.values())} vs du {disk}")


def test_root_dirs_match_du_and_the_exporter_holds_no_lock(
    cstore_exporter: ExporterProcess, trixie_cstore: SeededTrixie
) -> None:
    s = fresh(cstore_exporter)
    root = trixie_cstore.data_root
    for name, got in family(s, P + "root_disk_bytes", "dir").items():
        opts = ("--exclude=mounts",) if name == "containers" else ()
        want = du(root / name, *opts)[0]
        assert within(got, want, rel=0.01), (name, got, want)
    # No lock of ours on anything, ever: containerd holds its own on both bolt files.
    pids = {str(cstore_exporter.proc.pid)} | _children(cstore_exporter.proc.pid)
    with open("/proc/locks") as f:
        holders = {line.split()[4] for line in f if len(line.split()) > 4}
    assert not pids & holders, (pids, holders)


def _children(pid: int) -> set[str]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().split(")")[-1].split()[1] == str(pid):
                        out.add(entry)
            except OSError:
                continue
    return out


# --- bad metadata: the scan keeps its last good figures, counts, never raises ----------------


def test_torn_bolt_files_keep_the_last_good_figures(trixie_cstore: SeededTrixie, tmp_path: Path) -> None:
    """A copy of the store's containerd root, given with --containerd.root (inside R, as the
    host would name it), whose bolt files then go bad."""
    from exporter.model import EngineSnapshot, SamplerStatus, ScanSnapshot
    from exporter.samplers import EngineSampler, Store
    from exporter.scan import ScanSampler
    from exporter.sources.du import Walker
    from exporter.sources.engine import EngineClient
    from exporter.stores.inventory import StoreOptions

    assert trixie_cstore.containerd_root is not None
    copy = trixie_cstore.rootfs / "tmp" / f"dse-ctd-copy-{os.getpid()}"
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", str(trixie_cstore.containerd_root), str(copy)], check=True)
    try:
        store = Store()
        assert EngineSampler(store, EngineClient(trixie_cstore.docker_host)).run()
        opts = StoreOptions(str(trixie_cstore.rootfs), "/" + str(copy.relative_to(trixie_cstore.rootfs)))
        sampler = ScanSampler(store, Walker(workers=1), rootfs=str(trixie_cstore.rootfs), options=opts)
        bolt_files = [copy / SNAPSHOTTER / "metadata.db", copy / "io.containerd.metadata.v1.bolt" / "meta.db"]
        before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in bolt_files]
        assert sampler.run(), store.status("scan")
        good = store.latest(ScanSnapshot)
        assert good is not None and good.attribution and good.layers
        assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in bolt_files] == before  # read, never written
        meta = copy / SNAPSHOTTER / "metadata.db"
        meta.write_bytes(meta.read_bytes()[:100])  # torn: no valid meta page left
        assert sampler.run(), store.status("scan")
        kept = store.latest(ScanSnapshot)
        assert kept is not None and kept.read_errors["metadata.db"] == 1
        assert {x.chain_id for x in kept.layers} == {x.chain_id for x in good.layers}
        # A reader that never had a good read of it: the scan fails, with the reason.
        fresh_store = Store()
        fresh_store.publish(SamplerStatus("engine", success=True), store.latest(EngineSnapshot))
        fresh_sampler = ScanSampler(
            fresh_store, Walker(workers=1), rootfs=str(trixie_cstore.rootfs), options=opts
        )
        assert fresh_sampler.run() is False
        status = fresh_store.status("scan")
        assert status is not None and "Corrupt" in status.last_error
        # A meta.db of a schema this reader does not know (v1/version 5): refused, not guessed.
        meta.write_bytes(before[0][0])
        db = bolt_files[1]
        raw = db.read_bytes()
        assert b"version\x06" in raw  # the key and its varint value (3), in its leaf (and freed pages)
        db.write_bytes(raw.replace(b"version\x06", b"version\x0a"))
        third = ScanSampler(Store(), Walker(workers=1), rootfs=str(trixie_cstore.rootfs), options=opts)
        third.store.publish(SamplerStatus("engine", success=True), store.latest(EngineSnapshot))
        assert third.run() is False
        status = third.store.status("scan")
        assert (
            status is not None and "UnknownSchema" in status.last_error and "version 5" in status.last_error
        )
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_each_images_two_copies_match_du_of_its_blobs_and_snapshot_chain(
    cstore_exporter: ExporterProcess, trixie_cstore: SeededTrixie, snapshots: Path
) -> None:
    """The running container's image: its blobs as its own manifest names them (parsed here,
    OCI image spec), and its unpacked chain as containerd mounts it under the container
    (`ctr snapshots mounts` lowerdir: the container's init layer, then the image's chain)."""
    assert trixie_cstore.containerd_root is not None
    t, seed = trixie_cstore, trixie_cstore.seed
    api = t.engine.api()
    ctr = api.inspect_container(seed.rw_container)
    image_id = ctr["Image"]  # on this store, the target digest of the image
    blobs = trixie_cstore.containerd_root / CONTENT / "blobs" / "sha256"
    target = json.loads((blobs / image_id.split(":")[1]).read_text())
    manifests = [target] if "config" in target else []
    for m in target.get("manifests", []):
        path = blobs / m["digest"].split(":")[1]
        if path.exists():
            manifests.append(json.loads(path.read_text()))
    digests = {image_id} | {m["digest"] for m in target.get("manifests", [])}
    for m in manifests:
        digests |= {m["config"]["digest"], *(layer["digest"] for layer in m["layers"])}
    present = [blobs / d.split(":")[1] for d in digests if (blobs / d.split(":")[1]).exists()]
    want_content = sum(du(p)[0] for p in present)

    sock = "/" + str(t.engine.containerd_sock.relative_to(t.rootfs))
    out = subprocess.run(
        ["chroot", str(t.rootfs), "ctr", "-a", sock, "-n", "moby", "snapshots", "mounts", "/x", ctr["Id"]],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    lower = out.split("lowerdir=", 1)[1].split()[0].split(",")[0].split(":")
    chain = [Path(d).parent.name for d in lower][1:]  # the first is the container's init layer
    want_unpacked = sum(du(snapshots / n)[0] for n in chain)

    s = fresh(cstore_exporter)
    short = image_id.split(":")[1][:12]
    assert value(s, P + "image_content_disk_bytes", image_id=short) == want_content
    assert value(s, P + "image_unpacked_disk_bytes", image_id=short) == want_unpacked
    SUMMARY.append(
        f"containerd store: {short} blobs {want_content}, unpacked {want_unpacked} ({len(chain)} dirs)"
    )


def test_a_first_scan_prefetches_snapshot_dirs_and_a_rescan_takes_the_settled_part_whole(
    trixie_cstore: SeededTrixie,
) -> None:
    """With workers, a first scan hands every snapshot dir a record may name to them before
    the bolt files are read (StoreReader.prefetch), and gets what a scan without them gets; a
    rescan of the unchanged store walks no image layer, and from the third on its layers and
    images are last scan's very objects (nothing summed again). On a copy of the engine's
    containerd root, which no containerd writes."""
    import gc

    from exporter.model import ScanSnapshot
    from exporter.samplers import EngineSampler, Store
    from exporter.scan import ScanSampler
    from exporter.sources.du import ChildWalks, Started, Walker, WalkJob
    from exporter.stores.inventory import Part, StoreOptions

    class Recording(Walker):
        def __init__(self, workers: int) -> None:
            super().__init__(workers=workers)
            self.started: list[str] = []  # the dirs handed to the workers
            self.stat_ahead: list[str] = []  # the blobs
            self.handed: list[int] = []  # in how many jobs, each start
            self.ran: list[list[WalkJob]] = []
            self.collecting: list[bool] = []

        def start(self, walks: Iterable[ChildWalks], deadline: float | None = None) -> Started:
            walks = list(walks)
            started = super().start(walks, deadline)
            if started.jobs:
                assert started.jobs == sum(len(w.names) for w in walks)
                blobs, dirs = walks  # the blobs' stats first, then the snapshot dirs
                assert blobs.path.endswith("/blobs/sha256") and not blobs.exclude
                assert dirs.exclude == {"fs"}
                self.stat_ahead += [f"{blobs.path}/{n}" for n in blobs.names]
                self.started += [f"{dirs.path}/{n}" for n in dirs.names]
                self.handed.append(len(started._futures))
            return started

        def run(self, jobs: list[WalkJob], *a: object, **kw: object) -> dict:  # type: ignore[override]
            self.ran.append(list(jobs))
            self.collecting.append(gc.isenabled())
            return super().run(jobs, *a, **kw)  # type: ignore[arg-type]

    assert trixie_cstore.containerd_root is not None
    copy = trixie_cstore.rootfs / "tmp" / f"dse-ctd-prefetch-{os.getpid()}"
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", str(trixie_cstore.containerd_root), str(copy)], check=True)
    snapshots = copy / SNAPSHOTTER / "snapshots"
    store = Store()
    assert EngineSampler(store, EngineClient(trixie_cstore.docker_host)).run()
    rootfs = str(trixie_cstore.rootfs)
    opts = StoreOptions(rootfs, "/" + str(copy.relative_to(trixie_cstore.rootfs)))
    snaps: dict[int, ScanSnapshot] = {}
    walkers = {n: Recording(n) for n in (1, 2)}
    samplers = {n: ScanSampler(Store(), w, rootfs=rootfs, options=opts) for n, w in walkers.items()}
    try:
        for n, sampler in samplers.items():
            sampler.store.publish(SamplerStatus("engine", success=True), store.latest(EngineSnapshot))
            assert sampler.run(), sampler.store.status("scan")
            got = sampler.store.latest(ScanSnapshot)
            assert got is not None and got.layers
            snaps[n] = got
        numbered = {str(snapshots / n) for n in os.listdir(snapshots) if n.isdigit()}
        two, one = walkers[2], walkers[1]
        assert set(two.started) == numbered and not one.started
        blobs = copy / "io.containerd.content.v1.content" / "blobs" / "sha256"
        assert set(two.stat_ahead) == {str(blobs / n) for n in os.listdir(blobs)}
        assert two.handed == [2]  # one job for each (the pool's other worker: this process)
        asked = {j.path for j in one.ran[0]}  # what the plan asks for, all walked here
        assert numbered <= asked and not numbered & {j.path for j in two.ran[0] if j.exclude == {"fs"}}
        a, b = snaps[1], snaps[2]
        assert (a.owners, a.layers, a.images, a.orphans) == (b.owners, b.layers, b.images, b.orphans)
        assert not any(two.collecting + one.collecting) and gc.isenabled()  # paused over the scan only

        sampler = samplers[2]
        rescans = []
        for _ in range(2):
            assert sampler.run()
            got = sampler.store.latest(ScanSnapshot)
            assert got is not None
            rescans.append(got)
        layer_parts = {Part.LAYER, Part.LAYER_REST}
        assert not [j for run in two.ran[1:] for j in run if j.key.part in layer_parts]
        assert len(two.started) == len(numbered)  # prefetched on the first scan only
        second, third = rescans
        assert (third.owners, third.layers, third.images) == (b.owners, b.layers, b.images)
        assert third.layers is second.layers and third.images is second.images
    finally:
        for w in walkers.values():
            w.close()
        shutil.rmtree(copy, ignore_errors=True)


def test_a_steady_read_stands_in_for_the_next_until_anything_it_went_by_changes(
    trixie_cstore: SeededTrixie, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a copy of the engine's Docker root (its containerd root inside), which no engine
    writes: once a read went by settled stamps alone, the reader hands back that layout, the
    same object (exporter.sources.witness); after each change a store goes through, the very
    next read is what a fresh reader reads, never the stand-in."""
    from exporter.sources import stamps
    from exporter.stores import containerd
    from exporter.stores.containerd import ContainerdReader
    from exporter.stores.inventory import StoreOptions

    settle = 0.05
    monkeypatch.setattr(stamps, "SETTLE_NS", int(settle * 1e9))
    from exporter.samplers import EngineSampler, Store

    store = Store()
    assert EngineSampler(store, EngineClient(trixie_cstore.docker_host)).run()
    engine = store.latest(EngineSnapshot)
    assert engine is not None
    info = engine.info
    copy = trixie_cstore.rootfs / "tmp" / f"dse-ctd-witness-{os.getpid()}"
    shutil.rmtree(copy, ignore_errors=True)
    subprocess.run(["cp", "-a", str(trixie_cstore.data_root), str(copy)], check=True)
    croot = copy / "containerd" / "daemon"
    opts = StoreOptions(str(trixie_cstore.rootfs))
    reader = ContainerdReader(opts)
    tag = f"dse-witness:{os.getpid()}"

    def steady() -> object:
        for _ in range(4):
            a, b = reader.read(str(copy), info), reader.read(str(copy), info)
            if a is b:
                return b
        raise AssertionError("no read stood in for the next")

    def truth() -> object:
        return ContainerdReader(opts).read(str(copy), info)

    def tiny_tar() -> bytes:
        import io
        import tarfile

        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            data = f"{tag}\n".encode()
            member = tarfile.TarInfo("witness")
            member.size = len(data)
            t.addfile(member, io.BytesIO(data))
        return buf.getvalue()

    def meta_db(root: Path | None) -> Path:
        assert root is not None
        return root / "io.containerd.metadata.v1.bolt" / "meta.db"

    ingest = croot / CONTENT / "ingest" / "dse-witness-ref"
    cdir, snapshots, blobs = (
        copy / "containers" / ("e" * 64),
        croot / SNAPSHOTTER / "snapshots",
        croot / CONTENT,
    )
    changes = {
        "a container made": lambda: cdir.mkdir(),
        "a log rotated": lambda: (cdir / f"{cdir.name}-json.log.1").write_bytes(b"l" * 9),
        "a volume made": lambda: (copy / "volumes" / "dse-witness" / "_data").mkdir(parents=True),
        "a leaked snapshot dir": lambda: (snapshots / "987654" / "fs").mkdir(parents=True),
        "a blob written": lambda: (blobs / "blobs" / "sha256" / ("f" * 64)).write_bytes(b"b" * 5000),
        "a download started": lambda: (ingest.mkdir(), (ingest / "data").write_bytes(b"d" * 3000)),
        "the download grown in place": lambda: (ingest / "data").write_bytes(b"d" * 90_000),
        "the download done": lambda: shutil.rmtree(ingest),
        "a file at the top": lambda: (copy / "dse-witness-file").write_bytes(b"t"),
        "meta.db committed (an image imported)": lambda: (
            trixie_cstore.docker("import", "-", tag, input=tiny_tar()),
            shutil.copyfile(meta_db(trixie_cstore.containerd_root), meta_db(croot)),
        ),
    }
    downloading = ("a download started", "the download grown in place")  # read every time
    try:
        before = steady()
        assert before == truth() and reader.read(str(copy), info) is before
        for what, change in changes.items():
            change()
            time.sleep(2 * settle)
            got = reader.read(str(copy), info)
            assert got is not before and got == truth() and got != before, what
            if what in downloading:  # its figure is this read's: no read stands in for the next
                again = [reader.read(str(copy), info) for _ in range(3)]
                assert all(a == got and a is not got for a in again) and again[1] is not again[2], what
                before = got
            else:
                before = steady()
        assert reader.read(str(copy), info) == truth()
        # A `new-*` dir is a snapshot being made until it is an hour old, an orphan after: its
        # class goes with the clock, so a stand-in holds only within the 5 minutes it was read in.
        (snapshots / "new-123456").mkdir()
        time.sleep(2 * settle)
        before = steady()
        assert before == truth() and reader.read(str(copy), info) is before
        tick = containerd._clock()
        monkeypatch.setattr(containerd, "_clock", lambda: tick + 1)
        assert reader.read(str(copy), info) is not before
    finally:
        trixie_cstore.docker("rmi", tag, check=False)
        shutil.rmtree(copy, ignore_errors=True)
