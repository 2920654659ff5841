"""containerd image store: the exporter's reads of Docker's containerd image store, side by side in one run.

Builds (once, then reuses) a Docker root shaped like Docker's on the containerd image store, whose
`containerd/daemon/` is the root of a REAL containerd (Debian's 1.6, /usr/bin/containerd, started
privately with its own root, state and socket by tests.harness.containerd.PrivateContainerd):
  - `ctr -n moby images import` of docker-save archives made here, each holding many images whose
    small, distinct layers stack (an import of an image of N layers makes N committed snapshots
    and N layer blobs): 10,000 committed snapshots in all, with the manifests and configs;
  - per container, as dockerd makes them: its init layer (`<id>-init-key` prepared on the image's
    top chain ID, Docker's init files written into its `fs/`, committed as `<id>-init`) and its
    writable layer (`ctr snapshots prepare <id> <id>-init`, active), a few MB of files written
    into `fs/`; a few leases (one labelled as BuildKit labels its own, `containerd.io/gc.flat`);
  - containerd is stopped once built: the exporter reads files only.
Beside it Docker's own dirs: `containers/<id>/` with json-file logs, `volumes/`, `buildkit/`,
`network/`, `rootfs/overlayfs/<id>` (where dockerd mounts a running container's rootfs) and the
rest. The live mounts of the running containers (`rootfs/overlayfs/<id>`, `containers/<id>/
mounts/shm`) are tmpfs mounts while the benchmark runs (as root), as on a host. Then it times:
  (1) containerd's two bolt files as the exporter reads them (exporter.sources.containerd_meta):
      `read_metadata(meta.db)` and `read_snapshots(metadata.db)`, CPU time (time.process_time)
      per read; and parts of them: `bolt.select` alone (the pages their shapes name), its
      preads replayed, and for reference `bolt.read_db` of meta.db (the whole tree)
  (2) over the whole Docker root: (a) `du -sx --block-size=1 ROOT`; (b) a full scan: a fresh
      ScanSampler (empty cache), Walker(workers=nproc), `run()`; (c) a first rescan and (d) a
      steady-state rescan: `run()` twice more on the same sampler, nothing changed
each a median of --runs, interleaved, after one warm-up of each; checks that every scan succeeded
and that du's total and the scan's `root_dirs` agree, and writes the section "containerd image
store" of docs/benchmarks.md. --profile adds where the time of a full scan and of a steady-state
rescan goes (cProfile: the scan's phases in the section, the top functions on stderr).

    python bench/containerd_store.py [--rebuild] [--runs N] [--profile] [--no-write] [--out FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import gc
import hashlib
import io
import json
import os
import platform
import pstats
import random
import re
import shlex
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import (
    SWING_NOTE,
    busy_note,
    containerd_scan_rows,
    cpu_model,
    emit,
    pool_notes,
    scan_machine_line,
    scan_targets,
    timing_table,
)
from bench.scan_vs_du import (
    _fill,
    _write,
    docker_rest,
    du_command,
    excluded_by_scan,
    live_mounts,
    parallelism,
    run_du,
    run_scan,
    scan_round,
    unmount_under,
)
from exporter import logs
from exporter.model import Container, EngineInfo, EngineSnapshot, SamplerStatus, ScanSnapshot, Volume
from exporter.samplers import Store
from exporter.scan import ScanSampler
from exporter.sources import bolt, bolt_walk
from exporter.sources.bolt import BOLT_IMPL
from exporter.sources.containerd_meta import (
    ACTIVE,
    COMMITTED,
    SNAPSHOTS_SHAPE,
    metadata_shape,
    read_metadata,
    read_snapshots,
)
from exporter.sources.du import WALK_IMPL, Walker, walk
from exporter.sources.layout import chain_ids
from exporter.stores.containerd import META_DB, SNAPSHOTTER
from tests.harness.containerd import PrivateContainerd

DEFAULT_BASE = Path("/tmp/dse-bench-containerd")  # docker/ (the Docker root), manifest.json
ROOT_VERSION = 1  # bump when build() changes: a cached root of another version is rebuilt
NS = "moby"  # Docker's namespace in containerd
SHAPE = {
    "layers": 10_000,  # committed image snapshots
    "chain": [8, 32],  # layers per image, uniform: image chains stack their own layers
    "containers": 8,  # each an init layer (committed) and a writable layer (active)
    "rw_mb": [2, 6],  # MB written into each writable layer's fs/
    "volumes": 4,
    "leases": 3,
}
ARCHIVE_LAYERS = 1_000  # layers per docker-save archive, one `ctr images import` each
# What the scan never enters: a container's mounts/ dir (shm, secrets). On a host its contents
# are other filesystems, so `du -x` skips them too, but not the mounts/ dir's own blocks.
SCAN_EXCLUDES = ("containers/*/mounts",)
# The running containers' live mounts: tmpfs while the benchmark runs (as root), as on a host.
LIVE_MOUNTS = ("rootfs/overlayfs/*", "containers/*/mounts/shm")
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


# --- the Docker root, its containerd part made by containerd ----------------------------------


def _hex(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _tar(members: list[tuple[str, bytes | None]]) -> bytes:
    """A ustar archive: (name, bytes) a file, (name, None) a dir. No record padding: small."""
    out = bytearray()
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.mtime = 0
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
        else:
            info.size, info.mode = len(data), 0o644
        out += info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape")
        if data:
            out += data + b"\0" * (-len(data) % 512)
    return bytes(out + b"\0" * 1024)


def _layer(rng: random.Random, image: int, index: int) -> bytes:
    """A small layer of its own: a dir and one to three files (64 B to 12 KB), unique names."""
    top = f"opt/bench/i{image}/l{index}"
    members: list[tuple[str, bytes | None]] = [(top, None)]
    for k in range(rng.randint(1, 3)):
        members.append((f"{top}/f{k}", bytes([65 + k]) * rng.randint(64, 12_000)))
    return _tar(members)


def save_archive(images: list[tuple[str, list[bytes]]]) -> tuple[bytes, list[list[str]]]:
    """A `docker save` archive of several images (manifest.json, each image's config and layer
    tars), which `ctr images import` takes; and each image's diff IDs."""
    files: dict[str, bytes] = {}
    manifest, diffs = [], []
    for tag, tars in images:
        diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
        config = json.dumps(
            {
                "architecture": ARCH,
                "os": "linux",
                "config": {"Cmd": ["/bin/sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created_by": f"layer {i}"} for i in range(len(tars))],
            },
            separators=(",", ":"),
        ).encode()
        name = hashlib.sha256(config).hexdigest() + ".json"
        files[name] = config
        layers = []
        for t, d in zip(tars, diff_ids, strict=True):
            files[f"{d[7:]}/layer.tar"] = t
            layers.append(f"{d[7:]}/layer.tar")
        manifest.append({"Config": name, "RepoTags": [tag], "Layers": layers})
        diffs.append(diff_ids)
    files["manifest.json"] = json.dumps(manifest).encode()
    return _tar(list(files.items())), diffs


