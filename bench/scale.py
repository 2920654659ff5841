"""Scale: how the exporter grows with the host, from 100 to 1,000 to 10,000 images.

Part 1, a real engine. A private dockerd (own data root and socket under --base) is grown step
by step to N images (N = 100, 1,000, 10,000, up to --max): `POST /images/load` (what `docker
load` sends) of generated archives (a shared base layer, a layer shared by each group of 10
images, one unique small layer per image; each config has a history entry per layer so sizes
can be computed on API 1.41), plus N/10 volumes (`POST /volumes/create`) and N/10 containers
created, not started (`POST /containers/create`, NetworkMode none; half of them mount a
volume). At each step a fresh exporter (the real one, a child process on 127.0.0.1) is started
and measured: its RSS after the first full samples, the series count on /metrics (default
--metrics.top-n 50) and total lines, the scrape latency (median of 20), the engine-sample time
once the inspect cache is warm (docker_storage_sampler_duration_seconds{sampler="engine"},
samples 2 to 4) against `docker system df -v` on the same engine (Debian's /usr/bin/docker,
DOCKER_HOST set, one run after each warm sample: median of 3, interleaved), the Engine API
calls per warm cycle (delta of docker_storage_engine_requests_total between samples), and the
scan time.

Part 2, a synthetic Docker root (overlay2 graphdriver) with 10,000 images / 50,050 layers
(layerdb entries, overlay2 dirs with two small files each, image configs, repositories.json),
built once under --base and reused; a child process drives exporter.scan.ScanSampler directly
with a Store holding a synthetic EngineSnapshot (as bench/scan_vs_du.py does) and reports the
first scan, the steady-state rescan and its RSS.

Writes its section of docs/benchmarks.md.

    python bench/scale.py [--max 10000] [--skip-synthetic] [--no-write]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import string
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import BENCHMARKS, children, machine, write_section  # noqa: E402

BASE = Path("/tmp/dse-h11")
ENGINE_DIR = "h11-scale"  # the private engine: BASE/ENGINE_DIR
TREE_DIR = "h11-scan-tree"  # the synthetic root: BASE/TREE_DIR
TREE_VERSION = 1
STEPS = (100, 1_000, 10_000)
GROUP = 10  # consecutive images sharing one middle layer
GROUPS = 100  # middle layers at most (image groups past 1,000 reuse them)
ALL_UNIQUE = 1_000  # images 0..999 each have a unique layer
UNIQUE_EVERY = 5  # past those, one image in 5 has one (the others: variants, see owner())
CHUNK = 500  # images per load archive
MiB = 1024 * 1024


# --- machine and process facts ----------------------------------------------------------------


def proc_status(pid: int | str, key: str = "VmRSS") -> int:
    """A /proc/<pid>/status figure in KiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


# --- part 1: the real engine ------------------------------------------------------------------


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _payload(tag: str, n: int) -> bytes:
    rng = random.Random(tag)
    return rng.randbytes(rng.randint(64, n))


def _registry(i: int) -> str:
    return ("", "ghcr.io/", "registry.example:5000/")[i % 3]


def owner(i: int) -> int:
    """The image whose unique layer image i uses: itself for the first ALL_UNIQUE images and every
    UNIQUE_EVERY-th after them; the others are variants (a config of their own, an owner's layers),
    as retagged rebuilds are, which keeps `docker load` of 10,000 images within minutes (dockerd
    registers a layer in ~90 ms here, an image over existing layers in ~3 ms)."""
    return i if i < ALL_UNIQUE else i - i % UNIQUE_EVERY


