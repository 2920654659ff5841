#!/usr/bin/env python3
"""Generate the Grafana dashboards of docker-storage-exporter.

    python grafana/generate.py            # write grafana/dashboards/{host,fleet}.json
    python grafana/generate.py --check    # exit 1 when a committed file differs from a fresh build

The JSON is plain Grafana dashboard JSON (schemaVersion 39, what Grafana 10 and 11 import). Edit the
dashboards in grafana/dashboards_lib/ (its docstring lists the modules), never the JSON: CI runs
`--check` (tests/test_dashboards.py) and fails on a difference. This file is the command line.

Conventions (issue 4): a `datasource` variable and every panel and target pointing at
`${datasource}`; `job` and `instance` variables from `docker_storage_exporter_build_info`; every
host query filtered by job and instance, every fleet query by job; only families listed in
docs/metrics.md.

Shared with the alert rules (grafana/alerts/docker-storage.rules.yml): the predicted time until
a filesystem is full or out of inodes and the reclaimable bytes per host come from its recording
rules (`docker_storage:filesystem_hours_until_full`, `…_inodes_hours_until_out`,
`docker_storage:reclaimable_bytes:sum`), so a panel and an alert can never disagree on the
formula. The rules ship with the dashboards (Helm chart, compose demo); without them these panels
stay empty and say so in their descriptions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, grafana/ is sys.path[0] already; loaded by path (tests/test_dashboards.py) it
# is not, and the dashboards' package lives beside this file.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from dashboards_lib.fleet import fleet_dashboard  # noqa: E402
from dashboards_lib.host import host_dashboard  # noqa: E402

OUT_DIR = HERE / "dashboards"


def build() -> dict[str, dict]:
    """File name → dashboard."""
    return {"host.json": host_dashboard(), "fleet.json": fleet_dashboard()}


def render(dash: dict) -> str:
    return json.dumps(dash, indent=2, sort_keys=True) + "\n"


def check(out_dir: Path = OUT_DIR, dashboards: dict[str, dict] | None = None) -> list[str]:
    """One message per file that is missing or differs from a fresh generation."""
    problems = []
    for name, dash in (dashboards or build()).items():
        path = out_dir / name
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        if not path.is_file():
            problems.append(f"{shown} is missing: run python grafana/generate.py")
        elif path.read_text() != render(dash):
            problems.append(f"{shown} differs from a fresh generation: run python grafana/generate.py")
    return problems


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dash in build().items():
        path = out_dir / name
        path.write_text(render(dash))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when the committed JSON is not up to date")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="dashboards directory (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