def _upperdir(mounts_json: str | None) -> Path:
    """The `fs/` of a snapshot just prepared, from `ctr snapshots prepare --mounts`."""
    for m in json.loads(mounts_json or "[]"):
        for opt in m.get("Options") or ():
            if opt.startswith("upperdir="):
                return Path(opt.removeprefix("upperdir="))
        if m.get("Type") == "bind":  # a snapshot without a parent is a bind mount of its fs/
            return Path(m["Source"])
    raise RuntimeError(f"no upperdir in {mounts_json!r}")


def _init_layer(fs: Path) -> None:
    """What dockerd's init layer holds (daemon/initlayer): mount points and empty files."""
    for d in ("dev/pts", "dev/shm", "proc", "sys", "etc"):
        (fs / d).mkdir(parents=True, exist_ok=True)
    for f in (".dockerenv", "dev/console", "etc/hosts", "etc/hostname", "etc/resolv.conf"):
        _write(fs / f, "")
    os.symlink("/proc/mounts", fs / "etc" / "mtab")


def _writable(rng: random.Random, fs: Path, mb: int) -> int:
    """What a running container writes: a few big files (logs, a cache) and many small ones."""
    blob = bytes(range(256)) * 4096  # 1 MiB, not sparse
    left, n = mb << 20, 0
    while left > 0:
        size = min(left, rng.choice((rng.randint(100, 8192), rng.randint(64 << 10, 1 << 20))))
        _write(fs / "var" / "cache" / f"d{n % 7}" / f"f{n}", blob[:size])
        left, n = left - size, n + 1
    _fill(rng, fs / "tmp" / "work", rng.randint(30, 120))
    return n


