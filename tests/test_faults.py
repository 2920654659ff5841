"""Faults (issue 6): the exporter against a real private engine that dies, hangs, churns
files under the scan and changes its root under the scan, and the exporter's own SIGTERM.

Each test that kills or stops a daemon has its own PrivateEngine; the others share one
module engine and leave it as they found it. The engines whose roots get big trees live on a
tmpfs of their own, so building them takes seconds whatever else the disk is doing. Every wait
is bounded; /metrics is scraped the whole time by a watcher whose every request has a 2 s
timeout, so "answers promptly" is a failed request, never a wall-clock figure.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import FAST, TEST_ROOT
from tests.harness import SUMMARY
from tests.harness.engine import PrivateEngine
from tests.harness.exporter import ExporterProcess, Samples, sampled_after, value
from tests.harness.faults import (
    FaultProxy,
    FirstRead,
    ScrapeWatcher,
    alive,
    children,
    cmdline,
    cpu_ticks,
    descendants,
    kill_recorded,
    port_open,
    start_on_tmpfs,
)
from tests.harness.seed import busybox_tar
from tests.harness.truth import du

P = "docker_storage_"
BASE = "dse-fault-base:latest"


# -- helpers ----------------------------------------------------------------------------


def runs(s: Samples, sampler: str) -> float:
    return value(s, P + "sampler_runs_total", sampler=sampler) or 0


def failures(s: Samples, sampler: str) -> float:
    return value(s, P + "sampler_failures_total", sampler=sampler) or 0


def last_ok(s: Samples, sampler: str) -> float:
    return value(s, P + "sampler_last_success_timestamp_seconds", sampler=sampler) or 0


def image_counts(s: Samples) -> dict[str, float]:
    return {lbl["state"]: v for lbl, v in s.get(P + "images", [])}


def log_lines(exp: ExporterProcess) -> list[dict]:
    out = []
    for line in exp.log.read_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def scan_starts(exp: ExporterProcess) -> list[float]:
    """When each logged scan began (unix time): its log line's time less its duration."""
    out = []
    for x in log_lines(exp):
        if x.get("sampler") == "scan" and x.get("event") in ("sample", "sample failed"):
            end = datetime.fromisoformat(x["timestamp"]).timestamp()
            out.append(end - float(x.get("duration_seconds", 0)))
    return out


def failed_samples(exp: ExporterProcess, sampler: str) -> list[dict]:
    return [x for x in log_lines(exp) if x.get("event") == "sample failed" and x.get("sampler") == sampler]


def sane(fs_bytes: int, fs_files: int):
    """A check for ScrapeWatcher: no negative or NaN figure anywhere, no per-item size or
    inode count beyond the filesystem holding the Docker root, no unreadable entry (as root,
    vanished files are the only trouble and they are not errors)."""
    sizes = (
        "container_rw_bytes",
        "container_log_bytes",
        "volume_disk_bytes",
        "layer_disk_bytes",
        "root_disk_bytes",
        "driver_disk_bytes",
    )
    inodes = ("volume_files", "layer_files", "root_files", "driver_files")

    def check(s: Samples) -> list[str]:
        bad = []
        for name, samples in s.items():
            if not name.startswith(P):
                continue
            for lbls, v in samples:
                if v != v or v < 0:
                    bad.append(f"{name}{lbls} = {v}")
                short = name[len(P) :]
                if short in sizes and v > fs_bytes:
                    bad.append(f"{name}{lbls} = {v} > filesystem size {fs_bytes}")
                if short in inodes and v > fs_files:
                    bad.append(f"{name}{lbls} = {v} > filesystem inodes {fs_files}")
        unreadable = value(s, P + "scan_unreadable_entries")
        if unreadable:
            bad.append(f"scan_unreadable_entries = {unreadable}")
        return bad

    return check


def fs_size(path: Path) -> tuple[int, int]:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_files


