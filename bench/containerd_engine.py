"""containerd image store, the real thing: the scan of the test engine's root beside `du`, in one run.

bench/containerd_store.py times a synthetic root shaped like Docker's on the containerd image
store; this times the root of the real engine the test suite uses: Debian trixie's Docker 26.1
with `"features": {"containerd-snapshotter": true}`, private in a mount namespace + chroot into a
copy R of the cached trixie rootfs (tests/harness/trixie.py), started as scripts/accuracy.py
starts it. Two states of it are timed, one after the other: seeded with the test suite's state
(tests/harness/trixie_seed.py: busybox images, a few hundred inodes), then with real images added
as a host holds them (add_host_images: the suite's two cached Debian base images imported, an
application image built on one, a running container of it), each left to settle first. The
engine runs while it is timed (its containers too: running, paused, exited, created), and is
stopped at the end. Each state is sampled as the exporter samples it with `--path.rootfs R`: the
engine sampler once (through the socket R/run/NAME.sock) into a `Store`, then the scan from
outside. Over the Docker root (R/var/lib/NAME) it times
  (a) `du -sx --block-size=1 ROOT`;
  (b) a full scan: a fresh ScanSampler (empty cache), one Walker(workers=nproc) whose pool the
      warm-up started, `run()`;
  (c) a first rescan and (d) a steady-state rescan: `run()` twice more on the same sampler
      (an untimed `gc.collect()` before the steady one), nothing changed; and for reference,
      after the interleaved runs, steady-state rescans back to back (caches warm);
each a median of --runs, interleaved, after one warm-up of each; checks that every scan
succeeded with attribution and that du's total and the scan's `root_dirs` agree, and writes the
section "containerd image store: the test engine's root" of docs/benchmarks.md.

The engine's R is `<test root>/bench-engine/tx` (the test root: $DSE_TEST_ROOT, else
tests/harness/engine.py's default_test_root()), its NAME derived from it, so neither a test run
nor scripts/accuracy.py ever meets this engine, nor this script theirs. As root.

    python bench/containerd_engine.py [--runs N] [--no-write] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import (
    BENCHMARKS,
    SWING_NOTE,
    busy_note,
    containerd_scan_rows,
    emit,
    scan_machine_line,
    scan_targets,
    timing_table,
)
from bench.scan_vs_du import du_command, excluded_by_scan, parallelism, run_du, run_scan, scan_round
from exporter import logs
from exporter.model import EngineSnapshot, ScanSnapshot
from exporter.samplers import EngineSampler, Store
from exporter.scan import ScanSampler
from exporter.sources.bolt import BOLT_IMPL
from exporter.sources.containerd_meta import ACTIVE, COMMITTED, read_metadata, read_snapshots
from exporter.sources.du import WALK_IMPL, Walker
from exporter.sources.engine import EngineClient
from exporter.stores.containerd import META_DB, SNAPSHOTTER
from tests.harness.accuracy.common import settle
from tests.harness.baseimage import BUILD, RUNTIME, base_tarball
from tests.harness.engine import default_test_root
from tests.harness.seed import wait_for_log
from tests.harness.trixie import CSTORE, ChrootEngine, mounts_under, name_for, rootfs_copy
from tests.harness.trixie_seed import SeededTrixie, seed_trixie

# A root of its own: the engine's NAME derives from it, never a test run's or accuracy's.
BENCH_ROOT = Path(os.environ.get("DSE_TEST_ROOT") or default_test_root()) / "bench-engine"
# What the scan never enters on this store: a container's mounts/ dir (shm, secrets). From
# outside the engine's mount namespace it and its shm/ are plain dirs, which du counts.
SCAN_EXCLUDES = ("containers/*/mounts",)
# Real images, as a host holds them: the suite's Debian base images (a rootfs each, one layer).
HOST_IMAGES = {RUNTIME: "dse-bench/python:bookworm", BUILD: "dse-bench/python-build:bookworm"}
APP_IMAGE, APP_CONTAINER = "dse-bench/app:1", "dse-bench-app"
WARM_RUNS = 20  # rescans back to back, a median of them a run (the row for reference)


def sample_engine(seeded: SeededTrixie) -> Store:
    """A Store holding one engine sample, as the exporter takes it with --path.rootfs R."""
    store = Store()
    client = EngineClient(seeded.docker_host)
    if not EngineSampler(store, client, rootfs=str(seeded.rootfs)).run():
        raise SystemExit(f"engine sample failed: {store.status('engine')}")
    return store


def scan(sampler: ScanSampler) -> tuple[float, ScanSnapshot]:
    """One timed run (bench/scan_vs_du.py's run_scan: it fails on an unsuccessful run), whose
    snapshot must be attributed: without attribution the store reader did not know the layout."""
    elapsed, snap = run_scan(sampler)
    if not snap.attribution:
        raise SystemExit(f"scan without attribution: {snap.attribution_reason}")
    return elapsed, snap


def measure(
    store: Store, rootfs: Path, root: Path, runs: int, workers: int
) -> tuple[dict[str, list[float]], ScanSnapshot, ScanSnapshot, float, int, bool, int]:
    """bench/containerd_store.py's measure() without its bolt reads, on the engine's root; and
    how many inodes the last steady-state rescan walked (what can change)."""
    made: list[ScanSampler] = []

    def sampler() -> ScanSampler:
        made[:] = [ScanSampler(store, walker, rootfs=str(rootfs), budget=600)]
        return made[0]

    walker = Walker(workers=workers)
    empty = tempfile.TemporaryDirectory(prefix="dse-bench-empty-")  # du's start and exit alone
    try:
        # Warm-up, one of each: du first warms the page cache, so the first scan's extra time over
        # a timed one is the start of the worker pool (reported on its own).
        run_du(root)
        run_du(Path(empty.name))
        cold_full, whole = scan(sampler())
        warm = sampler()
        scan(warm)
        scan(warm)

        keys = ("du", "du_empty", "full", "first_rescan", "steady", "steady_warm")
        times: dict[str, list[float]] = {k: [] for k in keys}
        du_total, same = 0, True
        for _ in range(runs):
            t, du_total = run_du(root)
            times["du"].append(t)
            times["du_empty"].append(run_du(Path(empty.name))[0])
            full, steady = scan_round(sampler, times, scan)
            for other in (full, whole):
                same &= steady.root_dirs == other.root_dirs and steady.owners == other.owners
        # For reference: rescans back to back, the CPU's caches warm with the last one's code and
        # data, as no daemon's rescan minutes after the last finds them.
        for _ in range(runs):
            times["steady_warm"].append(statistics.median(scan(made[0])[0] for _ in range(WARM_RUNS)))
    finally:
        walker.close()
        empty.cleanup()
    # The sampler's hints: the inodes of each dir it walked last time, the ones walked every scan.
    return times, full, steady, cold_full, du_total, same, sum(made[0]._hints.values())


def describe_store(root: Path) -> dict[str, Any]:
    """What containerd recorded: the snapshotter's records by kind, each namespace's images,
    snapshots, blobs and leases (meta.db)."""
    croot = root / "containerd" / "daemon"
    snaps = read_snapshots(croot / SNAPSHOTTER / "metadata.db")
    meta = read_metadata(croot / META_DB)
    recs = snaps.by_id.values()
    return {
        "records": len(snaps.by_id),
        "committed": sum(r.kind == COMMITTED for r in recs),
        "active": sum(r.kind == ACTIVE for r in recs),
        "namespaces": {
            name: {
                "images": len(ns.images),
                "snapshots": len(ns.snapshots),
                "blobs": len(ns.blobs),
                "leases": len(ns.leases),
            }
            for name, ns in sorted(meta.namespaces.items())
        },
    }


def add_host_images(engine: ChrootEngine) -> str:
    """What a host holds beyond the suite's small seeded state: two real Debian images (the
    suite's cached bookworm rootfs tarballs, tests/harness/baseimage.py, `docker import`ed), an
    application image built on the smaller as a Dockerfile would make one (a Python venv in a
    layer of its own) and a running container of it. Returns what was added, for the section."""
    counts = []
    for packages, ref in HOST_IMAGES.items():
        tar = base_tarball(packages)
        engine.docker("import", "-", ref, input=tar.read_bytes(), timeout=600)
        with tarfile.open(tar) as t:
            counts.append(f"`{ref}` ({sum(1 for _ in t):,} entries, {tar.stat().st_size:,} bytes of tar)")
    base = next(iter(HOST_IMAGES.values()))
    engine.build(APP_IMAGE, f"FROM {base}\nRUN python3 -m venv /opt/venv\n")
    engine.docker(
        "run", "-d", "--name", APP_CONTAINER, "--network", "none", "--stop-timeout", "1", APP_IMAGE,
        "sh", "-c", "/opt/venv/bin/python -c 'print(42)' > /tmp/state && echo up && sleep 3600",
    )  # fmt: skip
    wait_for_log(engine, APP_CONTAINER, "up", timeout=120)
    return (
        f"two Debian bookworm images, {' and '.join(counts)}, each one layer of debootstrap's"
        f" rootfs (the suite's cached base images); `{APP_IMAGE}`, built on the first by the classic"
        " builder (`RUN python3 -m venv /opt/venv`: pip's files in a layer of its own, as an"
        " application image holds its software); and a running container of it that wrote a file"
    )


@dataclass
class StateRun:
    """One state of the engine, measured: what `measure` returns and what describes it."""

    root: Path
    engine: EngineSnapshot
    facts: dict[str, Any]
    times: dict[str, list[float]]
    full: ScanSnapshot
    steady: ScanSnapshot
    cold_full: float
    du_total: int
    same_scans: bool
    live_inodes: int  # walked by every rescan
    settled: float
    excluded: tuple[int, int]
    mounted: list[str]
    root_own: int

    @property
    def med(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.times.items()}


def run_state(label: str, seeded: SeededTrixie, runs: int, workers: int) -> StateRun:
    """Let the engine settle, sample it once, and time du and the scans of its root."""
    settled = settle(seeded.data_root)  # idle, so du and every scan see the same root
    store = sample_engine(seeded)
    engine_snap = store.latest(EngineSnapshot)
    assert engine_snap is not None
    root = seeded.data_root
    facts = describe_store(root)
    print(f"scanning {root} ({label}); warming up", file=sys.stderr)
    times, full, steady, cold_full, du_total, same, live = measure(store, seeded.rootfs, root, runs, workers)
    return StateRun(
        root,
        engine_snap,
        facts,
        times,
        full,
        steady,
        cold_full,
        du_total,
        same,
        live,
        settled,
        excluded_by_scan(root, SCAN_EXCLUDES),
        mounts_under(root),  # in this (the host's) mount namespace, where du and the scan run
        os.lstat(root).st_blocks * 512,  # du counts the root dir itself; root_dirs are its entries
    )


def times_x(r: float) -> str:
    """A ratio: below 10x, whole numbers hide the figure (0.6x would print 1x)."""
    return f"{r:.2f}x" if r < 10 else f"{r:.0f}x"


def state_lines(s: StateRun, workers: int, rootfs: Path) -> list[str]:
    """A state's paragraph: its root, what the scan found, the totals, its table and ratios."""
    med, full, steady = s.med, s.full, s.steady
    scan_disk = sum(u.disk_bytes for u in full.root_dirs.values())
    scan_files = sum(u.files for u in full.root_dirs.values())
    excluded, n_excluded = s.excluded
    parts = (
        f"du {s.du_total:,} = the scan's `root_dirs` total {scan_disk:,} + the root dir's own block"
        f" {s.root_own:,} + {excluded:,} under the {n_excluded} `containers/*/mounts` dirs the scan"
        " never enters (from outside the engine's mount namespace they and their `shm/` are plain dirs,"
        " which du counts). The running and paused containers' rootfs mount points"
        " `rootfs/overlayfs/<id>` are mounts in that namespace only, plain empty dirs out here, counted"
        " by both; "
        + (
            "no filesystem is mounted under the root out here, so `-x` skips nothing"
            if not s.mounted
            else f"mounted under the root out here, which `-x` and the scan skip: {', '.join(s.mounted)}"
        )
    )
    gap = s.du_total - scan_disk - s.root_own - excluded
    same = f"agree to the byte: {parts}" if gap == 0 else f"**differ** by {gap:+,} bytes beyond: {parts}"
    rows = [
        (f"`{shlex.join(du_command(s.root))}`", "du", ""),
        ("for reference: the same `du` of an empty dir", "du_empty", "du's own start and exit"),
        *containerd_scan_rows(workers, full, steady),
        (
            f"for reference: steady-state rescans back to back, {WARM_RUNS} a run (the median of each)",
            "steady_warm",
            "caches warm: not what a rescan minutes after the last finds",
        ),
    ]
    owners = ", ".join(f"{k} {u.disk_bytes:,}" for k, u in full.owners.items() if u.files)
    content = ", ".join(f"{k} {u.disk_bytes:,}" for k, u in full.content.items() if u.files)
    rw = [c for c in full.containers if c.rw is not None]
    states = ", ".join(f"{n} {st}" for st, n in sorted(Counter(c.state for c in full.containers).items()))
    namespaces = "; ".join(
        f"`{name}`: {n['images']} images, {n['snapshots']} snapshots, {n['blobs']} blobs,"
        f" {n['leases']} leases"
        for name, n in s.facts["namespaces"].items()
    )
    full_ratio, steady_ratio = med["full"] / med["du"], med["du"] / med["steady"]
    small = scan_files < 20_000
    bound = scan_files / max(s.live_inodes, 1)  # du's inodes per inode a rescan walks
    return [
        f"- Root: `{s.root}`, read from outside as the exporter reads it with `--path.rootfs"
        f" {rootfs}`: {scan_files:,} inodes, {scan_disk:,} bytes on disk, idle {s.settled:.0f} s after"
        f" the last change. The snapshotter's records: {s.facts['records']} ({s.facts['committed']}"
        f" committed, {s.facts['active']} active); meta.db, by namespace: {namespaces}. The engine lists"
        f" {len(s.engine.images)} images, {len(s.engine.containers)} containers ({states}) and"
        f" {len(s.engine.volumes)} volumes.",
        f"- What the scan found: by owner {owners}; {len(full.layers)} image layers, {len(rw)} of"
        f" {len(full.containers)} containers with their writable layer; {len(full.orphans)} orphans,"
        f" {full.skipped} skipped, {full.errors} errors; content blobs by kind {content}.",
        f"- Totals: du and the scan {same}. Full and steady-state scans "
        + ("agree on every figure." if s.same_scans else "**disagree** (the root changed?)."),
        "",
        "| what | median ms | runs ms | what it covers |",
        "|---|---:|---:|---|",
        timing_table(rows, med, s.times),
        "",
        *scan_targets(full_ratio, steady_ratio, times_x(steady_ratio)),
        f"- du / first rescan = {times_x(med['du'] / med['first_rescan'])}: the rescan right after the full"
        " scan, which may still pay for it; the steady state is every rescan after it.",
        f"- For 50x the steady-state rescan must fit in {med['du'] / 50 * 1000:.1f} ms; it took"
        f" {med['steady'] * 1000:.1f} ms. It walks what can change, {s.live_inodes:,} of the root's"
        f" {scan_files:,} inodes (the writable layers, the containers' dirs, the volumes, the small"
        f" dirs: {sum(steady.walks.values())} walks), each every scan, as du walks each of its"
        f" inodes: so du / steady-state cannot be much above {bound:.0f}x here, whatever the rest of a"
        " rescan costs."
        + (
            f" That is not what binds here: the {sum(steady.walks.values())} small live dirs are measured"
            " by their settled listings, one lstat an inode in one batch (exporter.sources.livewalk);"
            " what is left is the rescan's own Python (the last read's stamps checked in one call and"
            " both bolt files' meta pages read, exporter.sources.witness; the plan's single inodes in"
            " one call; the attribution's check that nothing it sums changed), about the same on any"
            " root with as many containers, volumes and small dirs, and it runs with the CPU's caches"
            " cold:"
            f" {med['steady_warm'] * 1000:.2f} ms back to back against {med['steady'] * 1000:.2f} ms"
            " timed between du and a full scan, as a daemon's rescan minutes after the last finds them."
            if bound >= 50
            else ""
        )
        + (
            f" And in a root this small du's own start and exit are {med['du_empty'] * 1000:.1f} ms of"
            f" its {med['du'] * 1000:.1f} ms."
            if small
            else f" The {len(full.layers)} image layers' `fs/` are never walked (metadata.db records"
            " their usage at commit)."
        ),
        "- First full scan including the start of the worker pool (forkserver):"
        f" {s.cold_full * 1000:,.0f} ms.",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--out", type=Path, default=BENCHMARKS)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    logs.setup(level="warning")  # the product's logging, minus its one info line per sample
    if os.geteuid() != 0:
        raise SystemExit("run as root: the engine runs in a mount namespace + chroot")

    engine = ChrootEngine(rootfs_copy(BENCH_ROOT), name_for(BENCH_ROOT, CSTORE), CSTORE)
    started = time.monotonic()
    try:
        print(f"starting and seeding {engine.name} in {engine.rootfs}", file=sys.stderr)
        engine.start()
        seeded = SeededTrixie(engine, seed_trixie(engine), time.monotonic() - started)
        load_before = os.getloadavg()[0]
        small = run_state("the suite's seeded state", seeded, args.runs, args.workers)
        t = time.monotonic()
        added = add_host_images(engine)
        added_seconds = time.monotonic() - t
        host = run_state("with real images", seeded, args.runs, args.workers)
        load_after = os.getloadavg()[0]
        ceiling = parallelism(args.workers)
    finally:
        engine.stop()

    ei = small.engine.info
    cmd = "python bench/containerd_engine.py" + (f" --runs {args.runs}" if args.runs != 5 else "")
    machine = scan_machine_line(load_before, load_after, f"{WALK_IMPL}, bolt walk {BOLT_IMPL}")
    lines = [
        "## containerd image store: the test engine's root",
        "",
        f"- Machine: {machine}",
        f"- Command: `{cmd}` ({args.runs} timed runs of each, interleaved, after one warm-up of each,"
        " so every contender sees a warm page cache); `make bench-containerd` runs it after"
        " `bench/containerd_store.py`. As root.",
        f"- Engine: Debian trixie's Docker {ei.version} (API {ei.api_version}) with the containerd image"
        ' store (`"features": {"containerd-snapshotter": true}`, storage driver'
        f" `{ei.storage_driver}`), the test suite's engine: private in a mount namespace + chroot into"
        f" `{seeded.rootfs}` (`tests/harness/trixie.py`, started as `scripts/accuracy.py` starts"
        " it); running while timed (its containers too), stopped after. Two states of it, timed one"
        " after the other in the same run, each sampled once by `EngineSampler` through the engine's"
        " socket as the exporter with `--path.rootfs` samples it, each scan checked to succeed with"
        " attribution.",
        *busy_note(ceiling, args.workers),
        f"- Parallel ceiling of the machine, {args.workers} processes spinning a CPU-bound loop vs one:"
        f" {ceiling:.2f}x.",
        SWING_NOTE,
        "",
        "### The suite's seeded state",
        "",
        f"- Seeded by `tests/harness/trixie_seed.py` in {seeded.started_seconds:.0f} s with the engine's"
        " start: imported, classic-built, BuildKit-built and loaded busybox images, running, paused,"
        " exited and created containers, one with 2,000 log lines, used and unused volumes, BuildKit"
        " cache, one leaked snapshot dir. What the tests need, and far smaller than a host.",
        *state_lines(small, args.workers, seeded.rootfs),
        "",
        "### With real images, as on a host",
        "",
        f"- The same engine, then {added}, added in {added_seconds:.0f} s."
        + (
            " The build removed its intermediate containers' snapshots, and containerd's cleanup"
            " after that removes the dirs no record names: the seeded state's leaked dir is gone,"
            " and no orphan is left."
            if small.full.orphans and not host.full.orphans
            else ""
        ),
        *state_lines(host, args.workers, seeded.rootfs),
        "",
    ]
    emit("\n".join(lines), args.no_write, args.out)
    return 0


if __name__ == "__main__":  # worker processes (forkserver) import this file: nothing runs then
    sys.exit(main())