def image_archive(start: int, stop: int) -> bytes:
    """A `docker save`-format tar of images start..stop-1: base + group layer + unique layer."""
    layers: dict[str, bytes] = {}  # path in the archive -> layer tar
    diff: dict[str, str] = {}

    def layer(key: str, files: dict[str, bytes]) -> str:
        path = f"{key}/layer.tar"
        if path not in layers:
            layers[path] = _tar(files)
            diff[path] = "sha256:" + hashlib.sha256(layers[path]).hexdigest()
        return path

    manifest, configs = [], {}
    base = layer("base", {"base/os-release": b"NAME=bench\n" + _payload("base", 4096)})
    for i in range(start, stop):
        o = owner(i)
        g = (o // GROUP) % GROUPS
        mid = layer(f"group{g}", {f"group/{g}.bin": _payload(f"g{g}", 8192)})
        own = layer(f"img{o}", {f"app/{o}.bin": _payload(f"i{o}", 2048)})
        paths = [base, mid, own]
        created = f"2024-01-{1 + i % 28:02d}T00:00:00Z"
        labels = {} if o == i else {"variant": str(i)}
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "created": created,
                "config": {"Cmd": ["/app"], "Env": ["PATH=/usr/bin:/bin"], "Labels": labels},
                "rootfs": {"type": "layers", "diff_ids": [diff[p] for p in paths]},
                "history": [{"created": created, "created_by": f"bench layer {p}"} for p in paths],
            },
            separators=(",", ":"),
        ).encode()
        name = hashlib.sha256(config).hexdigest() + ".json"
        configs[name] = config
        manifest.append({"Config": name, "RepoTags": [f"{_registry(i)}bench/img{i:05d}:v1"], "Layers": paths})
    return _tar({"manifest.json": json.dumps(manifest).encode(), **configs, **layers})


