"""Scan vs du: the du engine against GNU `du`, side by side in one run.

Builds (once, then reuses) a synthetic tree shaped like a Docker root, or takes a real one
with --tree, and times over the same directories:
  (a) `du -s --block-size=1 DIR...`            median of --runs, after one warm-up
  (b) a full scan: Walker(workers=nproc), every dir a job, empty LayerCache
  (c) a steady-state rescan: layers from a warm LayerCache; container dirs, logs, volumes re-walked
and writes the section "Scan vs du" of docs/benchmarks.md.

    python bench/scan_vs_du.py [--tree DIR] [--rebuild] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shlex
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.sources.du import LayerCache, Usage, Walker, WalkJob

DEFAULT_TREE = Path("/tmp/dse-bench-tree")
MANIFEST = ".bench-manifest.json"  # at the top of the synthetic tree, outside every walked dir
SHAPE = {"layers": 300, "files": 200_000, "containers": 8, "volumes": 4}


@dataclass(frozen=True)
class Tree:
    root: Path
    layers: dict[str, int]  # cache-id -> recorded apparent size (Docker's layerdb `size`): the hint
    mounts: list[str]  # container mount ids: upper dir overlay2/<id>, init overlay2/<id>-init
    containers: list[str]  # container ids: containers/<id> holds the json-file logs
    volumes: list[str]

    def layer_jobs(self) -> list[WalkJob]:
        return [
            WalkJob(f"layer:{cid}", str(self.root / "overlay2" / cid), frozenset({"merged"}), hint=size)
            for cid, size in self.layers.items()
        ]

    def live_jobs(self) -> list[WalkJob]:
        """What a steady-state scan re-walks: container upper and init dirs, container dirs, volumes."""
        overlay = self.root / "overlay2"
        jobs = [
            WalkJob(f"upper:{m}{suffix}", str(overlay / f"{m}{suffix}"), frozenset({"merged"}))
            for m in self.mounts
            for suffix in ("", "-init")
        ]
        jobs += [
            WalkJob(f"container:{c}", str(self.root / "containers" / c), frozenset({"mounts"}))
            for c in self.containers
        ]
        jobs += [WalkJob(f"volume:{v}", str(self.root / "volumes" / v)) for v in self.volumes]
        return [j for j in jobs if os.path.isdir(j.path)]


# --- the synthetic tree --------------------------------------------------------------------


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


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
    """nfiles files in nested dirs (fan-out ~20, ~40 files a dir), a few symlinks and hard links."""
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
                os.mknod(p, stat.S_IFCHR, os.makedev(0, 0))
            else:
                n = _size(rng)
                with open(p, "wb") as f:
                    f.write(blob[:n])
                apparent += n
            made += 1
    return apparent


def build(root: Path, seed: int = 7) -> Tree:
    rng = random.Random(seed)
    t0 = time.monotonic()
    overlay = root / "overlay2"
    (overlay / "l").mkdir(parents=True)
    # Layer file counts are skewed like real images: a few big base layers, many small ones.
    weights = [rng.paretovariate(1.2) for _ in range(SHAPE["layers"])]
    scale = SHAPE["files"] / sum(weights)
    layers: dict[str, int] = {}
    can_whiteout = os.geteuid() == 0
    for i, w in enumerate(weights):
        cid = _hex(rng)
        layer = overlay / cid
        layers[cid] = _fill(
            rng, layer / "diff", max(1, round(w * scale)), whiteouts=can_whiteout and i % 3 == 0
        )
        (layer / "link").write_text(cid[:26].upper())
        if i % 10:
            (layer / "lower").write_text(f"l/{cid[:26].upper()}")
            (layer / "work" / "work").mkdir(parents=True)
        if i % 20 == 0:
            print(f"  layers {i}/{len(weights)}", file=sys.stderr)
    containers = []
    for _ in range(SHAPE["containers"]):
        cid = _hex(rng)
        containers.append(cid)
        _fill(rng, overlay / cid / "diff", rng.randint(20, 150))
        (overlay / cid / "work" / "work").mkdir(parents=True)
        _fill(rng, overlay / f"{cid}-init" / "diff", 8)
        cdir = root / "containers" / cid
        cdir.mkdir(parents=True)
        with open(cdir / f"{cid}-json.log", "wb") as f:
            f.write(b'{"log":"hello\\n","stream":"stdout"}\n' * rng.randint(5_000, 60_000))
        for name in ("config.v2.json", "hostconfig.json", "hostname", "hosts", "resolv.conf"):
            (cdir / name).write_text("{}\n")
        (cdir / "checkpoints").mkdir()
    volumes = [f"vol{i}" for i in range(SHAPE["volumes"])]
    for v in volumes:
        _fill(rng, root / "volumes" / v / "_data", rng.randint(100, 400))
    tree = Tree(root, layers, containers, containers, volumes)
    (root / MANIFEST).write_text(json.dumps({"layers": layers, "containers": containers, "volumes": volumes}))
    print(f"  built {root} in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return tree


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []


def load(root: Path) -> Tree:
    manifest = root / MANIFEST
    if manifest.exists():
        m = json.loads(manifest.read_text())
        return Tree(root, m["layers"], m["containers"], m["containers"], m["volumes"])
    # A real Docker root: container mounts from layerdb; every other overlay2 dir counts as a
    # layer (build-cache snapshots and orphans included: they are as immutable, for this purpose).
    mounts_dir = root / "image" / "overlay2" / "layerdb" / "mounts"
    mounts = [(mounts_dir / c / "mount-id").read_text().strip() for c in _names(mounts_dir)]
    live = {*mounts, *(f"{m}-init" for m in mounts), "l"}
    layers = {d: 0 for d in _names(root / "overlay2") if d not in live}
    return Tree(root, layers, mounts, _names(root / "containers"), _names(root / "volumes"))


# --- the three contenders -------------------------------------------------------------------


def run_du(paths: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    # -x: what the walk does; on a real root it keeps du out of the live overlay mounts (merged/).
    out = subprocess.run(["du", "-sx", "--block-size=1", *paths], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    return elapsed, sum(int(line.split("\t", 1)[0]) for line in out.stdout.splitlines())


def full_scan(walker: Walker, jobs: list[WalkJob]) -> tuple[float, Usage, LayerCache]:
    cache = LayerCache()
    t0 = time.perf_counter()
    results = walker.run(jobs)
    for key, usage in results.items():
        if key.startswith("layer:"):
            cache.put(key.removeprefix("layer:"), usage)
    elapsed = time.perf_counter() - t0
    return elapsed, sum(results.values(), Usage(0, 0, 0, 0, False)), cache


def steady_scan(walker: Walker, tree: Tree, cache: LayerCache) -> tuple[float, Usage, int]:
    """What the scan sampler does on every run once layers are cached: no path work for a cached layer."""
    t0 = time.perf_counter()
    cache.retain(set(tree.layers))
    total, rewalk = Usage(0, 0, 0, 0, False), tree.live_jobs()
    missing = []
    for cid in tree.layers:
        hit = cache.get(cid)
        if hit is None:
            missing.append(cid)
        else:
            total += hit
    if missing:
        gone = set(missing)
        rewalk += [j for j in tree.layer_jobs() if j.key.removeprefix("layer:") in gone]
    for key, usage in walker.run(rewalk).items():
        if key.startswith("layer:"):
            cache.put(key.removeprefix("layer:"), usage)
        total += usage
    return time.perf_counter() - t0, total, len(rewalk)


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


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_section(out: Path, section: str) -> None:
    text = (
        out.read_text()
        if out.exists()
        else "# Benchmarks\n\nMeasured side by side in one run; quote ratios, not seconds.\n"
    )
    pattern = re.compile(r"^## Scan vs du\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, help=f"a Docker root to scan (default: build/reuse {DEFAULT_TREE})")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the synthetic tree")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    )
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    root = args.tree or DEFAULT_TREE
    if args.tree is None and (args.rebuild or not (root / MANIFEST).exists()):
        if root.exists():
            subprocess.run(["rm", "-rf", "--one-file-system", str(root)], check=True)
        print(f"building the synthetic tree in {root} ...", file=sys.stderr)
        tree = build(root)
    else:
        tree = load(root)
    jobs = tree.layer_jobs() + tree.live_jobs()
    paths = [j.path for j in jobs]
    dirs = sum(1 for j in jobs for _ in _dirs(j.path))
    print(
        f"{len(tree.layers)} layer dirs, {len(jobs) - len(tree.layers)} live dirs; warming up",
        file=sys.stderr,
    )

    walker = Walker(workers=args.workers)
    t0 = time.perf_counter()
    _, whole, _ = full_scan(walker, jobs)  # warm-up: page cache, and the pool starts
    cold_full = time.perf_counter() - t0
    run_du(paths)
    single = Walker(workers=1)
    times: dict[str, list[float]] = {"du": [], "full": [], "single": [], "steady": []}
    du_total, rewalked, consistent = 0, 0, True
    for _ in range(args.runs):
        t, du_total = run_du(paths)
        times["du"].append(t)
        t, full, cache = full_scan(walker, jobs)
        times["full"].append(t)
        t, _, _ = full_scan(single, jobs)
        times["single"].append(t)
        t, steady, rewalked = steady_scan(walker, tree, cache)
        times["steady"].append(t)
        consistent &= steady == full  # the cache serves what a walk finds (on a tree nobody changes)
    walker.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    ceiling = parallelism(args.workers)

    cmd = "python bench/scan_vs_du.py" + (f" --tree {shlex.quote(str(args.tree))}" if args.tree else "")
    cmd += f" --runs {args.runs}" if args.runs != 3 else ""
    same = "equal" if du_total == full.disk_bytes else f"differ: du {du_total:,}, walk {full.disk_bytes:,}"
    rows = [
        ("`du -sx --block-size=1` over every dir", med["du"], times["du"]),
        (f"full scan, Walker(workers={args.workers}), empty LayerCache", med["full"], times["full"]),
        ("full scan, in-process (workers=1), for reference", med["single"], times["single"]),
        (
            f"steady-state rescan: layers cached, {rewalked} live dirs re-walked",
            med["steady"],
            times["steady"],
        ),
    ]
    table = "\n".join(
        f"| {name} | {m * 1000:,.1f} | {', '.join(f'{x * 1000:,.1f}' for x in ts)} |" for name, m, ts in rows
    )
    machine = (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    lines = [
        "## Scan vs du",
        "",
        f"- Machine: {machine}",
        f"- Command: `{cmd}` ({args.runs} timed runs of each, interleaved, after one warm-up of each,"
        " so every contender sees a warm page cache)",
        f"- Tree: `{root}`: {len(tree.layers)} layer dirs and {len(jobs) - len(tree.layers)} live dirs"
        f" (container upper/init dirs, container dirs with logs, volumes); {dirs:,} directories,"
        f" {whole.files:,} inodes, {whole.disk_bytes:,} bytes on disk ({whole.apparent_bytes:,} apparent)",
        f"- Totals: du and the walk {same}; steady-state and full scan"
        f" {'equal' if consistent else 'differ (the tree changed?)'}",
        "",
        "| what | median ms | runs ms |",
        "|---|---:|---:|",
        table,
        "",
        f"- **full / du = {med['full'] / med['du']:.2f}** (target: <= 1 on 2 cores)",
        f"- **du / steady-state = {med['du'] / med['steady']:.0f}x** (target: >= 50x)",
        f"- In-process walk / du = {med['single'] / med['du']:.2f}: per inode, Python's `fstatat` plus"
        " building an `os.stat_result` costs that much more than du's C loop; the worker processes"
        " close the gap.",
        f"- Parallel speed-up of the full scan: {med['single'] / med['full']:.2f}x with {args.workers}"
        f" workers; the machine's own ceiling, {args.workers} processes spinning a CPU-bound loop vs one:"
        f" {ceiling:.2f}x.",
        f"- First full scan including the start of the worker pool (forkserver): {cold_full * 1000:,.0f} ms.",
        "- On a shared VM single runs swing by a third; the ratios come from runs interleaved in one"
        " process, and repeated invocations are the way to see their spread.",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section(args.out, section)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


def _dirs(path: str) -> Iterator[str]:
    stack = [path]
    while stack:
        p = stack.pop()
        yield p
        try:
            with os.scandir(p) as it:
                stack += [e.path for e in it if e.is_dir(follow_symlinks=False) and e.name != "merged"]
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
