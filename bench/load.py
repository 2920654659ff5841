"""Load: many concurrent scrapers against the real exporter while its samplers run.

Starts a private Docker engine (its own data root and socket under --base), seeds it with the
test harness's known state, runs the real exporter as a child process on a free 127.0.0.1 port
with fast sampler intervals (engine 2 s, scan 5 s, build cache 5 s, so the scan and the engine
sample run all the time), and then --scrapers threads scrape /metrics as fast as they can for
--seconds (half on one kept-alive connection each, half on a fresh connection per scrape).
Reports failed scrapes (target: none), scrapes done, p50/p99/max latency (against the same
scrape from a single idle client, measured just before, in the same run), sampler runs during
the window, and the exporter's RSS (VmRSS, sampled every 0.25 s). Writes its section of docs/benchmarks.md.

    python bench/load.py [--seconds 60] [--scrapers 50] [--no-write]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shlex
import shutil
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import BENCHMARKS, children, machine, write_section  # noqa: E402
from exporter.config import Config  # noqa: E402
from tests.harness.engine import PrivateEngine  # noqa: E402
from tests.harness.exporter import ExporterProcess, parse, sampled_after, value  # noqa: E402
from tests.harness.seed import seed  # noqa: E402

BASE = Path("/tmp/dse-h11/h11-load")
INTERVALS = {"engine": "2s", "scan": "5s", "build-cache": "5s"}
DEFAULT_MAX = "default,0"
MARKER = b"docker_storage_engine_up"  # a complete /metrics body has it (it is not the last family)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (not its children), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k]


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    bytes: int = 0

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1


def scraper(port: int, keepalive: bool, deadline: float, res: Result, timeout: float) -> None:
    """Scrape /metrics until the deadline; every outcome recorded in `res` (own to this thread)."""
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            conn.request("GET", "/metrics", headers={} if keepalive else {"Connection": "close"})
            resp = conn.getresponse()
            body = resp.read()
            elapsed = time.perf_counter() - t0
            res.statuses[resp.status] = res.statuses.get(resp.status, 0) + 1
            if resp.status != 200:
                res.fail(f"HTTP {resp.status}")
            elif MARKER not in body:
                res.fail("incomplete body")
            else:
                res.latencies.append(elapsed)
                res.bytes += len(body)
            if not keepalive or resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            res.fail(type(exc).__name__)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.05)  # do not spin on a refused connection
    if conn is not None:
        conn.close()


def idle_latencies(port: int, n: int) -> list[float]:
    out = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
            if MARKER in body:
                out.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return out


def sampler_counts(text: str) -> dict[str, tuple[float, float, float]]:
    s = parse(text)
    out = {}
    for name in ("engine", "scan", "build_cache", "filesystem"):
        runs = value(s, "docker_storage_sampler_runs_total", sampler=name) or 0.0
        fails = value(s, "docker_storage_sampler_failures_total", sampler=name) or 0.0
        dur = value(s, "docker_storage_sampler_duration_seconds", sampler=name) or 0.0
        out[name] = (runs, fails, dur)
    return out


FLAGS = [
    "--sampler.engine.interval", INTERVALS["engine"],
    "--sampler.scan.interval", INTERVALS["scan"],
    "--sampler.build-cache.interval", INTERVALS["build-cache"],
    # API 1.41 (Debian's 20.10): the build cache needs the full /system/df; let it run that often too.
    "--sampler.build-cache.legacy-interval", INTERVALS["build-cache"],
    "--sampler.filesystem.interval", "2s",
    "--log.level", "warn",
]  # fmt: skip


def phase(args: argparse.Namespace, engine: PrivateEngine, max_requests: str) -> dict[str, Any]:
    """One exporter, idle latency first, then the load; every figure of one column."""
    extra = [*FLAGS] + ([] if max_requests == "default" else ["--web.max-requests", max_requests])
    exporter = ExporterProcess(engine.host, args.base / f"exporter-{max_requests}.log", extra)
    try:
        exporter.start()
        assert exporter.proc is not None
        pid = exporter.proc.pid
        started = time.time()
        exporter.wait_until(sampled_after(started, "engine", "scan", "build_cache"), timeout=120)
        idle = idle_latencies(exporter.port, args.idle)
        before_text = exporter.scrape_text()
        before = sampler_counts(before_text)
        series = sum(1 for line in before_text.splitlines() if line and not line.startswith("#"))

        results = [Result() for _ in range(args.scrapers)]
        rss: list[int] = []
        child_rss: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.25):
                r = rss_kib(pid)
                if r is not None:
                    rss.append(r)
                child_rss.append(sum(rss_kib(c) or 0 for c in children(pid)))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        cpu0 = cpu_seconds(pid)
        t_start = time.monotonic()
        deadline = t_start + args.seconds
        threads = [
            threading.Thread(
                target=scraper,
                args=(exporter.port, i % 2 == 0, deadline, results[i], args.timeout),
                daemon=True,
            )
            for i in range(args.scrapers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + args.timeout + 30)
        wall = time.monotonic() - t_start
        cpu = cpu_seconds(pid) - cpu0
        stop.set()
        watcher.join(5)
        alive = exporter.proc.poll() is None
        after = sampler_counts(exporter.scrape_text())
        log_tail = exporter.tail(4000)
    finally:
        exporter.stop()

    failures: dict[str, int] = {}
    statuses: dict[int, int] = {}
    for r in results:
        for k, v in r.failures.items():
            failures[k] = failures.get(k, 0) + v
        for k, v in r.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "max_requests": max_requests,
        "flags": extra,
        "lat": sorted(x for r in results for x in r.latencies),
        "lat_ka": sorted(x for i, r in enumerate(results) if i % 2 == 0 for x in r.latencies),
        "lat_fresh": sorted(x for i, r in enumerate(results) if i % 2 == 1 for x in r.latencies),
        "failures": failures,
        "statuses": statuses,
        "wall": wall,
        "cpu": cpu,
        "idle": idle,
        "series": series,
        "body": max((r.bytes // len(r.latencies) for r in results if r.latencies), default=0),
        "rss": [x / 1024 for x in rss],
        "child_rss": [x / 1024 for x in child_rss],
        "runs": {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after},
        "dur": {k: (before[k][2], after[k][2]) for k in after},
        "alive": alive,
        "log_tail": log_tail,
    }


def report(args: argparse.Namespace, phases: list[dict[str, Any]]) -> str:
    ms = 1000.0

    def row(name: str, f: Any) -> str:
        return f"| {name} | " + " | ".join(f(p) for p in phases) + " |"

    def lat(key: str, q: float) -> Any:
        return lambda p: f"{pct(p[key], q) * ms:.1f} ms"

    def failed(p: dict[str, Any]) -> str:
        why = ", ".join(f"{k}: {v:,}" for k, v in sorted(p["failures"].items()))
        return f"**{sum(p['failures'].values()):,}**" + (f" ({why})" if why else "")

    cmd = "python bench/load.py" + "".join(
        f" {flag} {v}"
        for flag, v, d in (
            ("--seconds", f"{args.seconds:g}", "60"),
            ("--scrapers", args.scrapers, 50),
            ("--max-requests", args.max_requests, DEFAULT_MAX),
        )
        if v != d
    )
    load = os.getloadavg()
    names = {
        "default": f"`--web.max-requests` default ({Config.max_requests})",
        "0": "`--web.max-requests 0` (unlimited)",
    }
    lines = [
        "## Load: concurrent scrapers",
        "",
        f"- Command: `{cmd}`",
        f"- Machine: {machine()}, a shared VM (1-minute load"
        f" average {load[0]:.2f} at the end, the benchmark's own load included); the scrapers, the"
        " exporter and dockerd"
        " share the 2 cores. Absolute times are this machine's; compare the ratios to one idle client,"
        " measured just before each load in the same run.",
        "- Setup: a private dockerd (Debian's 20.10, API 1.41, own data root and socket), seeded by"
        " `tests.harness.seed.seed` (busybox images of every state, 4 containers, 2 volumes,"
        " BuildKit cache); the real exporter as a child process on 127.0.0.1 with"
        f" `{shlex.join(FLAGS)}`, all else default (top-n 50), one column per `--web.max-requests`"
        " setting, one after the other on the same engine.",
        f"- Load: {args.scrapers} threads in one Python process (`http.client`), each scraping"
        f" `/metrics` back to back for {args.seconds:g} s; even-numbered threads on one kept-alive"
        " connection each (as Prometheus scrapes), odd ones on a fresh connection per scrape. A scrape"
        " fails on any connection error, a status other than 200, or a body without"
        f" `{MARKER.decode()}`. Latency is the client's wall time from request to the last body byte,"
        f" so it includes the client's own wait for its GIL among {args.scrapers} threads.",
        "",
        "| figure | "
        + " | ".join(
            names.get(p["max_requests"], f"`--web.max-requests {p['max_requests']}`") for p in phases
        )
        + " |",
        "|---|" + "---:|" * len(phases),
        row("failed scrapes (target: none)", failed),
        row(
            "scrapes done",
            lambda p: f"{len(p['lat']):,} in {p['wall']:.1f} s ({len(p['lat']) / p['wall']:,.0f}/s)",
        ),
        row("... kept-alive / fresh-connection", lambda p: f"{len(p['lat_ka']):,} / {len(p['lat_fresh']):,}"),
        row("HTTP statuses", lambda p: ", ".join(f"{k}: {v:,}" for k, v in sorted(p["statuses"].items()))),
        row("body per scrape", lambda p: f"{p['series']} samples, {p['body']:,} bytes"),
        row("latency p50", lat("lat", 50)),
        row("latency p99", lat("lat", 99)),
        row("latency max", lambda p: f"{p['lat'][-1] * ms:.1f} ms" if p["lat"] else "-"),
        row(
            "... kept-alive p50 / p99",
            lambda p: f"{pct(p['lat_ka'], 50) * ms:.1f} / {pct(p['lat_ka'], 99) * ms:.1f} ms",
        ),
        row(
            "... fresh-connection p50 / p99",
            lambda p: f"{pct(p['lat_fresh'], 50) * ms:.1f} / {pct(p['lat_fresh'], 99) * ms:.1f} ms",
        ),
        row(
            f"one idle client just before (median of {args.idle})",
            lambda p: f"{statistics.median(p['idle']) * ms:.1f} ms",
        ),
        row(
            "**p50 under load / idle**",
            lambda p: f"**{pct(p['lat'], 50) / statistics.median(p['idle']):.0f}x**",
        ),
        row(
            "exporter CPU per scrape (samplers included)",
            lambda p: (
                f"{p['cpu'] / max(1, len(p['lat'])) * ms:.2f} ms ({p['cpu']:.0f} CPU-s in {p['wall']:.0f} s)"
            ),
        ),
        row(
            "exporter RSS (VmRSS every 0.25 s) min / median / max",
            lambda p: f"{min(p['rss']):.1f} / {statistics.median(p['rss']):.1f} / {max(p['rss']):.1f} MiB",
        ),
        row("scan worker processes' RSS, summed, max", lambda p: f"{max(p['child_rss']):.1f} MiB"),
        row(
            "sampler runs in the window (failures)",
            lambda p: ", ".join(f"{k} {r:.0f} ({f:.0f})" for k, (r, f) in sorted(p["runs"].items())),
        ),
        row(
            "last sample's duration, before -> end of the load",
            lambda p: ", ".join(
                f"{k} {a * ms:.0f} -> {b * ms:.0f} ms" for k, (a, b) in sorted(p["dur"].items())
            ),
        ),
        row("exporter alive at the end", lambda p: "yes" if p["alive"] else "**no**"),
        "",
    ]
    for p in phases:
        n = sum(p["failures"].values())
        label = names.get(p["max_requests"], f"`--web.max-requests {p['max_requests']}`")
        lines.append(f"- Target, no failed scrape, with {label}: {'met' if n == 0 else '**not met**'}.")
        if not p["alive"]:
            lines.append(f"  Exporter log tail: `{p['log_tail'][-600:]!r}`")
    lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> str:
    engine = PrivateEngine(args.base)
    phases = []
    try:
        t0 = time.monotonic()
        engine.start()
        seed(engine)
        print(f"engine seeded in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        for mr in args.max_requests.split(","):
            print(f"load with --web.max-requests {mr}", file=sys.stderr)
            phases.append(phase(args, engine, mr.strip()))
    finally:
        engine.stop()
        if not args.keep:
            shutil.rmtree(args.base, ignore_errors=True)
    return report(args, phases)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--scrapers", type=int, default=50)
    ap.add_argument("--timeout", type=float, default=10, help="client timeout of one scrape, seconds")
    ap.add_argument("--idle", type=int, default=50, help="scrapes by one idle client before the load")
    ap.add_argument(
        "--max-requests",
        default=DEFAULT_MAX,
        help="comma-separated --web.max-requests values, one load each ('default': the exporter's own)",
    )
    ap.add_argument("--base", type=Path, default=BASE, help="the private engine's directory")
    ap.add_argument("--keep", action="store_true", help="leave the engine's data root behind")
    ap.add_argument("--out", type=Path, default=BENCHMARKS)
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    if not 0 < args.seconds <= 900 or not 0 < args.scrapers <= 500:
        ap.error("--seconds must be in (0, 900] and --scrapers in (0, 500]")
    section = run(args)
    print(section)
    if not args.no_write:
        write_section(section, args.out)
        print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