def grow(engine: Any, images: int, have: dict[str, int], log: list[str]) -> dict[str, float]:
    """Bring the engine to `images` images and images/10 volumes and containers; returns timings."""
    api = engine.api()
    api.timeout = 600
    timings: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        for start in range(have["images"], images, CHUNK):
            stop = min(images, start + CHUNK)
            for msg in api.load_image(image_archive(start, stop)):
                if isinstance(msg, dict) and msg.get("error"):
                    raise RuntimeError(f"docker load: {msg['error']}")
            print(f"  loaded images {stop}/{images} ({time.monotonic() - t0:.0f}s)", file=sys.stderr)
        timings["load"] = time.monotonic() - t0
        have["images"] = images

        t0 = time.monotonic()
        for v in range(have["volumes"], images // 10):
            api.create_volume(name=f"bench-vol-{v:05d}", labels={"bench": "1"})
        timings["volumes"] = time.monotonic() - t0
        have["volumes"] = images // 10

        local = threading.local()
        clients: list[Any] = []

        def create(k: int) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = engine.api()
                clients.append(client)
            binds = [f"bench-vol-{k:05d}:/data"] if k % 2 == 0 else []
            client.create_container(
                f"{_registry(k * 7 % images)}bench/img{k * 7 % images:05d}:v1",
                command=["/app"],
                name=f"bench-ct-{k:05d}",
                host_config=client.create_host_config(network_mode="none", binds=binds),
                network_disabled=True,
            )

        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(create, range(have["containers"], images // 10)))
        for c in clients:
            c.close()
        timings["containers"] = time.monotonic() - t0
        have["containers"] = images // 10
    finally:
        api.close()
    log.append(
        f"grown to {images:,} images in {timings['load']:.0f} s (load), {timings['volumes']:.0f} s"
        f" (volumes), {timings['containers']:.0f} s (containers)"
    )
    return timings


def docker_df(engine: Any) -> float:
    env = {**os.environ, "DOCKER_HOST": engine.host, "DOCKER_CONFIG": str(engine.base / "cli")}
    t0 = time.perf_counter()
    subprocess.run(["/usr/bin/docker", "system", "df", "-v"], env=env, capture_output=True, check=True)
    return time.perf_counter() - t0


def metric(samples: Any, name: str, **labels: str) -> float:
    from tests.harness.exporter import value

    v = value(samples, name, **labels)
    return float("nan") if v is None else v


def requests_by_endpoint(samples: Any) -> dict[str, float]:
    return {lbl.get("endpoint", ""): v for lbl, v in samples.get("docker_storage_engine_requests_total", [])}


def wait_runs(exp: Any, sampler: str, n: float, timeout: float) -> Any:
    from tests.harness.exporter import value

    return exp.wait_until(
        lambda s: (value(s, "docker_storage_sampler_runs_total", sampler=sampler) or 0) >= n,
        timeout=timeout,
        what=f"{sampler} run {n:.0f}",
    )


def measure_step(engine: Any, n: int, base: Path) -> dict[str, Any]:
    from tests.harness.exporter import ExporterProcess, parse

    df0 = docker_df(engine)  # warm-up, and it sizes the engine interval below
    interval = max(6.0, round(2.5 * df0 + 3))
    args = [
        "--sampler.engine.interval", f"{interval:g}s",
        "--sampler.scan.interval", "1h",  # one scan, at start (after the first engine sample)
        "--log.level", "warn",
    ]  # fmt: skip
    exp = ExporterProcess(engine.host, base / f"exporter-{n}.log", args)
    out: dict[str, Any] = {"n": n, "engine_interval": interval, "df_warmup": df0}
    try:
        t_start = time.monotonic()
        exp.start()
        assert exp.proc is not None
        pid = exp.proc.pid
        from tests.harness.exporter import sampled_after

        first = exp.wait_until(
            sampled_after(time.time() - 3600, "engine", "scan", "filesystem"),
            timeout=900,
            what="first engine sample and scan",
        )
        out["first_full"] = time.monotonic() - t_start
        out["rss_first"] = proc_status(pid) / 1024
        out["workers_rss_first"] = sum(proc_status(c) for c in children(pid)) / 1024
        out["engine_cold"] = metric(first, "docker_storage_sampler_duration_seconds", sampler="engine")
        out["scan"] = metric(first, "docker_storage_sampler_duration_seconds", sampler="scan")
        out["calls_cold"] = sum(requests_by_endpoint(first).values())
        warm, dfs, calls = [], [], []
        prev, runs = None, metric(first, "docker_storage_sampler_runs_total", sampler="engine")
        for _ in range(3):
            s = wait_runs(exp, "engine", runs + 1, timeout=interval * 3 + 600)
            now = metric(s, "docker_storage_sampler_runs_total", sampler="engine")
            if now != runs + 1:  # a sample we did not see end: no clean per-cycle delta this time
                prev = None
            runs = now
            warm.append(metric(s, "docker_storage_sampler_duration_seconds", sampler="engine"))
            req = requests_by_endpoint(s)
            if prev is not None:
                calls.append({e: v - prev.get(e, 0) for e, v in req.items() if v != prev.get(e, 0)})
            prev = req
            dfs.append(docker_df(engine))  # right after the sample: interleaved, never overlapping
        out["engine_warm"], out["df"], out["calls_warm"] = warm, dfs, calls
        out["engine_ok"] = metric(s, "docker_storage_engine_up")
        lat = []
        text = ""
        for _ in range(20):
            t0 = time.perf_counter()
            status, _, body = exp.get("/metrics", timeout=30)
            lat.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"scrape answered {status}")
            text = body.decode()
        out["scrape"] = lat
        samples = parse(text)
        out["series"] = sum(len(v) for v in samples.values())
        out["series_dse"] = sum(len(v) for k, v in samples.items() if k.startswith("docker_storage_"))
        out["lines"] = text.count("\n")
        out["bytes"] = len(text.encode())
        out["folded"] = sum(v for _, v in samples.get("docker_storage_series_folded", []))
        out["images_metric"] = sum(v for _, v in samples.get("docker_storage_images", []))
        out["rss_end"] = proc_status(pid) / 1024
        out["rss_hwm"] = proc_status(pid, "VmHWM") / 1024
        out["workers_rss_end"] = sum(proc_status(c) for c in children(pid)) / 1024
        out["failures"] = {
            lbl["sampler"]: v for lbl, v in samples.get("docker_storage_sampler_failures_total", []) if v
        }
        out["scan_layers"] = metric(samples, "docker_storage_layers")
    finally:
        exp.stop()
    return out


def real_engine(args: argparse.Namespace, log: list[str]) -> list[dict[str, Any]]:
    from tests.harness.engine import PrivateEngine

    engine = PrivateEngine(args.base / ENGINE_DIR)
    rows = []
    t_all = time.monotonic()
    try:
        engine.start()
        have = {"images": 0, "volumes": 0, "containers": 0}
        for n in (s for s in STEPS if s <= args.max):
            if time.monotonic() - t_all > args.budget:
                log.append(f"step {n:,} skipped: the real-engine part passed --budget {args.budget:.0f} s")
                break
            print(f"step {n}: growing the engine", file=sys.stderr)
            timings = grow(engine, n, have, log)
            print(f"step {n}: measuring", file=sys.stderr)
            row = measure_step(engine, n, args.base)
            row["grow"] = timings
            row["have"] = dict(have)
            rows.append(row)
            print(json.dumps(row, default=str), file=sys.stderr)
    finally:
        engine.stop()
        if not args.keep:
            shutil.rmtree(engine.base, ignore_errors=True)
    return rows


# --- part 2: the synthetic Docker root for the scan -------------------------------------------

SYN = {"images": 10_000, "bases": 50, "per_image": 5, "containers": 20, "volumes": 10}


def _w(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def build_tree(root: Path, seed: int = 11) -> dict[str, Any]:
    """A Docker root: SYN images, each a shared base layer + per_image unique layers, every layer
    an overlay2 dir (diff/ with two small files, link, lower, work/) with its layerdb entry, the
    image configs and repositories.json, a few containers and volumes."""
    from exporter.sources.layout import chain_ids

    rng = random.Random(seed)
    t0 = time.monotonic()
    overlay, links = root / "overlay2", root / "overlay2" / "l"
    links.mkdir(parents=True)
    image_dir = root / "image" / "overlay2"
    chains_dir = image_dir / "layerdb" / "sha256"
    chains_dir.mkdir(parents=True)
    content = image_dir / "imagedb" / "content" / "sha256"
    content.mkdir(parents=True)
    alphabet = string.ascii_uppercase + string.digits
    made = {"n": 0}

    def add_layer(diffs: list[str], lower: list[str], parent_chain: str | None) -> tuple[str, str]:
        cache_id = f"{rng.getrandbits(256):064x}"
        short = "".join(rng.choices(alphabet, k=26))
        d = overlay / cache_id
        (d / "diff" / "etc").mkdir(parents=True)
        a, b = rng.randint(10, 3000), rng.randint(10, 500)
        _w(str(d / "diff" / "etc" / f"f{made['n']}.conf"), b"x" * a)
        _w(str(d / "diff" / "README"), b"y" * b)
        _w(str(d / "link"), short.encode())
        if lower:
            _w(str(d / "lower"), ":".join(f"l/{s}" for s in lower).encode())
            (d / "work" / "work").mkdir(parents=True)
        os.symlink(f"../{cache_id}/diff", links / short)
        chain = chain_ids(diffs)[-1]
        e = chains_dir / chain.removeprefix("sha256:")
        e.mkdir()
        _w(str(e / "diff"), diffs[-1].encode())
        _w(str(e / "size"), str(a + b).encode())
        _w(str(e / "cache-id"), cache_id.encode())
        if parent_chain:
            _w(str(e / "parent"), parent_chain.encode())
        _w(str(e / "tar-split.json.gz"), gzip.compress(b'{"type":2}\n', mtime=0))
        made["n"] += 1
        return chain, short

    bases = []
    for _ in range(SYN["bases"]):
        diff = f"sha256:{rng.getrandbits(256):064x}"
        chain, short = add_layer([diff], [], None)
        bases.append(([diff], [short], chain))
    repositories: dict[str, dict[str, str]] = {}
    image_ids = []
    for i in range(SYN["images"]):
        diffs, lower, parent = list(bases[i % SYN["bases"]][0]), list(bases[i % SYN["bases"]][1]), None
        parent = bases[i % SYN["bases"]][2]
        for _ in range(SYN["per_image"]):
            diffs.append(f"sha256:{rng.getrandbits(256):064x}")
            parent, short = add_layer(diffs, lower, parent)
            lower = [short, *lower]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["/app"]},
                "rootfs": {"type": "layers", "diff_ids": diffs},
            },
            separators=(",", ":"),
        ).encode()
        iid = hashlib.sha256(config).hexdigest()
        _w(str(content / iid), config)
        image_ids.append(f"sha256:{iid}")
        repo = f"bench/syn{i:05d}"
        repositories[repo] = {f"{repo}:latest": f"sha256:{iid}"}
        if i % 1000 == 999:
            print(f"  synthetic images {i + 1} ({time.monotonic() - t0:.0f}s)", file=sys.stderr)
    (image_dir / "repositories.json").write_text(json.dumps({"Repositories": repositories}))
    containers = []
    for k in range(SYN["containers"]):
        cid, mount_id = f"{rng.getrandbits(256):064x}", f"{rng.getrandbits(256):064x}"
        for d in (overlay / mount_id / "diff", overlay / f"{mount_id}-init" / "diff"):
            d.mkdir(parents=True)
            _w(str(d / "file"), b"z" * rng.randint(100, 50_000))
        m = image_dir / "layerdb" / "mounts" / cid
        m.mkdir(parents=True)
        _w(str(m / "mount-id"), mount_id.encode())
        _w(str(m / "init-id"), f"{mount_id}-init".encode())
        cdir = root / "containers" / cid
        cdir.mkdir(parents=True)
        _w(str(cdir / f"{cid}-json.log"), b'{"log":"hi\\n"}\n' * rng.randint(100, 5000))
        vol = f"vol{k}" if k < SYN["volumes"] else None
        containers.append({"id": cid, "name": f"syn-{k}", "image_id": image_ids[k * 37], "volume": vol})
    for v in range(SYN["volumes"]):
        d = root / "volumes" / f"vol{v}" / "_data"
        d.mkdir(parents=True)
        _w(str(d / "data"), b"v" * rng.randint(1000, 100_000))
    _w(str(root / "volumes" / "metadata.db"), b"\0" * 32768)
    print(f"  built {root} ({made['n']:,} layers) in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    return {"version": TREE_VERSION, "shape": SYN, "layers": made["n"], "containers": containers}


def load_or_build_tree(base: Path, rebuild: bool) -> tuple[Path, dict[str, Any], float | None]:
    root, mpath = base / "docker", base / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError):
        manifest = {}
    if not rebuild and manifest.get("version") == TREE_VERSION and manifest.get("shape") == SYN:
        return root, manifest, None
    shutil.rmtree(base, ignore_errors=True)
    print(f"building the synthetic Docker root in {root} ...", file=sys.stderr)
    t0 = time.monotonic()
    manifest = build_tree(root)
    os.sync()
    mpath.write_text(json.dumps(manifest))  # last: a half-built tree is never reused
    return root, manifest, time.monotonic() - t0


