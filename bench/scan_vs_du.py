"""Scan vs du: the product's scan (`exporter.scan.ScanSampler`) against GNU `du`, side by side in one run.

Builds (once, then reuses) a synthetic Docker root shaped like a real one (overlay2 graphdriver:
layer dirs with their layerdb entries and image configs, containers with upper and init dirs,
layerdb mounts and json-file logs, volumes, the `overlay2/l` links), or takes a real one with
--tree, and times over that whole root:
  (a) `du -sx --block-size=1 ROOT`; -x keeps it out of the live mounts the scan never enters
      (as root, the synthetic root's are tmpfs mounts while the benchmark runs, as on a host)
  (b) a full scan: a fresh ScanSampler (empty cache), Walker(workers=nproc), `run()`
  (c) a steady-state rescan: `run()` again on the same sampler; nothing changed, layers cached
  (d) for reference, (b) with an in-process Walker(workers=1); and two parts of every scan
each a median of --runs, interleaved, after one warm-up of each; checks that du's total and the
scan's `root_dirs` agree, and writes the section "Scan vs du" of docs/benchmarks.md.

    python bench/scan_vs_du.py [--tree DOCKER_ROOT] [--rebuild] [--runs N] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import gc
import gzip
import hashlib
import json
import os
import random
import shlex
import stat
import statistics
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import SWING_NOTE, busy_note, emit, scan_machine_line, timing_table
from exporter import logs
from exporter.model import Container, EngineInfo, EngineSnapshot, SamplerStatus, ScanSnapshot, Volume
from exporter.samplers import Store
from exporter.scan import ScanSampler
from exporter.sources.du import WALK_IMPL, Walker, walk
from exporter.sources.layout import chain_ids, read_layout

DEFAULT_TREE = Path("/tmp/dse-bench-tree")  # holds docker/ (the Docker root) and manifest.json
TREE_VERSION = 3  # bump when build() changes: a cached tree of another version is rebuilt
SHAPE = {"layers": 300, "files": 200_000, "containers": 8, "volumes": 4}
# What the scan never enters (exporter.scan): a container's live overlay mount
# (overlay2/<mount-id>/merged) and its mounts/ dir (shm, secrets). On a host those mounts are
# other filesystems, so `du -x` skips them too; the synthetic tree makes them tmpfs mounts
# while it runs (as root) for the same effect. Patterns relative to the Docker root.
SCAN_EXCLUDES = ("overlay2/*/merged", "containers/*/mounts")
LIVE_MOUNTS = ("overlay2/*/merged", "containers/*/mounts/shm")


# --- the synthetic Docker root ----------------------------------------------------------------


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _short(rng: random.Random) -> str:
    """An overlay2 link id: 26 characters of [A-Z0-9], the name of a symlink in overlay2/l/."""
    return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(26))


def _size(rng: random.Random) -> int:
    r = rng.random()  # mostly small files, a thin tail of big ones: a typical image
    if r < 0.05:
        return 0
    if r < 0.45:
        return rng.randint(1, 512)
    if r < 0.93:
        return rng.randint(512, 8192)
    if r < 0.995:
        return rng.randint(8192, 65536)
    return rng.randint(65536, 1 << 20)


def _fill(rng: random.Random, top: Path, nfiles: int, whiteouts: bool = False) -> int:
    """nfiles files in nested dirs (fan-out ~20, ~40 files a dir), a few symlinks and hard links.
    Returns Docker's size of it: st_size of every non-directory, hard links once."""
    apparent, made, dirs = 0, 0, [top]
    top.mkdir(parents=True, exist_ok=True)
    blob = b"\0" * (1 << 20)
    while made < nfiles:
        parent = rng.choice(dirs[-60:]) if len(dirs) > 1 and rng.random() < 0.8 else rng.choice(dirs)
        d = parent / f"d{len(dirs)}"
        d.mkdir()
        dirs.append(d)
        for i in range(min(nfiles - made, rng.randint(10, 70))):
            p, r = d / f"f{i}.so", rng.random()
            if r < 0.03 and i:
                os.symlink(f"f{i - 1}.so", p)
                apparent += len(f"f{i - 1}.so")
            elif r < 0.04 and i:
                os.link(d / "f0.so", p)  # within the dir: counted once by everyone
            elif r < 0.045 and whiteouts:
                os.mknod(p, stat.S_IFCHR, os.makedev(0, 0))  # an overlay whiteout: size 0
            else:
                n = _size(rng)
                with open(p, "wb") as f:
                    f.write(blob[:n])
                apparent += n
            made += 1
    return apparent


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