def build(base: Path, root: Path, seed: int = 11, jobs: int = 2) -> dict[str, Any]:
    """Make the Docker root `root` (its containerd part with a private containerd whose state is
    under `base`/ctd); returns the manifest (shape, images, containers, build times)."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    croot = root / "containerd" / "daemon"
    ctd = PrivateContainerd(base / "ctd")
    ctd.root = croot  # Docker's managed containerd keeps its root at <docker root>/containerd/daemon
    times: dict[str, float] = {}
    ctd.start()
    try:
        # Images: chains of their own small layers, ARCHIVE_LAYERS layers per archive.
        lo, hi = SHAPE["chain"]
        counts: list[int] = []
        while sum(counts) < SHAPE["layers"]:
            counts.append(min(rng.randint(lo, hi), SHAPE["layers"] - sum(counts)))
        batches: list[list[int]] = [[]]
        for i, n in enumerate(counts):
            if sum(counts[j] for j in batches[-1]) + n > ARCHIVE_LAYERS and batches[-1]:
                batches.append([])
            batches[-1].append(i)
        archives = base / "archives"
        archives.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        paths: list[Path] = []
        t = time.monotonic()
        for b, batch in enumerate(batches):
            spec = [(f"bench/img{i}:latest", [_layer(rng, i, k) for k in range(counts[i])]) for i in batch]
            data, diffs = save_archive(spec)
            path = archives / f"batch{b}.tar"
            path.write_bytes(data)
            paths.append(path)
            for i, d in zip(batch, diffs, strict=True):
                images.append(
                    {"name": f"docker.io/bench/img{i}:latest", "layers": len(d), "top": chain_ids(d)[-1]}
                )
        times["archives"] = time.monotonic() - t

        t = time.monotonic()
        done = 0

        def load(path: Path) -> None:
            ctd.ctr("images", "import", str(path), ns=NS, timeout=3600)
            path.unlink()

        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            for fut in concurrent.futures.as_completed([pool.submit(load, p) for p in paths]):
                fut.result()
                done += 1
                print(
                    f"  imported {done}/{len(paths)} archives, {time.monotonic() - t:.0f}s", file=sys.stderr
                )
        times["import"] = time.monotonic() - t
        archives.rmdir()
        listed = _ctr_images(ctd)
        for img in images:
            img["digest"] = listed[img["name"]]  # Docker's image ID on this store: the target's digest

        # Containers: an init layer committed, a writable layer prepared on it, as dockerd does.
        t = time.monotonic()
        containers: list[dict[str, Any]] = []
        for k in range(SHAPE["containers"]):
            cid, img = _hex(rng), rng.choice(images)
            init = _upperdir(
                ctd.ctr("snapshots", "prepare", "--mounts", f"{cid}-init-key", img["top"], ns=NS)
            )
            _init_layer(init)
            ctd.ctr("snapshots", "commit", f"{cid}-init", f"{cid}-init-key", ns=NS)
            rw = _upperdir(ctd.ctr("snapshots", "prepare", "--mounts", cid, f"{cid}-init", ns=NS))
            files = _writable(rng, rw, rng.randint(*SHAPE["rw_mb"]))
            containers.append(
                {
                    "id": cid,
                    "name": f"bench-{k}",
                    "image_id": img["digest"],
                    "state": "running" if k % 2 == 0 else "exited",
                    "snapshot": rw.parent.name,
                    "rw_files": files,
                }
            )
        for k in range(SHAPE["leases"]):
            labels = ["containerd.io/gc.flat=2024-01-01T00:00:00Z"] if k == 0 else [f"bench/lease={k}"]
            ctd.ctr("leases", "create", "--id", f"bench-lease-{k}", "--expires", "0", *labels, ns=NS)
        times["containers"] = time.monotonic() - t
        snapshots = ctd.ctr("snapshots", "ls", ns=NS) or ""
    finally:
        ctd.stop()
    subprocess.run(["rm", "-rf", "--one-file-system", str(ctd.base)], check=True)  # state, socket
    kinds = [line.split()[-1] for line in snapshots.splitlines()[1:]]

    # Docker's own part of its root (dockerd writes it; the scan walks it as on overlay2).
    t = time.monotonic()
    volumes = [f"vol{i}" for i in range(SHAPE["volumes"])]
    for k, c in enumerate(containers):
        cdir = root / "containers" / c["id"]
        _write(
            cdir / f"{c['id']}-json.log",
            b'{"log":"hello\\n","stream":"stdout"}\n' * rng.randint(5_000, 60_000),
        )
        for name in ("config.v2.json", "hostconfig.json", "hostname", "hosts", "resolv.conf"):
            _write(cdir / name, "{}\n")
        (cdir / "checkpoints").mkdir()
        c["volumes"] = [volumes[k]] if k < len(volumes) - 1 else []  # the last volume stays unused
        if c["state"] == "running":  # its /dev/shm and its rootfs mount point (tmpfs while benched)
            (cdir / "mounts" / "shm").mkdir(parents=True)
            (root / "rootfs" / "overlayfs" / c["id"]).mkdir(parents=True)
    docker_rest(rng, root, volumes, ("rootfs/overlayfs",))
    times["docker"] = time.monotonic() - t
    times["total"] = time.monotonic() - t0
    print(f"  built {root} in {times['total']:.0f}s", file=sys.stderr)
    return {
        "version": ROOT_VERSION,
        "seed": seed,
        "shape": SHAPE,
        "containerd": _version(),
        "images": len(images),
        "archives": len(batches),
        "import_jobs": jobs,
        "snapshots": {kind: kinds.count(kind) for kind in sorted(set(kinds))},
        "containers": containers,
        "volumes": volumes,
        "build_seconds": {k: round(v, 1) for k, v in times.items()},
        "machine": f"nproc {len(os.sched_getaffinity(0))}, {cpu_model()}",
    }


def _ctr_images(ctd: PrivateContainerd) -> dict[str, str]:
    lines = (ctd.ctr("images", "ls", ns=NS, timeout=300) or "").splitlines()[1:]
    return {f[0]: f[2] for f in (line.split() for line in lines)}


def _version() -> str:
    out = subprocess.run(["/usr/bin/containerd", "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def load_or_build(base: Path, rebuild: bool, jobs: int) -> tuple[Path, dict[str, Any]]:
    """The cached root under `base` if this version of build() made it, else a new one."""
    root, manifest_path = base / "docker", base / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    valid = (
        manifest.get("version") == ROOT_VERSION
        and manifest.get("shape") == SHAPE
        and (root / "containerd" / "daemon" / SNAPSHOTTER / "metadata.db").is_file()
    )
    if valid and not rebuild:
        return root, manifest
    if base.exists():
        PrivateContainerd(base / "ctd").kill_stale()  # left by a killed build
        unmount_under(base)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=True)
    print(f"building the Docker root (containerd image store) in {root} ...", file=sys.stderr)
    manifest = build(base, root, jobs=jobs)
    os.sync()  # settle delayed allocation: st_blocks of fresh files may still change otherwise
    manifest_path.write_text(json.dumps(manifest))  # last: a half-built root is never reused
    return root, manifest


def engine_snapshot(root: Path, manifest: dict[str, Any]) -> EngineSnapshot:
    """What the engine sampler would have published for this root on the containerd image store
    (Docker 29's default: storage driver `overlayfs`, the snapshotter's name)."""
    containers = tuple(
        Container(c["id"], c["name"], c["image_id"], c["image_id"][7:19], c["state"], tuple(c["volumes"]))
        for c in manifest["containers"]
    )
    users = {v: sum(v in c.volumes for c in containers) for v in manifest["volumes"]}
    volumes = tuple(Volume(v, "local", str(root / "volumes" / v / "_data"), n) for v, n in users.items())
    info = EngineInfo(
        engine="docker",
        version="bench",
        api_version="1.47",
        storage_driver="overlayfs",
        image_store="containerd",
        root_dir=str(root),
        containerd_namespace=NS,
    )
    return EngineSnapshot(info=info, images=(), containers=containers, volumes=volumes, image_usage=None)


# --- the contenders ---------------------------------------------------------------------------


def bolt_paths(root: Path) -> tuple[Path, Path]:
    croot = root / "containerd" / "daemon"
    return croot / META_DB, croot / SNAPSHOTTER / "metadata.db"


def cpu(fn: Callable[[], Any], gc_off: bool = False) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of one call, garbage collected before;
    `gc_off`: with the cyclic GC disabled during the call."""
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        return time.process_time() - c0, time.perf_counter() - t0
    finally:
        gc.enable()