def scan_child(root: Path, manifest_path: Path, workers: int) -> dict[str, Any]:
    """In a process of its own: the product's scan over the synthetic root, first and again."""
    from exporter import logs
    from exporter.model import Container, EngineInfo, EngineSnapshot, SamplerStatus, Volume
    from exporter.samplers import Store
    from exporter.scan import ScanSampler
    from exporter.sources.du import Walker

    logs.setup(level="warning")
    manifest = json.loads(manifest_path.read_text())
    rss0 = proc_status("self") / 1024
    containers = tuple(
        Container(c["id"], c["name"], c["image_id"], "bench", "exited", (c["volume"],) if c["volume"] else ())
        for c in manifest["containers"]
    )
    volumes = tuple(
        Volume(f"vol{v}", "local", str(root / "volumes" / f"vol{v}" / "_data"), 1)
        for v in range(SYN["volumes"])
    )
    info = EngineInfo("docker", "bench", "1.41", "overlay2", "graphdriver", str(root))
    store = Store()
    store.publish(
        SamplerStatus(name="engine", success=True),
        EngineSnapshot(info=info, images=(), containers=containers, volumes=volumes, image_usage=None),
    )
    walker = Walker(workers=workers)
    out: dict[str, Any] = {"rss_before": rss0, "workers": workers}
    try:
        sampler = ScanSampler(store, walker, budget=900)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            ok = sampler.run()
            times.append(time.perf_counter() - t0)
            if not ok:
                status = store.status("scan")
                raise SystemExit(f"scan failed: {status.last_error if status else '?'}")
            if len(times) == 1:
                out["rss_first"] = proc_status("self") / 1024
                out["workers_rss_first"] = sum(proc_status(c) for c in children(os.getpid())) / 1024
        snap = store.snapshot("scan")
        out["times"] = times
        out["rss_end"] = proc_status("self") / 1024
        out["rss_hwm"] = proc_status("self", "VmHWM") / 1024
        out["workers_rss_end"] = sum(proc_status(c) for c in children(os.getpid())) / 1024
        out["layers"] = len(snap.layers)
        out["walks_last"] = snap.walks
        out["cached"] = snap.cached_layers
        out["files"] = sum(u.files for u in snap.root_dirs.values())
        out["disk"] = sum(u.disk_bytes for u in snap.root_dirs.values())
        out["errors"], out["skipped"], out["orphans"] = snap.errors, snap.skipped, len(snap.orphans)
    finally:
        walker.close()
    return out


