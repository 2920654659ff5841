"""Ground truth from the engine itself: the Docker CLI's own output and /system/df."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.harness.engine import PrivateEngine


def human_size(size: float) -> str:
    """go-units HumanSize, which `docker system df` prints: 4 significant digits, SI units."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{units[i]}"


BUSY = "a disk usage operation is already running"  # dockerd runs one /system/df at a time
T = TypeVar("T")


def one_df_at_a_time(call: Callable[[], T], tries: int = 40, pause: float = 0.25) -> T:
    """`call()`, again while dockerd refuses it for another disk-usage operation (an exporter
    sampling the same engine may be in one): at most `tries` times, `pause` s apart."""
    for attempt in range(tries):
        try:
            return call()
        except Exception as exc:  # docker-py's APIError, or the CLI's RuntimeError
            if BUSY not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(pause)
    raise AssertionError("unreachable")


def system_df(engine: PrivateEngine) -> dict[str, Any]:
    """What `docker system df -v` prints, as the exact numbers the CLI formats."""
    api = engine.api()
    try:
        return one_df_at_a_time(api.df)
    finally:
        api.close()


def cli_df_summary(engine: PrivateEngine) -> dict[str, dict[str, str]]:
    """`docker system df` rows by type: TotalCount, Active, Size, Reclaimable (as printed)."""
    out = one_df_at_a_time(lambda: engine.docker("system", "df", "--format", "{{json .}}"))
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["Type"]: r for r in rows}


def ids(engine: PrivateEngine, *args: str) -> set[str]:
    return {line.strip() for line in engine.docker(*args).splitlines() if line.strip()}


def image_states(engine: PrivateEngine) -> Counter[str]:
    """Each image's state by our exclusive definition, from the CLI's own listings."""
    all_ids = ids(engine, "images", "-a", "-q", "--no-trunc")
    top = ids(engine, "images", "-q", "--no-trunc")  # `docker images` hides intermediates
    untagged = ids(engine, "images", "-a", "-q", "--no-trunc", "--filter", "dangling=true")
    containers = ids(engine, "ps", "-a", "-q")
    used = ids(engine, "inspect", "--format", "{{.Image}}", *containers) if containers else set()
    states: Counter[str] = Counter()
    for image in all_ids:
        if image in used:
            states["in_use"] += 1
        elif image not in top:
            states["intermediate"] += 1
        elif image in untagged:
            states["dangling"] += 1
        else:
            states["unused"] += 1
    return states


def du(path: Path | str, *opts: str) -> tuple[int, int]:
    """(allocated bytes, inodes) of `du -s -x` on one path: GNU du is the ground truth."""

    def run(*extra: str) -> int:
        out = subprocess.run(
            ["du", "-s", "-x", *extra, *opts, str(path)], capture_output=True, text=True, check=True
        ).stdout
        return int(out.split()[0])

    return run("--block-size=1"), run("--inodes")


def fs_mountpoint(path: Path | str) -> str:
    """The top of the filesystem holding `path`: walk up while the device stays the same."""
    import os

    path = Path(path).resolve()
    dev = os.stat(path).st_dev
    while path.parent != path and os.stat(path.parent).st_dev == dev:
        path = path.parent
    return str(path)
