"""The overlay2 graphdriver's scanned figures (Docker 20.10 and 26.1 alike): each root dir,
image layer, container and volume beside `du` and Docker's own recorded sizes (layerdb's
`size`, SizeRw, the volumes' sizes)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from exporter.model import ScanSnapshot
from tests.harness.accuracy.common import (
    Table,
    Truth,
    df_size_rows,
    log_row,
    root_dir_rows,
    volume_rows,
)
from tests.harness.exporter import Samples
from tests.harness.truth import du

# The live mounts the scan never enters: overlay2's merged dirs, the containers' shm.
EXCLUDES = {"overlay2": ("--exclude=merged",), "containers": ("--exclude=mounts",)}


def symlink_bytes(path: Path) -> int:
    """st_size of every symlink under `path` (the lengths of their targets)."""
    total = 0
    for d, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            st = os.lstat(os.path.join(d, name))
            if stat.S_ISLNK(st.st_mode):
                total += st.st_size
    return total


def scan_rows(t: Table, s: Samples, scan: ScanSnapshot, truth: Truth, root: Path) -> None:
    t.heading("Scanned figures beside `du -s -x` and Docker's recorded sizes")
    root_dir_rows(t, s, scan, root, EXCLUDES)
    for x in sorted(scan.layers, key=lambda x: x.diff_id):
        d12 = x.diff_id.split(":")[1][:12]
        t.row(
            f"layer {d12} allocated",
            x.total.disk_bytes,
            du(root / "overlay2" / x.cache_id)[0],
            "`du` on overlay2/<cache-id>",
        )
        # Docker records a layer BuildKit committed with each symlink as 0 bytes (its tar header's
        # size), one it unpacked with the symlink's st_size (the length of its target): the
        # walk counts st_size, so the two may part by the layer's symlink bytes, no more.
        links = symlink_bytes(root / "overlay2" / x.cache_id / "diff")
        source = (
            "layerdb `size` (Docker's own; within the layer's symlink bytes)"
            if links
            else ("layerdb `size` (Docker's own)")
        )
        t.row(f"layer {d12} apparent", x.diff.apparent_bytes, x.size, source, tol=links)
    sizes_rw = truth.size_rw
    mounts = root / "image" / "overlay2" / "layerdb" / "mounts"
    for c in sorted(scan.containers, key=lambda c: c.name):
        mount_id = (mounts / c.id / "mount-id").read_text().strip()
        rw = c.rw
        t.row(
            f"container {c.name} writable, allocated",
            rw.disk_bytes if rw else None,
            du(root / "overlay2" / mount_id / "diff")[0],
            "`du` on its upper dir",
        )
        t.row(
            f"container {c.name} writable, apparent",
            rw.apparent_bytes if rw else None,
            sizes_rw[c.id],
            "`docker system df -v` SIZE (SizeRw)",
        )
        log_row(t, c.name, c.id, c.logs.disk_bytes, root)
    volume_rows(t, scan, truth, root)
    df_size_rows(t, s, truth)
