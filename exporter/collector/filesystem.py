"""The filesystems holding the Docker areas (the filesystem sampler's statvfs)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from exporter.collector.families import gauge
from exporter.model import FilesystemSnapshot

LABELS = ("mountpoint", "path")
SIZE = gauge(
    "filesystem_size_bytes", "Size of the filesystem holding the Docker area `path` (statvfs).", LABELS
)
AVAIL = gauge(
    "filesystem_avail_bytes",
    "Bytes available to unprivileged users on that filesystem (statvfs f_bavail).",
    LABELS,
)
FILES = gauge("filesystem_files", "Inodes on that filesystem (statvfs).", LABELS)
FILES_FREE = gauge("filesystem_files_free", "Free inodes on that filesystem (statvfs).", LABELS)
READONLY = gauge(
    "filesystem_readonly", "1 if that filesystem is mounted read-only (its own mount options).", LABELS
)


def filesystems(snap: FilesystemSnapshot) -> Iterator[Metric]:
    size, avail, files, files_free, readonly = (f.new() for f in (SIZE, AVAIL, FILES, FILES_FREE, READONLY))
    for f in snap.filesystems:
        lv = [f.mountpoint, f.path]
        size.add_metric(lv, f.size)
        avail.add_metric(lv, f.avail)
        files.add_metric(lv, f.files)
        files_free.add_metric(lv, f.files_free)
        readonly.add_metric(lv, 1 if f.readonly else 0)
    yield from (size, avail, files, files_free, readonly)