DOCKER_FILES = (  # the rest of a Docker root: small, but every scan walks them
    ("buildkit/cache.db", 16384),
    ("buildkit/metadata_v2.db", 16384),
    ("buildkit/snapshots.db", 16384),
    ("buildkit/containerdmeta.db", 16384),
    ("network/files/local-kv.db", 32768),
    ("engine-id", 36),
)


DOCKER_DIRS = ("buildkit/content/ingest", "buildkit/executor", "plugins/tmp", "runtimes", "swarm", "tmp")


def docker_rest(rng: random.Random, root: Path, volumes: list[str], extra_dirs: tuple[str, ...] = ()) -> None:
    """A Docker root's dirs beside its layers, whatever its store: the volumes' data, its small
    database files and the (empty) dirs it keeps, with the store's own `extra_dirs`."""
    for v in volumes:
        _fill(rng, root / "volumes" / v / "_data", rng.randint(100, 400))
    _write(root / "volumes" / "metadata.db", b"\0" * 32768)
    for rel, size in DOCKER_FILES:
        _write(root / rel, b"\0" * size)
    for rel in (*DOCKER_DIRS, *extra_dirs):
        (root / rel).mkdir(parents=True, exist_ok=True)


def _driver_dir(d: Path, short: str, lower: list[str], links: Path) -> None:
    """What overlay2 keeps beside a diff/: its link id, its lower chain, work/, and the l/ symlink."""
    _write(d / "link", short)
    if lower:
        _write(d / "lower", ":".join(f"l/{s}" for s in lower))
        (d / "work" / "work").mkdir(parents=True, exist_ok=True)
    os.symlink(f"../{d.name}/diff", links / short)