class _Preads:
    """os.pread, keeping the calls: (size, offset) each."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, fd: int, size: int, offset: int) -> bytes:
        self.calls.append((size, offset))
        return os.pread(fd, size, offset)


def _preads_of(path: Path, shape: Any) -> list[tuple[int, int]]:
    """The preads `bolt.select` makes for `shape`: the metas, each page it reaches, the metas."""
    spy = _Preads()
    bolt.select(path, shape, pread=spy)
    return spy.calls


def _replay(path: Path, calls: list[tuple[int, int]]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        for size, offset in calls:
            os.pread(fd, size, offset)
    finally:
        os.close(fd)


def measure(
    store: Store, root: Path, runs: int, workers: int
) -> tuple[dict[str, list[float]], ScanSnapshot, ScanSnapshot, float, int, bool]:
    meta_db, snaps_db = bolt_paths(root)
    meta_preads = _preads_of(meta_db, metadata_shape("overlayfs"))
    walker = Walker(workers=workers)
    try:
        reads: dict[str, tuple[Callable[[], Any], bool]] = {
            "meta": (lambda: read_metadata(meta_db), False),
            "snaps": (lambda: read_snapshots(snaps_db), False),
            "meta_tree": (lambda: bolt.select(meta_db, metadata_shape("overlayfs")), False),
            "meta_pread": (lambda: _replay(meta_db, meta_preads), False),
            "snaps_tree": (lambda: bolt.select(snaps_db, SNAPSHOTS_SHAPE), False),
            "meta_whole": (lambda: bolt.read_db(meta_db), False),
        }
        # Warm-up, one of each: du first warms the page cache, so the first scan's extra time over
        # a timed one is the start of the worker pool (reported on its own).
        run_du(root)
        for fn, gc_off in reads.values():
            cpu(fn, gc_off)
        cold_full, whole = run_scan(ScanSampler(store, walker, budget=600))
        warm = ScanSampler(store, walker, budget=600)
        run_scan(warm)
        run_scan(warm)

        times: dict[str, list[float]] = {
            k: [] for k in (*reads, "meta_wall", "snaps_wall", "du", "full", "first_rescan", "steady")
        }
        du_total, same = 0, True
        for _ in range(runs):
            for name, (fn, gc_off) in reads.items():
                c, w = cpu(fn, gc_off)
                times[name].append(c)
                if f"{name}_wall" in times:
                    times[f"{name}_wall"].append(w)
            t, du_total = run_du(root)
            times["du"].append(t)
            full, steady = scan_round(lambda: ScanSampler(store, walker, budget=600), times)
            for other in (full, whole):
                same &= steady.root_dirs == other.root_dirs and steady.owners == other.owners
    finally:
        walker.close()
    return times, full, steady, cold_full, du_total, same


# The scan's phases, as (file, function) for cProfile's cumulative times (--profile).
PHASES = (
    ("containerd_meta.py", "read_metadata", "`read_metadata`"),
    ("containerd_meta.py", "read_snapshots", "`read_snapshots`"),
    ("containerd.py", "_classify", "classifying the snapshots (`ContainerdReader._classify`)"),
    ("content.py", "images", "of which the manifests and configs (`ContentStore.images`)"),
    ("content.py", "measure", "the content store (`ContentStore.measure`, a stat per blob)"),
    ("containerd.py", "read", "the whole layout read (`ContainerdReader.read`)"),
    ("plan.py", "make_plan", "`make_plan`"),
    ("du.py", "run", "`Walker.run` (this process: dispatch, its share, the wait)"),
    ("attribute.py", "snapshot", "`Attribution.snapshot`"),
)


def profile(store: Store, workers: int, top: int = 14) -> dict[str, tuple[float, list[str], str]]:
    """cProfile of one full scan and of one steady-state rescan (in this process: the walks in
    the workers show as the wait for them): per scan, its profiled seconds, the PHASES' shares
    and pstats' report."""
    walker = Walker(workers=workers)
    out = {}
    try:
        run_scan(ScanSampler(store, walker, budget=600))  # the pool started
        sampler = ScanSampler(store, walker, budget=600)
        for name, before in (("full", 0), ("steady", 2)):
            for _ in range(before):
                run_scan(sampler)
            gc.collect()
            prof = cProfile.Profile()
            prof.enable()
            run_scan(sampler)
            prof.disable()
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf)
            stats.sort_stats("cumulative").print_stats(top)
            stats.sort_stats("tottime").print_stats(top)
            raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
            whole = max(ct for (_, _, fn), (_, _, _, ct, _) in raw.items() if fn == "sample")
            shares = []
            for file, fn, label in PHASES:
                ct = sum(v[3] for (f, _, n), v in raw.items() if n == fn and f.endswith(f"/{file}"))
                if ct >= 0.01 * whole:
                    shares.append(f"{label} {ct * 1000:,.0f} ms ({ct / whole:.0%})")
            out[name] = (whole, shares, _trim(buf.getvalue()))
    finally:
        walker.close()
    return out


