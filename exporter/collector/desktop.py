"""Docker Desktop's VM disk image on this host (the desktop sampler's stat)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter.collector.families import gauge, skipped
from exporter.model import DesktopSnapshot

INFO = gauge(
    "desktop_disk_image_info",
    "Always 1 for each Docker Desktop VM disk image found on this host: its format (from the "
    "name; the file is never opened) and platform (macos, linux, wsl2, hyperv).",
    ["path", "format", "platform"],
)
APPARENT = gauge(
    "desktop_disk_image_apparent_bytes",
    "Apparent size of the disk image (st_size): for a sparse Docker.raw the disk's limit, what "
    "Finder and ls -l show; for a VHDX or qcow2 the length it has grown to.",
    ["path"],
)
ALLOCATED = gauge(
    "desktop_disk_image_allocated_bytes",
    "Bytes the host's disk holds for the disk image (st_blocks*512; on Windows "
    "GetCompressedFileSizeW): what Docker Desktop really takes from this host.",
    ["path"],
)
FS_SIZE = gauge(
    "desktop_disk_image_filesystem_size_bytes",
    "Size of the host filesystem holding the disk image (statvfs of its dir).",
    ["path"],
)
FS_AVAIL = gauge(
    "desktop_disk_image_filesystem_avail_bytes",
    "Bytes available to unprivileged users on the host filesystem holding the disk image.",
    ["path"],
)


def desktop(snap: DesktopSnapshot) -> Iterator[Metric]:
    yield skipped("desktop", snap.skipped)
    if not snap.images:  # Desktop seen before, no image now: no empty families
        return
    info, apparent, allocated, fs_size, fs_avail = (
        f.new() for f in (INFO, APPARENT, ALLOCATED, FS_SIZE, FS_AVAIL)
    )
    for i in snap.images:
        info.add_metric([i.path, i.format, i.platform], 1)
        apparent.add_metric([i.path], i.apparent_bytes)
        if i.allocated_bytes is not None:
            allocated.add_metric([i.path], i.allocated_bytes)
        if i.filesystem_size is not None and i.filesystem_avail is not None:
            fs_size.add_metric([i.path], i.filesystem_size)
            fs_avail.add_metric([i.path], i.filesystem_avail)
    yield from (info, apparent, allocated, fs_size, fs_avail)