def build(root: Path, seed: int = 7) -> dict[str, Any]:
    """Write a Docker root at `root` (which must not exist); returns the manifest."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    overlay = root / "overlay2"
    links = overlay / "l"
    links.mkdir(parents=True)
    image_dir = root / "image" / "overlay2"
    layerdb = image_dir / "layerdb"
    can_whiteout = os.geteuid() == 0

    # Layers form a forest like real images: a few bases, most layers stacked on the one before,
    # some branching off an earlier one. File counts are skewed: a few big layers, many small.
    n = SHAPE["layers"]
    weights = [rng.paretovariate(1.2) for _ in range(n)]
    scale = SHAPE["files"] / sum(weights)
    parents: list[int | None] = [
        None if i < 4 else (i - 1 if rng.random() < 0.6 else rng.randrange(i)) for i in range(n)
    ]
    diffs: list[list[str]] = []  # each layer's diff-id chain, bottom-up
    chains: list[str] = []
    lowers: list[list[str]] = []  # each layer's short ids, itself first, then its lower chain
    for i, w in enumerate(weights):
        p = parents[i]
        cache_id, short = _hex(rng), _short(rng)
        diff_id = f"sha256:{_hex(rng)}"
        diffs.append([*(diffs[p] if p is not None else []), diff_id])
        chains.append(chain_ids(diffs[i])[-1])
        lowers.append([short, *(lowers[p] if p is not None else [])])
        layer = overlay / cache_id
        size = _fill(rng, layer / "diff", max(1, round(w * scale)), whiteouts=can_whiteout and i % 3 == 0)
        _driver_dir(layer, short, lowers[i][1:], links)
        entry = layerdb / "sha256" / chains[i].removeprefix("sha256:")
        _write(entry / "diff", diff_id)
        _write(entry / "size", str(size))  # Docker's: apparent bytes of the diff, recorded once
        _write(entry / "cache-id", cache_id)
        if p is not None:
            _write(entry / "parent", chains[p])
        tar_split = "".join(f'{{"type":1,"name":"f{k}.so","size":{k * 37}}}\n' for k in range(40))
        _write(entry / "tar-split.json.gz", gzip.compress(tar_split.encode(), mtime=0))
        if i % 20 == 0:
            print(f"  layers {i}/{n}", file=sys.stderr)

    # Images: every leaf of the forest is an image's top layer.
    has_child = {p for p in parents if p is not None}
    images: list[tuple[str, int]] = []  # (image id, top layer index)
    repositories: dict[str, dict[str, str]] = {}
    for i in (i for i in range(n) if i not in has_child):
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
                "rootfs": {"type": "layers", "diff_ids": diffs[i]},
            },
            separators=(",", ":"),
        ).encode()
        image_id = hashlib.sha256(config).hexdigest()
        _write(image_dir / "imagedb" / "content" / "sha256" / image_id, config)
        _write(image_dir / "imagedb" / "metadata" / "sha256" / image_id / "lastUpdated", "2024-01-01")
        images.append((f"sha256:{image_id}", i))
        repo = f"bench/img{len(images)}"
        repositories[repo] = {f"{repo}:latest": f"sha256:{image_id}"}
    _write(image_dir / "repositories.json", json.dumps({"Repositories": repositories}))

    # Containers: a layerdb mount, an upper dir and an init dir in overlay2/, a container dir.
    volumes = [f"vol{i}" for i in range(SHAPE["volumes"])]
    containers: list[dict[str, Any]] = []
    for k in range(SHAPE["containers"]):
        cid, mount_id = _hex(rng), _hex(rng)
        image_id, top = rng.choice(images)
        running = k % 2 == 0
        init_short, upper_short = _short(rng), _short(rng)
        init = overlay / f"{mount_id}-init"
        _fill(rng, init / "diff", 8)
        _driver_dir(init, init_short, lowers[top], links)
        upper = overlay / mount_id
        _fill(rng, upper / "diff", rng.randint(20, 150))
        _driver_dir(upper, upper_short, [init_short, *lowers[top]], links)
        if running:  # the mount point of the container's overlay (a tmpfs while the bench runs)
            (upper / "merged").mkdir()
        m = layerdb / "mounts" / cid
        _write(m / "mount-id", mount_id)
        _write(m / "init-id", f"{mount_id}-init")
        _write(m / "parent", chains[top])
        cdir = root / "containers" / cid
        with_volume = volumes[k] if k < len(volumes) - 1 else None  # the last volume stays unused
        _write(
            cdir / f"{cid}-json.log", b'{"log":"hello\\n","stream":"stdout"}\n' * rng.randint(5_000, 60_000)
        )
        for name in ("config.v2.json", "hostconfig.json", "hostname", "hosts", "resolv.conf"):
            _write(cdir / name, "{}\n")
        (cdir / "checkpoints").mkdir()
        if running:  # the container's /dev/shm, a tmpfs (also while the bench runs)
            (cdir / "mounts" / "shm").mkdir(parents=True)
        containers.append(
            {
                "id": cid,
                "name": f"bench-{k}",
                "image_id": image_id,
                "state": "running" if running else "exited",
                "volumes": [with_volume] if with_volume else [],
            }
        )

    docker_rest(
        rng,
        root,
        volumes,
        ("plugins/storage/blobs/tmp", "trust"),
    )
    print(f"  built {root} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return {"version": TREE_VERSION, "seed": seed, "shape": SHAPE, "containers": containers}


def load_or_build(base: Path, rebuild: bool) -> tuple[Path, dict[str, Any]]:
    """The cached synthetic root under `base` if it was built by this version of build(), else a new one."""
    root, manifest_path = base / "docker", base / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    valid = (
        manifest.get("version") == TREE_VERSION
        and manifest.get("shape") == SHAPE
        and (root / "overlay2" / "l").is_dir()
    )
    if valid and not rebuild:
        return root, manifest
    if base.exists():
        unmount_under(base)  # left by a killed run
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=True)
    print(f"building the synthetic Docker root in {root} ...", file=sys.stderr)
    manifest = build(root)
    os.sync()  # settle delayed allocation: st_blocks of fresh files may still change otherwise
    manifest_path.write_text(json.dumps(manifest))  # last: a half-built tree is never reused
    return root, manifest


def unmount_under(base: Path) -> None:
    prefix = f"{base.resolve()}/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    for point in sorted((p for p in points if p.startswith(prefix)), reverse=True):
        subprocess.run(["umount", point], check=False)


@contextlib.contextmanager
def live_mounts(root: Path, synthetic: bool, patterns: tuple[str, ...] = LIVE_MOUNTS) -> Iterator[int]:
    """Make the synthetic root's live-mount stand-ins (`patterns`) real mounts (tmpfs, each
    holding a file the scan must not count) while the benchmark runs, as on a host. Yields how
    many were mounted."""
    mounted: list[Path] = []
    try:
        if synthetic and os.geteuid() == 0:
            for pattern in patterns:
                for point in sorted(root.glob(pattern)):
                    if not os.path.ismount(point):
                        subprocess.run(
                            ["mount", "-t", "tmpfs", "-o", "size=4m", "bench", str(point)], check=True
                        )
                    mounted.append(point)
                    (point / "data").write_bytes(b"\1" * 65536)
        yield len(mounted)
    finally:
        for point in reversed(mounted):
            subprocess.run(["umount", str(point)], check=False)


def excluded_by_scan(root: Path, patterns: tuple[str, ...] = SCAN_EXCLUDES) -> tuple[int, int]:
    """What du -sx counts under the dirs the scan never enters (`patterns`; bytes, dirs): on a
    host, the mounts/ dirs' own blocks (their contents are tmpfs); without mounts, the stand-ins too."""
    dev, total, n = os.lstat(root).st_dev, 0, 0
    for pattern in patterns:
        for path in root.glob(pattern):
            n += 1
            if os.lstat(path).st_dev == dev:  # a mount point itself is skipped by du -x
                total += walk(str(path)).disk_bytes  # what du -sx counts there (one filesystem)
    return total, n


