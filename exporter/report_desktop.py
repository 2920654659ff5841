"""The `report` section about Docker Desktop's VM disk image: what the host disk holds for it,
how much of that Docker's own data is, and how to get space back on that platform.

Only present when the desktop sampler found an image: a host without Desktop reads nothing
about it. Reads snapshots only (no I/O), like the rest of the report."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.collector.scan import container_usage, volume_usage
from exporter.model import BuildCacheSnapshot, DesktopDiskImage, DesktopSnapshot, EngineSnapshot, ScanSnapshot
from exporter.units import scaled

Human = Callable[[float | None], str]
RECLAIM_SPACE = "docker run --privileged --pid=host docker/desktop-reclaim-space"
LIMIT = "Settings > Resources > Disk usage limit"


def docker_data(
    engine: EngineSnapshot | None, bc: BuildCacheSnapshot | None, scan: ScanSnapshot | None
) -> dict[str, Any]:
    """`docker system df` SIZE by object, as far as this exporter measured it. On a Desktop
    host the scan cannot see inside the VM, so containers and volumes are unmeasured there."""
    figures: dict[str, int | None] = {
        "images": engine.image_usage.used if engine and engine.image_usage else None,
        "build_cache": bc.build_cache.bytes if bc else None,
        "containers": container_usage(scan).used if scan and scan.attribution else None,
        "volumes": volume_usage(scan).used if scan else None,
    }
    known = [v for v in figures.values() if v is not None]
    return {
        **figures,
        "total": sum(known) if known else None,
        "unmeasured": [k for k, v in figures.items() if v is None],
    }


def _step(step: str, command: str = "") -> dict[str, str]:
    return {"step": step, "command": command}


def steps(image: DesktopDiskImage) -> list[dict[str, str]]:
    """Getting space back, in order: prune inside, then what this platform's image needs."""
    out = [
        _step(
            "remove what Docker no longer needs (the prunes above say what each frees); -a adds "
            "unused images, --volumes unused volumes, whose data is gone for good",
            "docker system prune",
        )
    ]
    path = image.path
    if image.platform in ("wsl2", "hyperv"):
        out.append(
            _step("trim inside the VM, so that the blocks freed are marked free in the VHDX", RECLAIM_SPACE)
        )
        if image.platform == "wsl2":
            out.append(
                _step(
                    "the VHDX never shrinks by itself: quit Docker Desktop, then stop WSL", "wsl --shutdown"
                )
            )
        else:
            out.append(_step("quit Docker Desktop (its Hyper-V VM stops)"))
        out.append(
            _step(
                "compact it, in an administrator PowerShell (Hyper-V module)",
                f'Optimize-VHD -Path "{path}" -Mode Full',
            )
        )
        out.append(
            _step(
                "or, without Hyper-V (Windows Home), with diskpart",
                f'diskpart: select vdisk file="{path}"; attach vdisk readonly; compact vdisk; detach vdisk',
            )
        )
        if image.platform == "wsl2":
            out.append(
                _step(
                    "WSL's sparse VHD (wsl --manage … --set-sparse true) is switched off by Microsoft "
                    "over data corruption (microsoft/WSL#13075): do not force it with --allow-unsafe"
                )
            )
        return out
    if image.format == "qcow2":
        when = "Docker.qcow2 gives freed space back to the host minutes after a trim"
    else:
        when = "Docker.raw gives freed blocks back to the host within seconds"
    out.append(
        _step(f"{when}; files deleted inside a running container come back only after one", RECLAIM_SPACE)
    )
    out.append(
        _step(
            f"to give the host back more for good, lower {LIMIT}: that recreates the disk image, "
            "deleting every image, container and volume in it"
        )
    )
    return out


def section(
    snap: DesktopSnapshot | None,
    engine: EngineSnapshot | None,
    bc: BuildCacheSnapshot | None,
    scan: ScanSnapshot | None,
) -> dict[str, Any] | None:
    if snap is None or not snap.images:
        return None
    held = [i.allocated_bytes for i in snap.images if i.allocated_bytes is not None]
    return {
        "images": [
            {
                "path": i.path,
                "format": i.format,
                "platform": i.platform,
                "origin": i.origin,
                "apparent_bytes": i.apparent_bytes,
                "allocated_bytes": i.allocated_bytes,
                "filesystem": {"size": i.filesystem_size, "avail": i.filesystem_avail},
            }
            for i in snap.images
        ],
        "host_bytes": sum(held) if held else None,
        "docker_data": docker_data(engine, bc, scan),
        "reclaim": steps(snap.images[0]),  # the biggest: the one in use, as a rule
        "skipped": snap.skipped,
    }


def iec(n: float | None) -> str:
    """Binary units, as Desktop's settings and `ls -lh` show a disk image's size."""
    return scaled(n, 1024, ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), "{:.2f}{}")


Table = Callable[[list[list[str]], list[str]], list[str]]


def render(d: dict[str, Any], human: Human, table: Table) -> list[str]:
    """The section's lines, in report.py's style (`human` SI bytes, `table` its columns)."""

    def both(n: int | None) -> str:
        return f"{human(n)} ({iec(n)})" if n is not None else "?"

    title = "Docker Desktop's disk image on this host"
    lines = ["", title, "-" * len(title)]
    rows = []
    for i in d["images"]:
        fs = i["filesystem"]
        free = f"{human(fs['avail'])} of {human(fs['size'])}" if fs["size"] is not None else "?"
        row = [i["path"], i["format"], i["platform"], both(i["apparent_bytes"]), both(i["allocated_bytes"])]
        rows.append([*row, free])
    lines += table(rows, ["PATH", "FORMAT", "PLATFORM", "APPARENT", "ON HOST DISK", "HOST DISK FREE"])
    if any(i["format"] == "raw" for i in d["images"]):
        lines.append(
            f"a raw image's apparent size is the disk's limit ({LIMIT}), what Finder and ls -l "
            "show; only ON HOST DISK is taken from this host"
        )
    if len(d["images"]) > 1:
        lines.append(
            "Desktop uses one of these (Settings > Resources > Disk image location); another is left "
            "from an older release or a move, and its bytes come back when it is deleted"
        )
    lines += _inside(d, human, both)
    lines.append("To get space back on this host:")
    for n, s in enumerate(d["reclaim"], 1):
        lines.append(f"  {n}. {s['step']}")
        if s["command"]:
            lines.append(f"       {s['command']}")
    return lines


def _inside(d: dict[str, Any], human: Human, both: Callable[[int | None], str]) -> list[str]:
    """Docker's own figures beside what the host holds for the image."""
    data = d["docker_data"]
    objects = ("images", "build_cache", "containers", "volumes")
    parts = [f"{k.replace('_', ' ')} {human(data[k])}" for k in objects if data[k] is not None]
    if not parts:
        return ["Docker's own data in it: not measured (no figures from the engine)"]
    unmeasured = ", ".join(x.replace("_", " ") for x in data["unmeasured"])
    line = f"Docker's own data in it (docker system df): {', '.join(parts)}; {human(data['total'])} in all"
    lines = [line + (f" ({unmeasured} not measured from here)" if unmeasured else "")]
    if d["host_bytes"] is not None:
        rest = max(d["host_bytes"] - data["total"], 0)
        lines.append(
            f"the rest of what the host holds for it, {both(rest)}: the VM's own system and space freed "
            "inside but not given back yet" + (", and what was not measured" if unmeasured else "")
        )
    return lines