def _trim(report: str) -> str:
    """pstats' output without its header lines and with paths relative to the repo."""
    repo = str(Path(__file__).resolve().parent.parent) + "/"
    lines = [line.replace(repo, "") for line in report.splitlines()]
    lines = [re.sub(r"/\S*/lib/python3\.\d+/", "", line) for line in lines]
    return "\n".join(
        line for line in lines if line.strip() and "Ordered by" not in line and "List reduced" not in line
    )


# --- report -----------------------------------------------------------------------------------


def describe_bolt(root: Path) -> dict[str, Any]:
    meta_db, snaps_db = bolt_paths(root)
    meta, snaps = read_metadata(meta_db), read_snapshots(snaps_db)
    ns = meta.namespaces[NS]
    recs = snaps.by_id.values()
    return {
        "meta_bytes": meta_db.stat().st_size,
        "snaps_bytes": snaps_db.stat().st_size,
        **{f"meta_{k}": v for k, v in _pages(meta_db, metadata_shape("overlayfs")).items()},
        **{f"snaps_{k}": v for k, v in _pages(snaps_db, SNAPSHOTS_SHAPE).items()},
        "version": meta.version,
        "images": len(ns.images),
        "snapshots": len(ns.snapshots),
        "blobs": len(ns.blobs),
        "leases": len(ns.leases),
        "committed": sum(r.kind == COMMITTED for r in recs),
        "active": sum(r.kind == ACTIVE for r in recs),
        "records": len(snaps.by_id),
    }