def synthetic(args: argparse.Namespace, log: list[str]) -> dict[str, Any]:
    base = args.base / TREE_DIR
    root, _, built = load_or_build_tree(base, args.rebuild_tree)
    if built is not None:
        log.append(f"synthetic root built in {built:.0f} s")
    res = subprocess.run(
        [sys.executable, __file__, "--scan-child", str(root), "--workers", str(args.workers)],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if res.returncode != 0:
        raise SystemExit(f"scan child failed: {res.stderr[-2000:]}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["root"] = str(root)
    return out


# --- report -----------------------------------------------------------------------------------


def growth(rows: list[dict[str, Any]], f: Any, fmt: str = ".2f") -> str:
    """'a -> b -> c (x y)': the figure at each step and the factor from the first to the last."""
    vals = [f(r) for r in rows]
    factor = f" ({vals[-1] / vals[0]:.1f}x)" if vals[0] else ""
    return " -> ".join(format(v, fmt) for v in vals) + factor


def report(
    args: argparse.Namespace, rows: list[dict[str, Any]], syn: dict[str, Any] | None, log: list[str]
) -> str:
    med = statistics.median
    cmd = "python bench/scale.py" + (f" --max {args.max}" if args.max != STEPS[-1] else "")
    cmd += " --skip-synthetic" if args.skip_synthetic else ""
    load = os.getloadavg()
    lines = [
        "## Scale: 100 -> 1,000 -> 10,000 images",
        "",
        f"- Command: `{cmd}`",
        f"- Machine: {machine()}, a shared VM (1-minute load average"
        f" {load[0]:.2f} at the end, the benchmark's own load included), so the times swing; the"
        " ratios (exporter vs `docker"
        " system df -v`, interleaved on the same engine in the same run) are the figures to compare.",
    ]
    if rows:
        lines += [
            "- Real engine: a private dockerd (Debian's 20.10, API 1.41, overlay2, own data root and"
            " socket), grown step by step with `POST /images/load` of generated archives (a shared base"
            f" layer, a layer shared by each group of {GROUP} images (at most {GROUPS}), one unique small"
            f" layer per image for the first {ALL_UNIQUE:,} images and for one in {UNIQUE_EVERY} after"
            " them, the others variants: a config of their own over an earlier image's layers, as"
            " retagged rebuilds are, because dockerd takes ~90 ms here to register a layer (10,000"
            " unique ones would take 15 minutes) and ~3 ms for an image over existing layers; a config"
            " history entry per layer), `POST /volumes/create` and `POST /containers/create`"
            " (created, not started, `NetworkMode: none`, half with a volume): N images, N/10 volumes,"
            " N/10 containers. At each step a fresh exporter (defaults but `--sampler.engine.interval`,"
            " sized to leave `docker system df -v` room between samples, and one scan at start) is"
            " measured.",
            '- Engine sample (warm): `docker_storage_sampler_duration_seconds{sampler="engine"}` of'
            " samples 2, 3 and 4 (the inspect cache filled by sample 1); `docker system df -v`:"
            " `/usr/bin/docker` with `DOCKER_HOST` set, run once right after each of those samples"
            " (interleaved, never overlapping); both medians of 3.",
            "",
            "| figure | " + " | ".join(f"{r['n']:,} images" for r in rows) + " |",
            "|---|" + "---:|" * len(rows),
        ]

        def row(name: str, f: Any) -> str:
            return f"| {name} | " + " | ".join(f(r) for r in rows) + " |"

        def calls(r: dict[str, Any]) -> str:
            totals = sorted({sum(c.values()) for c in r["calls_warm"]})
            return "/".join(f"{t:.0f}" for t in totals)

        lines += [
            row(
                "objects: images / layers (scan) / volumes / containers",
                lambda r: (
                    f"{r['have']['images']:,} / {r['scan_layers']:,.0f} / {r['have']['volumes']:,}"
                    f" / {r['have']['containers']:,}"
                ),
            ),
            row("exporter RSS after the first full samples", lambda r: f"{r['rss_first']:.1f} MiB"),
            row(
                "exporter RSS at the end / peak (VmHWM)",
                lambda r: f"{r['rss_end']:.1f} / {r['rss_hwm']:.1f} MiB",
            ),
            row("scan worker processes' RSS, summed", lambda r: f"{r['workers_rss_end']:.1f} MiB"),
            row(
                "series on /metrics (all / `docker_storage_*`)",
                lambda r: f"{r['series']:,} / {r['series_dse']:,}",
            ),
            row("lines / bytes on /metrics", lambda r: f"{r['lines']:,} / {r['bytes']:,}"),
            row("series folded into `__other__`", lambda r: f"{r['folded']:,.0f}"),
            row("scrape latency, median of 20", lambda r: f"{med(r['scrape']) * 1000:.1f} ms"),
            row("engine sample, cold (fills the inspect cache)", lambda r: f"{r['engine_cold']:.2f} s"),
            row("Engine API calls, cold sample (+ build cache)", lambda r: f"{r['calls_cold']:,.0f}"),
            row(
                "engine sample, warm, median of 3",
                lambda r: f"{med(r['engine_warm']) * 1000:.0f} ms",
            ),
            row("`docker system df -v`, median of 3", lambda r: f"{med(r['df']) * 1000:.0f} ms"),
            row(
                "**warm engine sample / `docker system df -v`** (target <= 0.5)",
                lambda r: f"**{med(r['engine_warm']) / med(r['df']):.2f}**",
            ),
            row("Engine API calls per warm cycle", calls),
            row("scan (first, at start)", lambda r: f"{r['scan']:.2f} s"),
            row("exporter start to first full samples", lambda r: f"{r['first_full']:.0f} s"),
            row(
                "building the step: load / volumes / containers",
                lambda r: (
                    f"{r['grow']['load']:.0f} / {r['grow']['volumes']:.0f} / {r['grow']['containers']:.0f} s"
                ),
            ),
            "",
        ]
        endpoints = sorted({e for r in rows for c in r["calls_warm"] for e in c})
        lines.append(
            "- Engine API calls per warm cycle, by endpoint (delta of `docker_storage_engine_requests_total`"
            " between consecutive warm samples): "
            + "; ".join(
                f"{r['n']:,} images: "
                + ", ".join(f"`{e}` {r['calls_warm'][-1].get(e, 0):.0f}" for e in endpoints)
                for r in rows
            )
        )
        if len(rows) > 1:
            first, last = rows[0], rows[-1]
            k = last["n"] / first["n"]
            lines += [
                f"- Growth over {k:,.0f}x the images ({first['n']:,} -> {last['n']:,}): RSS after the first"
                f" samples {growth(rows, lambda r: r['rss_first'], '.1f')} MiB; series"
                f" {growth(rows, lambda r: r['series'], ',')}; scrape"
                f" {growth(rows, lambda r: med(r['scrape']) * 1000, '.1f')} ms; warm engine sample"
                f" {growth(rows, lambda r: med(r['engine_warm']))} s against `docker system df -v`"
                f" {growth(rows, lambda r: med(r['df']))} s; scan {growth(rows, lambda r: r['scan'])} s.",
            ]
        failures = {r["n"]: r["failures"] for r in rows if r["failures"]}
        if failures:
            lines.append(f"- Sampler failures during the steps: {failures}")
        biggest = rows[-1]
        lines += [
            f"- Targets at {biggest['n']:,} images: RSS under 80 MiB:"
            f" {'met' if biggest['rss_hwm'] < 80 else '**not met**'} ({biggest['rss_first']:.1f} MiB"
            f" after the first samples, peak {biggest['rss_hwm']:.1f} MiB); warm engine sample at most"
            f" half of `docker system df -v`: "
            + ", ".join(
                f"{r['n']:,}: {'met' if med(r['engine_warm']) <= 0.5 * med(r['df']) else '**not met**'}"
                for r in rows
            )
            + "; API calls per warm cycle constant: "
            + ("met" if len({calls(r) for r in rows}) == 1 else "**not met**")
            + ".",
        ]
        if biggest["n"] < STEPS[-1]:
            lines.append(
                f"- 10,000 images were not measured on the real engine in this run (--max {args.max}):"
                " extrapolate from the growth above."
            )
    if syn is not None:
        t = syn["times"]
        lines += [
            "",
            "### The scan alone: a synthetic Docker root with 10,000 images / 50,050 layers",
            "",
            f"- Tree: `{syn['root']}` (built once by the script, reused): {SYN['images']:,} images, each a"
            f" shared base (one of {SYN['bases']}) and {SYN['per_image']} unique layers, so"
            f" {syn['layers']:,} layers; every layer an overlay2 dir (`diff/` with two small files, `link`,"
            " `lower`, `work/`) with its layerdb entry (`diff`, `size`, `cache-id`, `parent`,"
            f" `tar-split.json.gz`) and an `overlay2/l` link; image configs and `repositories.json`;"
            f" {SYN['containers']} containers, {SYN['volumes']} volumes. {syn['files']:,} inodes,"
            f" {syn['disk']:,} bytes on disk.",
            "- What runs: in a child process of its own, `exporter.scan.ScanSampler.run()` against a"
            f" `Store` holding a synthetic engine snapshot, Walker(workers={syn['workers']}), three times"
            f" (a first scan, then two steady-state rescans, nothing changed); {syn['errors']} errors,"
            f" {syn['skipped']} skipped, {syn['orphans']} orphans.",
            "",
            "| figure | value |",
            "|---|---:|",
            f"| first scan (empty layer cache) | {t[0]:.1f} s |",
            f"| steady-state rescan (median of 2) | {med(t[1:]):.2f} s"
            f" ({', '.join(f'{x:.2f}' for x in t[1:])}) |",
            f"| first / rescan | {t[0] / med(t[1:]):.1f}x |",
            f"| walks in a rescan | {sum(syn['walks_last'].values()):,} ({syn['walks_last']}),"
            f" {syn['cached']:,} layers from the cache |",
            f"| process RSS: before / after the first scan / after the rescans / peak |"
            f" {syn['rss_before']:.1f} / {syn['rss_first']:.1f} / {syn['rss_end']:.1f}"
            f" / {syn['rss_hwm']:.1f} MiB |",
            f"| worker processes' RSS, summed (after the first scan / at the end) |"
            f" {syn['workers_rss_first']:.1f} / {syn['workers_rss_end']:.1f} MiB |",
        ]
    lines += ["", *(f"- {x}" for x in log), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max", type=int, default=STEPS[-1], help="largest step (100, 1000 or 10000)")
    ap.add_argument("--budget", type=float, default=900, help="seconds after which no new step starts")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--skip-engine", action="store_true")
    ap.add_argument("--rebuild-tree", action="store_true")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--base", type=Path, default=BASE)
    ap.add_argument("--keep", action="store_true", help="leave the engine's data root behind")
    ap.add_argument("--out", type=Path, default=BENCHMARKS)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--scan-child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.scan_child:
        print(json.dumps(scan_child(args.scan_child, args.scan_child.parent / "manifest.json", args.workers)))
        return 0
    log: list[str] = []
    rows = [] if args.skip_engine else real_engine(args, log)
    syn = None if args.skip_synthetic else synthetic(args, log)
    section = report(args, rows, syn, log)
    print(section)
    if not args.no_write:
        write_section(section, args.out)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # the scan's worker processes (forkserver) import this file
    sys.exit(main())