def engine_snapshot(root: Path, manifest: dict[str, Any]) -> EngineSnapshot:
    """What the engine sampler would have published for this root (the scan needs its root_dir,
    driver and image store; containers and volumes give names and users)."""
    layout = read_layout(str(root), "overlay2")
    listed = manifest.get("containers") or [
        {"id": c.id, "name": c.id[:12], "image_id": "", "state": "running", "volumes": []}
        for c in layout.containers
    ]
    containers = tuple(
        Container(c["id"], c["name"], c["image_id"], c["image_id"][7:19], c["state"], tuple(c["volumes"]))
        for c in listed
    )
    users = {v: sum(v in c.volumes for c in containers) for v in layout.volumes}
    volumes = tuple(Volume(v, "local", str(root / "volumes" / v / "_data"), n) for v, n in users.items())
    info = EngineInfo(
        engine="docker",
        version="bench",
        api_version="1.41",
        storage_driver="overlay2",
        image_store="graphdriver",
        root_dir=str(root),
    )
    return EngineSnapshot(info=info, images=(), containers=containers, volumes=volumes, image_usage=None)


# --- the contenders ---------------------------------------------------------------------------


def du_command(root: Path) -> list[str]:
    return ["du", "-sx", "--block-size=1", str(root)]


def run_du(root: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    out = subprocess.run(du_command(root), capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if not out.stdout:
        raise SystemExit(f"du failed: {out.stderr.strip()}")
    return elapsed, int(out.stdout.split("\t", 1)[0])


def run_scan(sampler: ScanSampler) -> tuple[float, ScanSnapshot]:
    t0 = time.perf_counter()
    ok = sampler.run()
    elapsed = time.perf_counter() - t0
    status = sampler.store.status(sampler.name)
    if not ok:
        raise SystemExit(f"scan failed: {status.last_error if status else '?'}")
    return elapsed, sampler.store.snapshot(sampler.name)


def scan_round(
    fresh: Callable[[], ScanSampler],
    times: dict[str, list[float]],
    scan: Callable[[ScanSampler], tuple[float, ScanSnapshot]] = run_scan,
) -> tuple[ScanSnapshot, ScanSnapshot]:
    """One timed round of the containerd benchmarks: a full scan of a `fresh()` sampler (an
    empty cache), then the same sampler again, nothing changed: the first rescan still pays for
    the full scan (its garbage collected, caches refilled); the next is the steady state, after
    the cyclic GC's debt of everything timed before it is paid (untimed), as in a daemon whose
    rescans allocate little. Appends to times["full"], ["first_rescan"] and ["steady"];
    returns the full and the steady-state snapshots."""
    sampler = fresh()
    t, full = scan(sampler)
    times["full"].append(t)
    t, _ = scan(sampler)
    times["first_rescan"].append(t)
    gc.collect()
    t, steady = scan(sampler)
    times["steady"].append(t)
    return full, steady


def time_layout(root: Path) -> float:
    """read_layout with no cache: what a first scan parses (layerdb, mounts, image configs)."""
    t0 = time.perf_counter()
    read_layout(str(root), "overlay2")
    return time.perf_counter() - t0


# --- report -----------------------------------------------------------------------------------


def _spin(n: int) -> float:
    t0, x = time.perf_counter(), 0
    for i in range(n):
        x += i
    return time.perf_counter() - t0


def parallelism(workers: int, n: int = 2_000_000) -> float:
    """How much faster `workers` processes get a fixed CPU-bound Python job done than one process
    (2.0 on two idle cores; less on shared or hyper-threaded vCPUs): the ceiling for the pool."""
    import multiprocessing

    with multiprocessing.get_context("forkserver").Pool(workers) as pool:
        pool.map(_spin, [1000] * workers)
        one = statistics.median(_spin(n) for _ in range(3))
        t0 = time.perf_counter()
        pool.map(_spin, [n] * workers)
        return workers * one / (time.perf_counter() - t0)


def count_dirs(root: Path) -> int:
    """Directories in the set the scan and du cover (the same excludes, the same filesystem)."""
    dev, n = os.lstat(root).st_dev, 0
    for top, dirs, _ in os.walk(root):
        n += 1
        dirs[:] = [
            d
            for d in dirs
            if not any(fnmatch.fnmatch(os.path.relpath(os.path.join(top, d), root), p) for p in SCAN_EXCLUDES)
            and os.lstat(os.path.join(top, d)).st_dev == dev
        ]
    return n


def measure(
    store: Store, root: Path, runs: int, workers: int
) -> tuple[dict[str, list[float]], ScanSnapshot, ScanSnapshot, float, int, bool]:
    walker, single = Walker(workers=workers), Walker(workers=1)
    in_python = Walker(workers=workers, python_walk=True)  # the fallback without the C walk
    try:
        # Warm-up, one of each: du first warms the page cache, so the first scan's extra time over
        # a timed one is the start of the worker pool (reported on its own).
        run_du(root)
        cold_full, whole = run_scan(ScanSampler(store, walker, budget=600))
        run_scan(ScanSampler(store, single, budget=600))
        run_scan(ScanSampler(store, in_python, budget=600))
        warm = ScanSampler(store, walker, budget=600)
        run_scan(warm)
        run_scan(warm)
        time_layout(root)

        kinds = ("du", "full", "first_rescan", "steady", "single", "full_python", "layout")
        times: dict[str, list[float]] = {k: [] for k in kinds}
        du_total, same = 0, True
        for _ in range(runs):
            t, du_total = run_du(root)
            times["du"].append(t)
            sampler = ScanSampler(store, walker, budget=600)  # fresh: an empty cache
            t, full = run_scan(sampler)
            times["full"].append(t)
            # The same sampler again, nothing changed: the first rescan still pays for the full
            # scan (its garbage collected, caches refilled); the next is the steady state.
            t, _ = run_scan(sampler)
            times["first_rescan"].append(t)
            t, steady = run_scan(sampler)
            times["steady"].append(t)
            t, in_process = run_scan(ScanSampler(store, single, budget=600))
            times["single"].append(t)
            t, py = run_scan(ScanSampler(store, in_python, budget=600))
            times["full_python"].append(t)
            times["layout"].append(time_layout(root))
            for other in (full, in_process, whole, py):
                same &= steady.root_dirs == other.root_dirs
            for other in (full, in_process, py):
                same &= steady.owners == other.owners
    finally:
        walker.close()
        in_python.close()
    return times, full, steady, cold_full, du_total, same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--tree", type=Path, help=f"a Docker root (overlay2) to scan (default: build/reuse {DEFAULT_TREE})"
    )
    ap.add_argument("--rebuild", action="store_true", help="rebuild the synthetic tree")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    )
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    logs.setup(level="warning")  # the product's logging, minus its one info line per sample

    if args.tree is None:
        root, manifest = load_or_build(DEFAULT_TREE, args.rebuild)
    else:
        root, manifest = args.tree.resolve(), {}
    store = Store()
    store.publish(SamplerStatus(name="engine", success=True), engine_snapshot(root, manifest))
    load_before = os.getloadavg()[0]
    with live_mounts(root, synthetic=args.tree is None) as mounted:
        print(f"scanning {root} ({mounted} live mounts); warming up", file=sys.stderr)
        m = measure(store, root, args.runs, args.workers)
        excluded, n_excluded = excluded_by_scan(root)
        dirs = count_dirs(root)
    times, full, steady, cold_full, du_total, same_scans = m
    med = {k: statistics.median(v) for k, v in times.items()}
    ceiling = parallelism(args.workers)
    load_after = os.getloadavg()[0]

    scan_disk = sum(u.disk_bytes for u in full.root_dirs.values())
    scan_files = sum(u.files for u in full.root_dirs.values())
    scan_apparent = sum(u.apparent_bytes for u in full.root_dirs.values())
    root_own = os.lstat(root).st_blocks * 512  # du counts the root dir itself; root_dirs are its entries
    parts = (
        f"du {du_total:,} = the scan's `root_dirs` total {scan_disk:,} + the root dir's own block"
        f" {root_own:,} (du counts the root itself; `root_dirs` are its entries) + {excluded:,} under the"
        f" {n_excluded} dirs the scan never enters (`overlay2/*/merged`, `containers/*/mounts`): du counts"
        " the `mounts/` dirs' own blocks, which the scan's exclude leaves out; what is below them and the"
        " `merged/` mount points are other filesystems, which both skip"
    )
    if du_total == scan_disk + root_own + excluded:
        same = f"agree to the byte: {parts}"
    else:
        same = f"**differ** by {du_total - scan_disk - root_own - excluded:+,} bytes beyond: {parts}"
    fw, sw = full.walks, steady.walks

    def kinds(w: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(w.items()))

    cmd = "python bench/scan_vs_du.py" + (f" --tree {shlex.quote(str(args.tree))}" if args.tree else "")
    cmd += f" --runs {args.runs}" if args.runs != 5 else ""
    rows = [
        (f"`{shlex.join(du_command(root))}`", "du", ""),
        (
            f"full scan: fresh `ScanSampler`, empty cache, Walker(workers={args.workers})",
            "full",
            f"{sum(fw.values())} walks ({kinds(fw)})",
        ),
        (
            "first rescan: `run()` again on the same sampler, nothing changed",
            "first_rescan",
            "as below",
        ),
        (
            "steady-state rescan: `run()` a third time on the same sampler, nothing changed",
            "steady",
            f"{sum(sw.values())} walks ({kinds(sw)}) and the image store in-process,"
            f" {steady.cached_layers} layers from the cache",
        ),
        ("full scan, in-process Walker(workers=1), for reference", "single", "as the full scan"),
        (
            f"full scan with the Python walk, Walker(workers={args.workers}, python_walk=True): the"
            " fallback where the C walk is not built",
            "full_python",
            "as the full scan",
        ),
        ("part of the full scan: `read_layout` with no cache (layerdb, mounts, image configs)", "layout", ""),
    ]
    table = timing_table(rows, med, times)
    machine = scan_machine_line(load_before, load_after, WALK_IMPL)
    busy = busy_note(ceiling, args.workers)
    if args.tree is None:
        running = sum(c["state"] == "running" for c in manifest["containers"])
        how = (
            f"{mounted} tmpfs mounts while the benchmark runs, as on a host"
            if mounted
            else "here plain empty dirs (not root: no mounts)"
        )
        shape = (
            f"a synthetic Docker root (overlay2 graphdriver, built by the script, reused while its"
            f" version marker matches): {len(full.layers)} image layers"
            f" (`overlay2/<cache-id>/{{diff,link,lower,work}}` with layerdb `{{diff,size,cache-id,parent,"
            f"tar-split.json.gz}}`) in {len(read_layout(str(root), 'overlay2').image_layers)} images,"
            f" {len(full.containers)} containers (upper and init dirs, layerdb mounts, json-file logs;"
            f" the live mounts of the {running} running ones, `overlay2/<mount-id>/merged` and"
            f" `containers/<id>/mounts/shm`, {how}),"
            f" {len(full.volumes)} volumes, `overlay2/l` links"
        )
    else:
        shape = f"{len(full.layers)} layers, {len(full.containers)} containers, {len(full.volumes)} volumes"
    owners = ", ".join(f"{k} {u.disk_bytes:,}" for k, u in full.owners.items() if u.files)
    lines = [
        "## Scan vs du",
        "",
        f"- Machine: {machine}",
        f"- Command: `{cmd}` ({args.runs} timed runs of each, interleaved, after one warm-up of each,"
        " so every contender sees a warm page cache)",
        f"- Tree: `{root}`: {shape}; {dirs:,} directories, {scan_files:,} inodes,"
        f" {scan_disk:,} bytes on disk ({scan_apparent:,} apparent)",
        f"- What is timed: `ScanSampler.run()`, the product's scan, against a `Store` holding a synthetic"
        f" engine snapshot (Docker, overlay2, graphdriver, root `{root}`); each run checked to succeed."
        f" It reads the layout, walks, attributes (driver dirs by owner: {owners};"
        f" {len(full.orphans)} orphans, {full.skipped} skipped, {full.errors} errors) and publishes"
        " a snapshot.",
        f"- Totals: du and the scan {same}. Full, steady-state, in-process and Python-walk scans "
        + ("agree on every figure." if same_scans else "**disagree** (the tree changed?)."),
        *busy,
        "",
        "| what | median ms | runs ms | walks |",
        "|---|---:|---:|---|",
        table,
        "",
        f"- **full scan / du = {med['full'] / med['du']:.2f}** (target: <= 1 on 2 cores):"
        f" {'met' if med['full'] <= med['du'] else 'not met'}",
        f"- **du / steady-state rescan = {med['du'] / med['steady']:.0f}x** (target: >= 50x):"
        f" {'met' if med['du'] / med['steady'] >= 50 else 'not met'}",
        f"- du / first rescan = {med['du'] / med['first_rescan']:.0f}x: the rescan right after the full"
        " scan, which may still pay for it (Python's cyclic GC over what the full scan left, cold CPU"
        " caches); the steady state is every rescan after it, as in a running daemon.",
        f"- For 50x the steady-state rescan must fit in {med['du'] / 50 * 1000:.1f} ms; it took"
        f" {med['steady'] * 1000:.1f} ms. For the full scan to match du, its fixed work (reading the"
        f" layout, {med['layout'] * 1000:.0f} ms uncached, and building the snapshot) has to come out of"
        " what the parallel walk saves.",
        f"- In-process scan / du = {med['single'] / med['du']:.2f}: the C walk (`exporter/sources/_walk.c`)"
        " makes the same system calls as du's fts loop, one `fstatat` per inode, plus the scan's fixed"
        " work (the layout read, the snapshot).",
        f"- Full scan with the Python walk / du = {med['full_python'] / med['du']:.2f}: what a build"
        ' without a C compiler gets (`docker_storage_exporter_build_info{walk="python"}`). Per inode,'
        " CPython's `fstatat` plus building an `os.stat_result` and a `DirEntry` costs about twice du's"
        " C loop, so two worker processes bring it only to about du's time.",
        f"- Parallel speed-up of the full scan: {med['single'] / med['full']:.2f}x with {args.workers}"
        f" workers; the machine's own ceiling, {args.workers} processes spinning a CPU-bound loop vs one:"
        f" {ceiling:.2f}x.",
        f"- What a steady-state rescan still does: it walks every dir that can change without its parent"
        f" dir noticing ({sum(sw.values())} walks: container upper dirs and their driver dirs, container"
        " dirs with their logs, volumes, `image/` but its layerdb chain dirs, the small top-level dirs),"
        " one `lstat` per inode there, as du does. What it reuses: each layer dir's walk (by cache-id,"
        " immutable once committed); all layerdb chain dirs as one figure, and the layerdb, image-config"
        " and big-dir listings, while each dir's (inode, mtime) stamp holds and is at least 2 s old (dockerd"
        " renames entries in and out, so any change moves the stamp; the age rule covers a change within"
        " the same mtime tick); the image-layer part of the snapshot while its inputs are equal. The rows"
        " include the layout read and the snapshot, not just the walk.",
        f"- First full scan including the start of the worker pool (forkserver): {cold_full * 1000:,.0f} ms.",
        "- du runs without `--exclude`: GNU du matches every path against each pattern, and two"
        " full-path patterns (`*/overlay2/*/merged`, `*/containers/*/mounts`) made it 3 to 7 times"
        " slower in a trial here (0.4 s to 2.9-3.2 s; 1.1-1.4 s with `LC_ALL=C`), which would flatter"
        " the scan. Real mounts make plain `-x` cover the same set, as on a host.",
        SWING_NOTE,
        "",
    ]
    emit("\n".join(lines), args.no_write, args.out)
    return 0


if __name__ == "__main__":  # worker processes (forkserver) import this file: nothing runs then
    sys.exit(main())