def _pages(path: Path, shape: Any) -> dict[str, int]:
    """The bolt file's used part; the pages of its whole tree, its buckets and values; what
    the reader's shape reads of it: its preads, the pages they reach, the bytes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        meta = bolt._metas(fd, os.pread)[1]
        w = bolt_walk._PyWalk(fd, os.pread, meta)
        tree = bolt._to_bucket(w.bucket(bolt._FULL, meta.root, meta.sequence, None, 0))
    finally:
        os.close(fd)
    buckets, values, stack = 0, 0, [tree]
    while stack:
        b = stack.pop()
        buckets, values = buckets + 1, values + len(b.values)
        stack += b.buckets.values()
    calls = _preads_of(path, shape)[2:-2]  # not the metas
    return {
        "used": meta.hwm * meta.page_size,
        "pages": meta.hwm,
        "pages_reached": sum(w.seen),
        "buckets": buckets,
        "values": values,
        "preads": len(calls),
        "shape_pages": len({offset // meta.page_size for _, offset in calls}),
        "shape_bytes": sum(size for size, _ in calls),
    }


def recorded_vs_walked(root: Path) -> tuple[int, int]:
    """The committed snapshots' `fs/` bytes as metadata.db records them, and as walked now."""
    area = root / "containerd" / "daemon" / SNAPSHOTTER / "snapshots"
    recs = [r for r in read_snapshots(bolt_paths(root)[1]).by_id.values() if r.kind == COMMITTED]
    return sum(r.size or 0 for r in recs), sum(walk(str(area / str(r.id) / "fs")).disk_bytes for r in recs)


