"""What every benchmark prints about the machine it ran on."""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

from exporter.model import ScanSnapshot

BENCHMARKS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    return (
        f"nproc {len(os.sched_getaffinity(0))}, {cpu_model()}, Python {platform.python_version()},"
        f" {platform.system()} {platform.release()}"
    )


def write_section(section: str, out: Path = BENCHMARKS) -> None:
    """Replace the section (from its `## ` heading to the next) in docs/benchmarks.md, or add it."""
    heading = section.splitlines()[0]
    text = (
        out.read_text()
        if out.exists()
        else "# Benchmarks\n\nMeasured side by side in one run; quote ratios, not seconds.\n"
    )
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = section.rstrip("\n") + "\n\n"
    text = (
        pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text.rstrip("\n") + "\n")


def children(pid: int, depth: int = 0) -> list[int]:
    """Every descendant (the scan's workers are children of the forkserver, a child of ours)."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    if depth < 4:
        out += [d for c in list(out) for d in children(c, depth + 1)]
    return out


def scan_machine_line(load_before: float, load_after: float, walk: str) -> str:
    """The scan benchmarks' machine line: CPUs, model, Python, kernel, walk, load around the runs."""
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}, walk {walk};"
        f" 1-minute load average {load_before:.2f} before the runs, {load_after:.2f} after"
    )


def busy_note(ceiling: float, workers: int) -> list[str]:
    """A warning line when the machine's own parallel ceiling says others shared the cores."""
    if workers > 1 and ceiling < 0.8 * workers:
        return [
            f"- **The machine was busy during this run** (the parallel ceiling below is {ceiling:.2f}x"
            f" against an ideal {workers}x): other work competed for the cores, so these figures"
            " understate the scan; rerun on an idle machine."
        ]
    return []


def timing_table(
    rows: list[tuple[str, str, str]], med: dict[str, float], times: dict[str, list[float]]
) -> str:
    """Markdown rows: what, median ms, each run's ms, what it covers."""
    return "\n".join(
        f"| {name} | {med[k] * 1000:,.1f} | {', '.join(f'{x * 1000:,.1f}' for x in times[k])} | {what} |"
        for name, k, what in rows
    )


def walk_kinds(walks: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(walks.items()))


def containerd_scan_rows(
    workers: int, full: ScanSnapshot, steady: ScanSnapshot
) -> list[tuple[str, str, str]]:
    """The rows of a containerd store's scans (full, first and steady-state rescan) in a
    timing_table: what both containerd benchmarks time the same way."""
    fw, sw = full.walks, steady.walks
    return [
        (
            f"full scan: fresh `ScanSampler`, empty cache, Walker(workers={workers})",
            "full",
            f"{sum(fw.values()):,} walks ({walk_kinds(fw)})",
        ),
        ("first rescan: `run()` again on the same sampler, nothing changed", "first_rescan", "as below"),
        (
            "steady-state rescan: `run()` a third time on the same sampler, nothing changed"
            " (after an untimed `gc.collect()`)",
            "steady",
            f"{sum(sw.values())} walks ({walk_kinds(sw)}); the {len(steady.layers):,} image layers' `fs/` as"
            " recorded, their dirs beside it from the cache",
        ),
    ]


SWING_NOTE = (
    "- On a shared VM single runs swing by a third; the ratios come from runs interleaved in one"
    " process, and repeated invocations are the way to see their spread."
)


def scan_targets(full_ratio: float, steady_ratio: float, steady: str) -> list[str]:
    """The two scan targets both containerd benchmarks judge (issue 12), with their verdicts;
    `steady`: the du / steady-state ratio as the caller prints it."""
    return [
        f"- **full scan / du = {full_ratio:.2f}** (target: <= 0.6 on 2 cores):"
        f" {'met' if full_ratio <= 0.6 else 'not met'}",
        f"- **du / steady-state rescan = {steady}** (target: >= 50x):"
        f" {'met' if steady_ratio >= 50 else 'not met'}",
    ]


def pool_notes(workers: int, ceiling: float, cold_full: float) -> list[str]:
    """The machine's parallel ceiling and the first full scan with the pool's start."""
    return [
        f"- Parallel ceiling of the machine, {workers} processes spinning a CPU-bound loop vs one:"
        f" {ceiling:.2f}x.",
        f"- First full scan including the start of the worker pool (forkserver): {cold_full * 1000:,.0f} ms.",
    ]


def emit(section: str, no_write: bool, out: Path = BENCHMARKS) -> None:
    """Print a section and, unless `no_write`, write it into docs/benchmarks.md."""
    print(section)
    if not no_write:
        write_section(section, out)
        print(f"written to {out}", file=sys.stderr)
