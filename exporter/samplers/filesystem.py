"""The filesystem sampler: statvfs of each filesystem holding an engine's area."""

from __future__ import annotations

import os
from typing import Any

from exporter.model import EngineSnapshot, FilesystemSnapshot
from exporter.samplers.base import NotDue, Sampler, Store
from exporter.sources import fs


class FilesystemSampler(Sampler):
    """statvfs of each filesystem holding a Docker area. Needs no engine once the root is
    known, so disk-full alerts keep working while dockerd is down."""

    name = "filesystem"

    def __init__(self, store: Store, rootfs: str = "/", **kw: Any) -> None:
        super().__init__(store, **kw)
        self.rootfs = rootfs

    def paths(self) -> list[str]:
        """The Docker root, its top-level dirs (any may be a mount of its own) and volumes
        whose data lives elsewhere, as host paths."""
        engine = self.store.latest(EngineSnapshot)
        if engine is None or not engine.info.root_dir:
            # Not a failure of ours: wait for the first engine sample to name the root.
            raise NotDue()
        root = engine.info.root_dir
        paths = [root]
        try:
            local = fs.host_to_local(root, self.rootfs)
            paths += [
                f"{root.rstrip('/')}/{n}"
                for n in sorted(os.listdir(local))
                if os.path.isdir(os.path.join(local, n))
            ]
        except OSError:
            pass  # the root itself is still statfs'd, and fails clearly if invisible
        paths += sorted(
            {
                v.mountpoint
                for v in engine.volumes
                if v.mountpoint and not v.mountpoint.startswith(root.rstrip("/") + "/")
            }
        )
        return paths

    def sample(self) -> FilesystemSnapshot:
        mounts = fs.read_mounts()
        seen: set[str] = set()
        out = []
        for i, path in enumerate(self.paths()):
            try:
                info = fs.statfs(path, self.rootfs, mounts)
            except OSError:
                if i == 0:
                    raise  # the root itself must be visible
                continue  # a dir or volume that vanished since the listing
            if info.mountpoint in seen:
                continue
            seen.add(info.mountpoint)
            out.append(info)
        return FilesystemSnapshot(tuple(out))

    def summary(self, snapshot: FilesystemSnapshot) -> dict[str, Any]:
        return {
            "filesystems": len(snapshot.filesystems),
            "avail_bytes": [f.avail for f in snapshot.filesystems],
        }