def wait_for(pred, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise TimeoutError(f"{what} not reached in {timeout}s")


def fill(directory: Path, dirs: int, files_per_dir: int) -> int:
    """A synthetic tree of empty files, written straight from the test (we are root)."""
    n = 0
    for d in range(dirs):
        sub = directory / f"d{d}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(files_per_dir):
            os.close(os.open(sub / f"f{f}", os.O_CREAT | os.O_WRONLY, 0o644))
            n += 1
    return n


def many_files_tar(n: int, tag: str) -> bytes:
    """A layer of n small files (unique per tag, so each import makes a new layer)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(n):
            data = f"{tag} {i}\n".encode()
            ti = tarfile.TarInfo(f"files/{i // 500}/{i}")
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def layerdb(root: Path) -> dict[str, str]:
    """diff ID -> cache-id, straight from disk."""
    base = root / "image" / "overlay2" / "layerdb" / "sha256"
    return {(d / "diff").read_text().strip(): (d / "cache-id").read_text().strip() for d in base.iterdir()}


def scan_after(exp: ExporterProcess, t: float, timeout: float = 30) -> Samples:
    return exp.wait_until(sampled_after(t, "scan"), timeout=timeout, what="a scan after t")


def scan_started_after(exp: ExporterProcess, t: float, timeout: float = 40) -> Samples:
    """A scan that began after t: scans never overlap, so the one finishing after the first
    completion past t started after it."""
    first = last_ok(scan_after(exp, t, timeout), "scan")
    return exp.wait_until(
        lambda s: last_ok(s, "scan") > first, timeout=timeout, what="a scan that started after t"
    )


# -- engines -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine_f() -> Iterator[PrivateEngine]:
    """The module's engine for tests that change its state but never stop it."""
    eng = PrivateEngine(TEST_ROOT / "faults")
    start_on_tmpfs(eng)
    eng.docker("import", "-", BASE, input=busybox_tar())
    try:
        yield eng
    finally:
        eng.stop()


# -- 1. dockerd SIGKILLed in the middle of a sample ---------------------------------------


def test_dockerd_sigkilled_mid_sample(tmp_path):
    eng = PrivateEngine(TEST_ROOT / "kill")
    eng.start()
    leftovers: dict[int, str] = {}
    proxy = exp = None
    try:
        eng.docker("import", "-", BASE, input=busybox_tar())
        for i in range(2):
            eng.docker("import", "-", f"dse-kill:{i}", input=busybox_tar({"p": os.urandom(10_000 + i)}))
        eng.docker("volume", "create", "dse-kill-vol")
        eng.docker("create", "--name", "dse-kill-c", "--network", "none", BASE, "true")

        # The exporter talks to dockerd through a proxy that can hold one request at a gate.
        proxy = FaultProxy(TEST_ROOT / "kill-proxy.sock", upstream=eng.sock)
        exp = ExporterProcess(proxy.host, tmp_path / "log", FAST).start()
        pid = exp.proc.pid
        good = exp.wait_until(
            lambda s: value(s, P + "engine_up") == 1 and sum(image_counts(s).values()) == 3,
            timeout=30,
            what="engine sampled",
        )
        want_images = image_counts(good)
        want_containers = {lbl["state"]: v for lbl, v in good[P + "containers"]}
        want_volumes = {lbl["state"]: v for lbl, v in good[P + "volumes"]}
        info = good[P + "engine_info"]

        with ScrapeWatcher(exp.url) as watch:
            # Mid-sample: /version and /info of this engine sample are answered, its
            # /images/json is outstanding. dockerd dies right then.
            proxy.hold(r"^/v[0-9.]+/images/json")
            assert proxy.held.wait(15), "the engine sample never reached /images/json"
            before = exp.scrape()
            last_good = last_ok(before, "engine")
            fails_before = failures(before, "engine")
            leftovers = {p: cmdline(p) for p in descendants(eng.proc.pid)}
            os.kill(eng.proc.pid, signal.SIGKILL)
            eng.proc.wait(10)
            proxy.release()

            s = exp.wait_until(lambda s: value(s, P + "engine_up") == 0, timeout=20, what="engine_up 0")
            n = runs(s, "engine")
            s = exp.wait_until(
                lambda s: runs(s, "engine") >= n + 2, timeout=20, what="more samples while down"
            )
            assert value(s, P + "engine_up") == 0
            assert value(s, P + "sampler_success", sampler="engine") == 0
            assert failures(s, "engine") >= fails_before + 3  # the interrupted one, then two more
            # The last good numbers stay, with their timestamp.
            assert last_ok(s, "engine") == last_good
            assert image_counts(s) == want_images
            assert {lbl["state"]: v for lbl, v in s[P + "containers"]} == want_containers
            assert {lbl["state"]: v for lbl, v in s[P + "volumes"]} == want_volumes
            assert s[P + "engine_info"] == info

            # Back on the same data root: recovered without restarting the exporter.
            eng.start(fresh=False)
            s = exp.wait_until(
                lambda s: value(s, P + "engine_up") == 1 and last_ok(s, "engine") > last_good,
                timeout=30,
                what="engine back",
            )
            assert image_counts(s) == want_images
            assert exp.proc.pid == pid and exp.proc.poll() is None
        assert watch.ok >= 20
        assert not watch.failures, watch.failures[:5]
        failed = failed_samples(exp, "engine")
        assert failed and all(x["level"] == "warning" and x["error"] for x in failed)
    finally:
        if exp is not None:
            exp.stop()
        if proxy is not None:
            proxy.close()
        eng.stop()
        kill_recorded(leftovers)  # e.g. a containerd the killed dockerd left behind


# -- 2. a dockerd that accepts and never answers ------------------------------------------


def test_hanging_engine_times_out_then_recovers(engine_f, tmp_path):
    hang = FaultProxy(TEST_ROOT / "hang.sock")  # no upstream: accept, hold, never answer
    exp = ExporterProcess(hang.host, tmp_path / "log", [*FAST, "--docker.timeout", "1s"]).start()
    try:
        pid = exp.proc.pid
        with ScrapeWatcher(exp.url) as watch:
            s = exp.wait_until(lambda s: runs(s, "engine") >= 3, timeout=30, what="three engine samples")
            assert hang.accepted >= 3
            assert value(s, P + "engine_up") == 0
            assert value(s, P + "sampler_success", sampler="engine") == 0
            assert failures(s, "engine") >= 3
            # Each sample gave up after the timeout rather than hanging (a bound, not a figure).
            assert 0.5 < value(s, P + "sampler_duration_seconds", sampler="engine") < 10
            assert P + "engine_info" not in s
            page = exp.get("/")[2].decode()
            row = next(r for r in page.split("<tr>") if r.startswith("<td>engine</td>"))
            assert "failing" in row and "timed out" in row.lower(), row
            failed = failed_samples(exp, "engine")
            assert failed and all("timed out" in x["error"].lower() for x in failed), failed[:3]

            # The same path now leads to a real engine: picked up without a restart.
            api = engine_f.api()
            want = len(api.images(all=True))
            api.close()
            hang.forward_to(engine_f.sock)
            s = exp.wait_until(
                lambda s: value(s, P + "engine_up") == 1 and sum(image_counts(s).values()) == want,
                timeout=30,
                what="recovered behind the same socket",
            )
            assert P + "engine_info" in s
            assert exp.proc.pid == pid and exp.proc.poll() is None
        assert watch.ok >= 20
        assert not watch.failures, watch.failures[:5]
    finally:
        exp.stop()
        hang.close()


# -- 3. a container churning thousands of files under the scan ----------------------------

CHURN = """
echo churning
r=0
while [ $r -lt 20000 ] && [ ! -e /vol/STOP ]; do
  mkdir -p /churn/d$r/s /vol/d$r/s
  i=0
  while [ $i -lt 100 ]; do
    echo $i > /churn/d$r/f$i; echo $i > /churn/d$r/s/f$i; echo $i > /vol/d$r/f$i; echo $i > /vol/d$r/s/f$i
    i=$((i+1))
  done
  # Old dirs go three at a time: the file count moves between several levels, so scans that
  # each take milliseconds do not all land on the one level a remove-one-add-one loop keeps.
  [ $((r % 3)) -eq 0 ] && rm -rf /churn/d$((r-10)) /churn/d$((r-11)) /churn/d$((r-12)) \
    /vol/d$((r-10)) /vol/d$((r-11)) /vol/d$((r-12))
  r=$((r+1))
done
echo stopped at $r
"""


def test_container_churning_files_under_the_scan(engine_f, tmp_path):
    eng = engine_f
    fs_bytes, fs_files = fs_size(eng.data_root)
    eng.docker("volume", "create", "dse-churn-vol")
    exp = None
    try:
        eng.docker("run", "-d", "--name", "dse-churn", "--network", "none", "-v", "dse-churn-vol:/vol",
                   BASE, "sh", "-c", CHURN)  # fmt: skip
        wait_for(lambda: "churning" in eng.docker("logs", "dse-churn"), 20, "churn started")
        exp = ExporterProcess(eng.host, tmp_path / "log", FAST).start()
        s = scan_after(exp, time.time(), timeout=40)
        runs0, fails0 = runs(s, "scan"), failures(s, "scan")
        rw_seen, vol_seen = set(), set()
        with ScrapeWatcher(exp.url, check=sane(fs_bytes, fs_files)) as watch:
            t = last_ok(s, "scan")
            for _ in range(8):  # eight more scans, each while the container churns
                s = exp.wait_until(lambda s, t=t: runs(s, "scan") > runs0 and last_ok(s, "scan") > t,
                                   timeout=30, what="next scan")  # fmt: skip
                t = last_ok(s, "scan")
                rw_seen.add(value(s, P + "container_rw_bytes", container="dse-churn"))
                vol_seen.add(value(s, P + "volume_files", volume="dse-churn-vol"))
                assert exp.proc.poll() is None
            assert eng.docker("inspect", "-f", "{{.State.Running}}", "dse-churn").strip() == "true"
            s = exp.scrape()
        assert not watch.failures, watch.failures[:5]
        assert not watch.problems, watch.problems[:10]
        assert watch.ok >= 20
        # The scan really walked a tree that changed under it.
        assert None not in rw_seen and len(vol_seen) > 1, (rw_seen, vol_seen)
        # Failures are allowed only when reported, and must be the exception.
        n_runs, n_fails = runs(s, "scan") - runs0, failures(s, "scan") - fails0
        SUMMARY.append(f"test_faults: churn: {n_runs} scans, {n_fails} failed, rw seen {sorted(rw_seen)}")
        assert n_runs >= 8 and n_fails <= n_runs // 4, (n_runs, n_fails)
        assert len(failed_samples(exp, "scan")) >= failures(s, "scan")
        # No malformed layout entry here (the churn writes files, never layerdb or image
        # configs, and the container's mount entry was complete before the exporter started).
        assert value(s, P + "sampler_skipped_items", sampler="scan") == 0
        assert value(s, P + "scan_unreadable_entries") == 0  # ENOENT races are not errors
        # Every scrape above answered; none left a family group out (the collector would only
        # count that here).
        assert value(s, P + "collector_errors_total") == 0

        # Churn over: the next scan that starts after the container stopped matches du.
        (eng.data_root / "volumes" / "dse-churn-vol" / "_data" / "STOP").touch()
        eng.docker("wait", "dse-churn")
        s = scan_started_after(exp, time.time())
        vol = eng.data_root / "volumes" / "dse-churn-vol"
        assert value(s, P + "volume_disk_bytes", volume="dse-churn-vol") == du(vol)[0]
        assert value(s, P + "volume_files", volume="dse-churn-vol") == du(vol)[1]
        upper = json.loads(eng.docker("inspect", "dse-churn"))[0]["GraphDriver"]["Data"]["UpperDir"]
        assert value(s, P + "container_rw_bytes", container="dse-churn") == du(upper)[0]
    finally:
        if exp is not None:
            exp.stop()
        eng.docker("rm", "-f", "dse-churn", check=False)
        eng.docker("volume", "rm", "-f", "dse-churn-vol", check=False)


# -- 4. the Docker root changes between the layout read and the walk ----------------------


def test_root_changes_under_the_scan(engine_f, tmp_path):
    eng = engine_f
    root = eng.data_root
    fs_bytes, fs_files = fs_size(root)
    # Each cycle makes a volume and then an image, and removes both the moment the next scan's
    # layout read first reads the image's layer entry: listed, never walked (a walked layer
    # would come from the cache), and gone by the time the walk gets there.
    # - even cycles, from under dockerd's feet: the layer dir and the volume's data deleted
    #   right then by the watching thread, then `docker rmi` and `docker volume rm` tidy up;
    # - odd cycles, the way an operator does it: `docker rmi`, `docker volume rm`.
    # Two padding trees, walked first (one per worker), hold the walks of layers and volumes
    # back a fraction of a second after the layout read, so the removals land in between.
    pads = [root / "aa-pad-0", root / "aa-pad-1"]
    for pad in pads:
        fill(pad, 40, 1000)
    args = [*FAST, "--sampler.scan.interval", "2s", "--sampler.scan.workers", "2"]
    exp = ExporterProcess(eng.host, tmp_path / "log", args).start()
    made: list[tuple[str, str]] = []  # (image, volume) still to remove
    layerdb_dir = root / "image" / "overlay2" / "layerdb" / "sha256"
    layer_files, volume_files = 1500, 1000  # what a whole walk counts at least
    try:
        s = scan_after(exp, time.time(), timeout=40)
        runs0, fails0 = runs(s, "scan"), failures(s, "scan")

        # What each scan reported for the removed objects: fewer inodes than the whole tree
        # means the scan listed it and then found it half-removed or gone.
        seen: dict[tuple[str, str], set[float]] = {}

        def record(s: Samples) -> list[str]:
            for fam, label in (("layer_files", "diff_id"), ("volume_files", "volume")):
                for lbls, v in s.get(P + fam, []):
                    seen.setdefault((fam, lbls[label]), set()).add(v)
            return []

        check = sane(fs_bytes, fs_files)
        under_feet: list[tuple[str, str]] = []  # keys removed by the watching thread
        operator: list[tuple[str, str]] = []  # keys removed with the CLI
        with ScrapeWatcher(exp.url, check=lambda s: check(s) + record(s)) as watch:
            for i in range(6):
                image, volume = f"dse-root-churn:{i}", f"dse-root-vol-{i}"
                eng.docker("volume", "create", volume)
                vdir = root / "volumes" / volume
                fill(vdir / "_data", 4, volume_files // 4)
                tar = many_files_tar(layer_files, image)
                chain = hashlib.sha256(tar).hexdigest()  # one layer: chain ID = diff ID

                def pull_the_rug(chain: str = chain, vdir: Path = vdir) -> None:
                    ldir = root / "overlay2" / (layerdb_dir / chain / "cache-id").read_text().strip()
                    link = (ldir / "link").read_text().strip()
                    shutil.rmtree(ldir)
                    shutil.rmtree(vdir / "_data")
                    (root / "overlay2" / "l" / link).unlink(missing_ok=True)

                keys = [("layer_files", chain[:12]), ("volume_files", volume)]
                with FirstRead(layerdb_dir, chain, pull_the_rug if i % 2 == 0 else None) as first:
                    eng.docker("import", "-", image, input=tar)
                    made.append((image, volume))
                    assert first.opened.wait(15), "no scan read the new layer"
                    assert first.done.wait(15) and first.error is None, first.error
                    (under_feet if i % 2 == 0 else operator).extend(keys)
                eng.docker("rmi", image)
                eng.docker("volume", "rm", volume)
                made.pop()
            s = exp.scrape()
        whole = {"layer_files": layer_files, "volume_files": volume_files}
        met = [k for k in under_feet + operator if any(v < whole[k[0]] for v in seen.get(k, ()))]
        SUMMARY.append(
            f"test_faults: scans listed and then met {len(met)} of {len(under_feet + operator)} objects "
            f"removed between their layout read and their walk"
        )
        # Removed right after the layout read listed them, before any walk: that scan must
        # have reported them short (a gone dir walks as nothing), never as the whole tree.
        assert set(under_feet) <= set(met), ([k for k in under_feet if k not in met], seen)
        assert not watch.failures, watch.failures[:5]
        assert not watch.problems, watch.problems[:10]
        n_runs, n_fails = runs(s, "scan") - runs0, failures(s, "scan") - fails0
        SUMMARY.append(f"test_faults: root changes: {n_runs} scans, {n_fails} failed")
        assert n_runs >= 5 and n_fails <= n_runs // 4, (n_runs, n_fails)
        assert len(failed_samples(exp, "scan")) >= failures(s, "scan")

        # The root is stable again: the figures match du, the layer cache forgot the removed
        # layers, no removed volume or layer is left in the metrics.
        truth = layerdb(root)
        pending = {"overlay2", "image", "volumes", *(p.name for p in pads)}
        for _ in range(3):  # dockerd may still be finishing a removal: three fresh scans at most
            s = scan_started_after(exp, time.time())
            got = {
                lbl["dir"]: (v, value(s, P + "root_files", dir=lbl["dir"]))
                for lbl, v in s[P + "root_disk_bytes"]
            }
            for name in sorted(pending):
                if got.get(name) == du(root / name):
                    pending.discard(name)
            if not pending:
                break
        assert not pending, {n: (got.get(n), du(root / n)) for n in pending}
        assert value(s, P + "layers") == len(truth)
        assert value(s, P + "scan_cached_layers") == value(s, P + "layers")
        for diff, cache_id in truth.items():
            d12 = diff.split(":")[1][:12]
            assert value(s, P + "layer_disk_bytes", diff_id=d12) == du(root / "overlay2" / cache_id)[0]
        assert {lbl["diff_id"] for lbl, _ in s[P + "layer_disk_bytes"]} == {
            d.split(":")[1][:12] for d in truth
        }
        assert {lbl["volume"] for lbl, _ in s.get(P + "volume_disk_bytes", [])} == {
            p.name for p in (root / "volumes").iterdir() if p.is_dir()
        }
        assert value(s, P + "orphan_dirs") == 0
        assert value(s, P + "scan_unreadable_entries") == 0
        assert exp.proc.poll() is None
    finally:
        exp.stop()
        for image, volume in made:
            eng.docker("rmi", image, check=False)
            eng.docker("volume", "rm", volume, check=False)
        for pad in pads:
            shutil.rmtree(pad, ignore_errors=True)


def test_layer_recreated_under_the_same_chain_id(engine_f, tmp_path):
    """An image removed and pulled (here: imported) again between two scans: the same content
    gives the same chain ID, but dockerd stores it under a new cache-id. The scan must follow
    the layerdb to the new dir, not keep what it read for that chain ID before."""
    eng = engine_f
    root = eng.data_root
    layerdb_dir = root / "image" / "overlay2" / "layerdb" / "sha256"
    tar = many_files_tar(300, "dse-again")
    chain = hashlib.sha256(tar).hexdigest()  # one layer: chain ID = diff ID
    eng.docker("import", "-", "dse-again:1", input=tar)
    old = (layerdb_dir / chain / "cache-id").read_text().strip()
    args = [*FAST, "--sampler.scan.interval", "3s"]
    exp = ExporterProcess(eng.host, tmp_path / "log", args).start()
    try:
        s = scan_after(exp, time.time(), timeout=40)
        assert value(s, P + "layer_disk_bytes", diff_id=chain[:12]) == du(root / "overlay2" / old)[0]
        for _ in range(3):  # the swap must fall between two scans; a few tries at most
            r = runs(exp.scrape(), "scan")
            exp.wait_until(lambda s, r=r: runs(s, "scan") > r, timeout=20, what="a scan done")
            eng.docker("rmi", "dse-again:1")
            eng.docker("import", "-", "dse-again:1", input=tar)
            swapped = time.time()
            exp.wait_until(lambda s, r=r: runs(s, "scan") > r + 1, timeout=20, what="the next scan")
            if scan_starts(exp)[-1] > swapped:
                break  # that next scan started after the swap: none saw it half done
        else:
            pytest.fail("every swap overlapped a scan")
        new = (layerdb_dir / chain / "cache-id").read_text().strip()
        assert new != old and not (root / "overlay2" / old).exists()
        s = scan_started_after(exp, time.time())
        s = scan_started_after(exp, time.time())
        got = {
            "layer_disk_bytes": value(s, P + "layer_disk_bytes", diff_id=chain[:12]),
            "orphan_dirs": value(s, P + "orphan_dirs"),
            "driver_disk_bytes{owner=orphan}": value(s, P + "driver_disk_bytes", owner="orphan"),
            "scan_cached_layers": value(s, P + "scan_cached_layers"),
        }
        want = {
            "layer_disk_bytes": du(root / "overlay2" / new)[0],
            "orphan_dirs": 0,
            "driver_disk_bytes{owner=orphan}": 0,
            "scan_cached_layers": len(layerdb(root)),
        }
        assert got == want, f"the scan still follows the chain's old cache-id {old[:12]}, not {new[:12]}"
    finally:
        exp.stop()
        eng.docker("rmi", "dse-again:1", check=False)


# -- 5. SIGTERM, idle and mid-scan -------------------------------------------------------


@pytest.fixture(scope="module")
def engine_big() -> Iterator[PrivateEngine]:
    """An engine whose root holds a volume of 200,000 files: a scan of it takes a while."""
    eng = PrivateEngine(TEST_ROOT / "sigterm")
    start_on_tmpfs(eng)
    try:
        eng.docker("import", "-", BASE, input=busybox_tar())
        eng.docker("volume", "create", "dse-big")
        fill(eng.data_root / "volumes" / "dse-big" / "_data", 200, 1000)
        yield eng
    finally:
        eng.stop()


def forkserver_workers(pid: int) -> tuple[list[int], list[int]]:
    """(every descendant of the exporter, the walker's worker processes)."""
    kids = descendants(pid)
    servers = [k for k in kids if "forkserver" in cmdline(k)]
    workers = [k for k in kids if any(k in descendants(fs) for fs in servers)]
    return kids, workers


def sigterm_and_check(
    exp: ExporterProcess, kids: list[int], what: str, send: Callable[[], None] | None = None
) -> None:
    """SIGTERM the exporter (by `send`, else to its pid) and check it stops cleanly."""
    assert kids, "no child processes recorded"
    direct = children(exp.proc.pid)
    roles = sorted(
        "walk worker"
        if k not in direct
        else "forkserver"
        if "forkserver" in cmdline(k)
        else "resource_tracker"
        if "resource_tracker" in cmdline(k)
        else cmdline(k)[:60]
        for k in kids
    )
    (send or (lambda: exp.proc.send_signal(signal.SIGTERM)))()
    try:
        rc = exp.proc.wait(10)
    except subprocess.TimeoutExpired:
        exp.proc.kill()
        exp.proc.wait(5)
        pytest.fail(f"exporter still running 10 s after SIGTERM; log: {exp.tail()}")
    assert rc == 0, exp.tail()
    assert not port_open(exp.port), "the listening port still accepts connections"
    # The forkserver notices its parent is gone at once; allow it a moment to do so.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(alive(k) for k in kids):
        time.sleep(0.05)
    left = {k: cmdline(k) for k in kids if alive(k)}
    assert not left, f"child processes left behind: {left}"
    lines = log_lines(exp)
    events = [x.get("event") for x in lines]
    assert "signal received, stopping" in events and "stopped" in events
    after = lines[events.index("signal received, stopping") :]
    late = sum(1 for x in after if x.get("event") == "sample" and x.get("sampler") == "scan")
    SUMMARY.append(f"test_faults: SIGTERM {what}: children {roles} all gone; scans finished after it: {late}")


def test_sigterm_when_idle(engine_big, tmp_path):
    args = [*FAST, "--sampler.scan.interval", "1h", "--sampler.scan.workers", "2"]
    exp = ExporterProcess(engine_big.host, tmp_path / "log", args).start()
    kids: list[int] = []
    try:
        scan_after(exp, 0, timeout=60)
        _, workers = forkserver_workers(exp.proc.pid)
        assert workers, "the scan ran without worker processes"

        def quiet() -> bool:
            a = sum(cpu_ticks(k) for k in workers)
            time.sleep(0.3)
            return sum(cpu_ticks(k) for k in workers) == a

        wait_for(quiet, 20, "workers idle")
        kids = descendants(exp.proc.pid)
        sigterm_and_check(exp, kids, "when idle")
    finally:
        exp.stop()
        kill_recorded({k: cmdline(k) for k in kids})


def test_sigterm_mid_scan(engine_big, tmp_path):
    args = [*FAST, "--sampler.scan.budget", "10m", "--sampler.scan.workers", "2"]
    exp = ExporterProcess(engine_big.host, tmp_path / "log", args).start()
    kids: list[int] = []
    try:
        scan_after(exp, 0, timeout=60)
        _, workers = forkserver_workers(exp.proc.pid)
        assert workers, "the scan ran without worker processes"

        def busy() -> bool:
            a = [cpu_ticks(k) for k in workers]
            time.sleep(0.03)
            return any(cpu_ticks(k) - t >= 2 for k, t in zip(workers, a, strict=True))

        # A scan is walking the big volume right now: its workers are burning CPU.
        wait_for(busy, 20, "a scan in progress", every=0.0)
        kids, workers_now = forkserver_workers(exp.proc.pid)
        assert set(workers) <= set(kids) and workers_now
        sigterm_and_check(exp, kids, "mid-scan")
    finally:
        exp.stop()
        kill_recorded({k: cmdline(k) for k in kids})


def test_sigterm_taken_by_a_thread_other_than_main(engine_big, tmp_path):
    """The kernel hands a process-directed signal to any thread that does not block it: a busy
    one (the scan's) can take it. Python runs handlers in the main thread only, so a main thread
    asleep in an untimed wait never saw it and the exporter ran on (a CI failure, ~1 run in 30
    mid-scan). Here the signal goes to one chosen non-main thread every time (tgkill)."""
    args = [*FAST, "--sampler.scan.interval", "1h", "--sampler.scan.workers", "2"]
    exp = ExporterProcess(engine_big.host, tmp_path / "log", args).start()
    kids: list[int] = []
    try:
        scan_after(exp, 0, timeout=60)
        pid = exp.proc.pid
        others = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
        assert others, "the exporter runs no thread besides main"
        kids = descendants(pid)
        libc = ctypes.CDLL(None, use_errno=True)

        def to_a_thread() -> None:
            if libc.tgkill(pid, others[0], signal.SIGTERM) != 0:
                raise OSError(ctypes.get_errno(), "tgkill")

        sigterm_and_check(exp, kids, "to a non-main thread", send=to_a_thread)
    finally:
        exp.stop()
        kill_recorded({k: cmdline(k) for k in kids})