def profile_lines(profiles: dict[str, tuple[float, list[str], str]]) -> list[str]:
    what = {"full": "a full scan", "steady": "a steady-state rescan"}
    return [
        f"- Where the time of {what[name]} goes (cProfile, `--profile`; profiled {whole * 1000:,.0f} ms,"
        f" cumulative, so nested phases overlap): {'; '.join(shares)}."
        for name, (whole, shares, _) in profiles.items()
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, default=DEFAULT_BASE, help="where the root is built and cached")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached root")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--layers", type=int, default=SHAPE["layers"], help="committed snapshots (for trials)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--profile", action="store_true", help="add cProfile's view of a full and a steady scan")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
    )
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    logs.setup(level="warning")  # the product's logging, minus its one info line per sample
    if os.geteuid() != 0:
        raise SystemExit("run as root: containerd's snapshotter, and the live mounts")

    SHAPE["layers"] = args.layers
    root, manifest = load_or_build(args.base.resolve(), args.rebuild, jobs=len(os.sched_getaffinity(0)))
    store = Store()
    store.publish(SamplerStatus(name="engine", success=True), engine_snapshot(root, manifest))
    facts = describe_bolt(root)
    load_before = os.getloadavg()[0]
    with live_mounts(root, True, LIVE_MOUNTS) as mounted:
        print(f"scanning {root} ({mounted} live mounts); warming up", file=sys.stderr)
        m = measure(store, root, args.runs, args.workers)
        excluded, n_excluded = excluded_by_scan(root, SCAN_EXCLUDES)
        profiles = profile(store, args.workers) if args.profile else {}
    times, full, steady, cold_full, du_total, same_scans = m
    med = {k: statistics.median(v) for k, v in times.items()}
    ceiling = parallelism(args.workers)
    load_after = os.getloadavg()[0]
    times["bolt_cpu"] = [a + b for a, b in zip(times["meta"], times["snaps"], strict=True)]
    med["bolt_cpu"] = statistics.median(times["bolt_cpu"])

    scan_disk = sum(u.disk_bytes for u in full.root_dirs.values())
    scan_files = sum(u.files for u in full.root_dirs.values())
    root_own = os.lstat(root).st_blocks * 512  # du counts the root dir itself; root_dirs are its entries
    parts = (
        f"du {du_total:,} = the scan's `root_dirs` total {scan_disk:,} + the root dir's own block"
        f" {root_own:,} + {excluded:,} under the {n_excluded} dirs the scan never enters"
        " (`containers/*/mounts`: du counts their own blocks; what is below them, like the"
        " `rootfs/overlayfs/<id>` mount points, is other filesystems, which both skip)"
    )
    gap = du_total - scan_disk - root_own - excluded
    same = f"agree to the byte: {parts}" if gap == 0 else f"**differ** by {gap:+,} bytes beyond: {parts}"
    recorded, walked = recorded_vs_walked(root)
    rec_note = (
        f"the {facts['committed']:,} committed snapshots' `fs/` as the snapshotter recorded them at commit"
        f" (metadata.db `size`, which the scan takes and never walks) {recorded:,} bytes, walked now"
        f" {walked:,}" + (" (the same)" if recorded == walked else f" (**{walked - recorded:+,}**)")
    )

    rel = f"containerd/daemon/{META_DB}", f"containerd/daemon/{SNAPSHOTTER}/metadata.db"
    rows = [
        (
            f"`read_metadata` of `{rel[0]}`, CPU",
            "meta",
            f"{facts['meta_bytes']:,} bytes ({facts['meta_used']:,} in use); {facts['images']} images,"
            f" {facts['snapshots']:,} snapshot records, {facts['blobs']:,} blobs, {facts['leases']} leases;"
            f" wall {med['meta_wall'] * 1000:,.1f} ms",
        ),
        (
            f"`read_snapshots` of `{rel[1]}`, CPU",
            "snaps",
            f"{facts['snaps_bytes']:,} bytes ({facts['snaps_used']:,} in use); {facts['records']:,} records"
            f" ({facts['committed']:,} committed, {facts['active']} active);"
            f" wall {med['snaps_wall'] * 1000:,.1f} ms",
        ),
        ("both reads, CPU (per run: the sum)", "bolt_cpu", "what a scan pays when both txids moved"),
        (
            "part of `read_metadata`: `bolt.select` alone, CPU",
            "meta_tree",
            f"the pages its shape names into dicts and tuples: {facts['meta_shape_pages']:,} pages of"
            f" {facts['meta_pages']:,} in use, read as far as their elements reach"
            f" ({facts['meta_shape_bytes']:,} bytes); the rest of `read_metadata` is the typed records",
        ),
        (
            "part of it: its preads, replayed in a Python loop, CPU",
            "meta_pread",
            f"{facts['meta_preads']:,} preads",
        ),
        (
            "part of `read_snapshots`: `bolt.select` alone, CPU",
            "snaps_tree",
            f"{facts['snaps_shape_pages']:,} pages of {facts['snaps_pages']:,},"
            f" {facts['snaps_preads']:,} preads, {facts['snaps_shape_bytes']:,} bytes",
        ),
        (
            "for reference: `bolt.read_db` of meta.db, the whole tree as `Bucket`s, CPU",
            "meta_whole",
            f"{facts['meta_pages_reached']:,} pages, {facts['meta_buckets']:,} buckets,"
            f" {facts['meta_values']:,} values; what `read_metadata` does not read",
        ),
        (f"`{shlex.join(du_command(root))}`", "du", ""),
        *containerd_scan_rows(args.workers, full, steady),
    ]
    table = timing_table(rows, med, times)
    machine = scan_machine_line(load_before, load_after, f"{WALK_IMPL}, bolt walk {BOLT_IMPL}")
    busy = busy_note(ceiling, args.workers)
    built = manifest["build_seconds"]
    snaps = ", ".join(f"{n:,} {kind.lower()}" for kind, n in manifest["snapshots"].items())
    running = sum(c["state"] == "running" for c in manifest["containers"])
    owners = ", ".join(f"{k} {u.disk_bytes:,}" for k, u in full.owners.items() if u.files)
    content = ", ".join(f"{k} {u.disk_bytes:,}" for k, u in full.content.items() if u.files)
    rw = [c for c in full.containers if c.rw is not None]
    cmd = "python bench/containerd_store.py" + (f" --runs {args.runs}" if args.runs != 5 else "")
    cmd += f" --base {shlex.quote(str(args.base))}" if args.base != DEFAULT_BASE else ""
    cmd += f" --layers {args.layers}" if args.layers != 10_000 else ""
    bolt_target = med["bolt_cpu"] < 0.1
    full_ratio, steady_ratio = med["full"] / med["du"], med["du"] / med["steady"]
    lines = [
        "## containerd image store",
        "",
        f"- Machine: {machine}",
        f"- Command: `{cmd}` ({args.runs} timed runs of each, interleaved, after one warm-up of each,"
        " so every contender sees a warm page cache); `make bench-containerd` runs it. As root.",
        f"- Root: `{root}`, shaped like Docker's on the containerd image store, its"
        f" `containerd/daemon/` the root of a real containerd ({manifest['containerd']}, private: its own"
        f" root, state and socket; stopped before the runs). Made by `ctr -n {NS} images import` of"
        f" {manifest['archives']} docker-save archives (made by the script, {manifest['import_jobs']}"
        f" imports at a time) of {manifest['images']} images whose own small layers stack,"
        f" {SHAPE['chain'][0]} to {SHAPE['chain'][1]} a chain (a dir and 1 to 3 files of 64 B to 12 KB"
        f" each); {manifest['shape']['containers']} containers as dockerd makes them, each an init layer"
        " (`<id>-init-key` prepared on the image's top chain ID, dockerd's init files written,"
        " committed as `<id>-init`) and a writable layer (`ctr snapshots prepare <id> <id>-init`) with"
        f" {SHAPE['rw_mb'][0]} to {SHAPE['rw_mb'][1]} MB of files written into its `fs/`;"
        f" {facts['leases']} leases (one labelled `containerd.io/gc.flat`, as BuildKit's). Snapshots:"
        f" {snaps}. Beside it Docker's own dirs: `containers/<id>/` (json-file logs), {len(full.volumes)}"
        f" volumes, `buildkit/`, `network/`, `rootfs/overlayfs/<id>` and the rest; the live mounts of the"
        f" {running} running containers (`rootfs/overlayfs/<id>`, `containers/<id>/mounts/shm`),"
        f" {mounted} tmpfs mounts while the benchmark runs, as on a host. {scan_files:,} inodes,"
        f" {scan_disk:,} bytes on disk.",
        f"- Build: {built['total']:.0f} s on this machine, cached under `{args.base}` (a manifest with a"
        f" version marker written last; `--rebuild` makes it again): {built['archives']:.0f} s making"
        f" the archives, {built['import']:.0f} s importing them, {built['containers']:.0f} s the"
        f" containers' snapshots and the leases, {built['docker']:.0f} s Docker's own dirs.",
        f"- What is timed: (1) `exporter.sources.containerd_meta.read_metadata` and `read_snapshots`"
        " (what the store reader calls when a file's txid moved), CPU time (`time.process_time`) per"
        " read, after a `gc.collect()`; (2) `ScanSampler.run()`, the product's scan, against a `Store`"
        " holding a synthetic engine snapshot (Docker, storage driver `overlayfs`, image store"
        f" `containerd`, root `{root}`); each run checked to succeed. It reads both bolt files, classifies"
        f" the snapshots (by owner: {owners}; {len(full.layers):,} image layers, {len(rw)} of"
        f" {len(full.containers)} containers with their writable layer; {len(full.orphans)} orphans,"
        f" {full.skipped} skipped, {full.errors} errors), stats each content blob once (by kind:"
        f" {content}), walks what can change and publishes a snapshot.",
        f"- Totals: du and the scan {same}. Also {rec_note}. Full and steady-state scans "
        + ("agree on every figure." if same_scans else "**disagree** (the root changed?)."),
        *busy,
        "",
        "| what | median ms | runs ms | what it covers |",
        "|---|---:|---:|---|",
        table,
        "",
        f"- **both bolt reads = {med['bolt_cpu'] * 1000:.1f} ms of CPU** (target: < 100 ms for"
        f" {facts['committed']:,} committed snapshots): {'met' if bolt_target else 'not met'}",
        *scan_targets(full_ratio, steady_ratio, f"{steady_ratio:.0f}x"),
        f"- du / first rescan = {med['du'] / med['first_rescan']:.0f}x: the rescan right after the full"
        " scan, which may still pay for it; the steady state is every rescan after it.",
        f"- For 50x the steady-state rescan must fit in {med['du'] / 50 * 1000:.1f} ms; it took"
        f" {med['steady'] * 1000:.1f} ms. The committed snapshots are never walked: their `fs/` comes from"
        " metadata.db (continuity's du at commit), each snapshot dir beside its `fs/` is walked once"
        " and kept, each blob stat'ed once; a rescan walks the writable layers, the containers' dirs,"
        " the volumes and the small dirs, and re-reads a bolt file only when its txid moved (here"
        " never: containerd is stopped); while the last read's settled dir stamps and both txids"
        " hold, that read's layout stands in for the next (exporter.sources.witness).",
        *pool_notes(args.workers, ceiling, cold_full),
        *profile_lines(profiles),
        SWING_NOTE,
        "",
    ]
    emit("\n".join(lines), args.no_write, args.out)
    for name, (_, _, text) in profiles.items():
        print(f"\n--- cProfile, {name} scan ---\n{text}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # worker processes (forkserver) import this file: nothing runs then
    sys.exit(main())
