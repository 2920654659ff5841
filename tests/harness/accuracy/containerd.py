"""The containerd image store's scanned figures (Docker 26.1 with containerd-snapshotter):
the root dirs, each image layer's and container's snapshot dir, the owners of `snapshots/`,
the leaked dir, the content store by kind. Ground truth from outside our code: GNU `du`,
the engine's `/system/df`, and containerd's own answers through trixie's `ctr` on the
engine's containerd socket (read-only calls: snapshots ls / usage / mounts, content ls,
images ls, namespaces ls), never from the bolt files we parse."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

from exporter.model import CONTENT_KINDS, ScanSnapshot
from exporter.sources.layout import chain_ids
from tests.harness.accuracy.common import (
    Table,
    Truth,
    df_size_rows,
    log_row,
    num,
    root_dir_rows,
    volume_rows,
)
from tests.harness.exporter import Samples
from tests.harness.trixie import ChrootEngine
from tests.harness.truth import du

SNAPSHOTTER = "io.containerd.snapshotter.v1.overlayfs"
CONTENT = "io.containerd.content.v1.content"
# From outside the engine's mount namespace only the containers' shm (`mounts/`) is excluded,
# as the scan excludes it; the rootfs mount points `rootfs/overlayfs/<id>` are mounts in
# there only, plain empty dirs here, and both the scan and `du -x` count them.
EXCLUDES = {"containers": ("--exclude=mounts",)}
UPPER = re.compile(r"upperdir=[^,]*/snapshots/(\d+)/fs")
LOWER = re.compile(r"lowerdir=([^,\s]*)")


class Ctr:
    """trixie's `ctr` (containerd 1.7), chrooted into R, on the engine's own containerd."""

    def __init__(self, engine: ChrootEngine) -> None:
        self.engine = engine
        self.sock = f"{engine.exec_root_inside}/containerd/containerd.sock"

    def __call__(self, *args: str, ns: str = "moby") -> str:
        res = subprocess.run(
            ["chroot", str(self.engine.rootfs), "ctr", "-a", self.sock, "-n", ns, *args],
            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        if res.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} on {self.engine.name}: {res.stderr[-2000:]}")
        return res.stdout

    def table(self, *args: str, ns: str = "moby") -> list[list[str]]:
        """A listing's rows (header dropped), split on whitespace."""
        return [line.split() for line in self(*args, ns=ns).splitlines()[1:] if line.strip()]


class Containerd:
    """What containerd itself says of the engine's store, asked once before our sample."""

    def __init__(self, engine: ChrootEngine) -> None:
        ctr = Ctr(engine)
        self.namespaces = ctr("namespaces", "ls", "-q").split()
        # key -> (size, inodes): committed snapshots' as recorded at commit, active ones' walked.
        self.usage = {r[0]: (int(r[1]), int(r[2])) for r in ctr.table("snapshots", "usage", "-b")}
        snapshots = ctr.table("snapshots", "ls")  # KEY [PARENT] KIND
        self.parents = {r[0]: (r[1] if len(r) == 3 else "") for r in snapshots}
        self.listed = sum(len(ctr.table("snapshots", "ls", ns=n)) for n in self.namespaces)
        # Mounts of an active snapshot name its upper dir and, in order, its parents' dirs (the
        # target is only printed: nothing is mounted).
        active = [r[0] for r in snapshots if r[-1] == "Active"]
        self.mounts = {key: ctr("snapshots", "mounts", "/x", key) for key in active}
        self.labels: dict[str, set[str]] = defaultdict(set)  # blob digest -> its label keys
        self.recorded: set[str] = set()  # blobs some namespace records
        for n in self.namespaces:
            for r in ctr.table("content", "ls", ns=n):
                self.recorded.add(r[0])
                if r[-1] != "-":
                    self.labels[r[0]].update(kv.split("=", 1)[0] for kv in r[-1].split(","))
        self.targets = {r[2] for r in ctr.table("images", "ls")}  # the images' manifests or indexes

    def upper(self, key: str) -> str | None:
        m = UPPER.search(self.mounts.get(key, ""))
        return m.group(1) if m else None

    def dirs_by_key(self) -> dict[str, str]:
        """Snapshot key -> its dir number, as the active snapshots' mounts show it: the upper dir
        is the key's own, the lower dirs its parents' from the nearest down."""
        out = {}
        for key, text in self.mounts.items():
            n = self.upper(key)
            if n is not None:
                out[key] = n
            m = LOWER.search(text)
            lower = [p.rsplit("/", 2)[-2] for p in m.group(1).split(":")] if m else []
            parent = self.parents.get(key, "")
            for dirname in lower:
                if not parent:
                    break
                out[parent] = dirname
                parent = self.parents.get(parent, "")
        return out


def scan_rows(
    t: Table, s: Samples, scan: ScanSnapshot, truth: Truth, engine: ChrootEngine, cd: Containerd, leaked: Path
) -> None:
    root = engine.data_root
    croot = engine.containerd_root
    area = croot / SNAPSHOTTER / "snapshots"
    t.heading("Scanned figures beside `du -s -x` and containerd's recorded sizes")
    root_dir_rows(t, s, scan, root, EXCLUDES)

    known = cd.dirs_by_key()
    for x in sorted(scan.layers, key=lambda x: x.diff_id):
        d12 = x.diff_id.split(":")[1][:12]
        t.row(
            f"layer {d12} allocated",
            x.total.disk_bytes,
            du(area / x.cache_id)[0],
            f"`du` on snapshots/{x.cache_id}",
        )
        size, inodes = cd.usage.get(x.chain_id, (None, None))
        t.row(f"layer {d12} recorded size", x.size, size, "`ctr snapshots usage -b` SIZE")
        t.row(f"layer {d12} recorded inodes", x.diff.files, inodes, "`ctr snapshots usage` INODES")
        if x.chain_id in known:
            t.row(
                f"layer {d12} dir",
                f"snapshots/{x.cache_id}",
                f"snapshots/{known[x.chain_id]}",
                "a lowerdir of `ctr snapshots mounts`",
            )
    chains = _image_chains(engine)
    t.row("Image layers (count)", num(s, "layers"), len(chains), "images' distinct chain IDs (inspect)")
    t.row(
        "Image layers, recorded size (bytes)",
        num(s, "layers_size_bytes"),
        sum(cd.usage[c][0] for c in chains),
        "their `ctr snapshots usage -b`",
    )

    sizes_rw = truth.size_rw
    container_dirs = 0
    for c in sorted(scan.containers, key=lambda c: c.name):
        n = cd.upper(c.id)
        rw = c.rw
        fs_disk = du(area / n / "fs")[0] if n else None
        container_dirs += du(area / n)[0] if n else 0
        t.row(
            f"container {c.name} writable, allocated",
            rw.disk_bytes if rw else None,
            fs_disk,
            "`du` on its upperdir (`ctr snapshots mounts`)",
        )
        t.row(
            f"container {c.name} writable, SizeRw",
            c.size_rw,
            sizes_rw[c.id],
            "`docker system df -v` SIZE (SizeRw)",
        )
        log_row(t, c.name, c.id, c.logs.disk_bytes, root)

    owners = scan.owners
    itself = os.lstat(area).st_blocks * 512  # snapshots/ itself: no owner's
    disk, inodes = du(area)
    t.row(
        "`snapshots/`: owners' sum + its own inode, allocated",
        sum(u.disk_bytes for u in owners.values()) + itself,
        disk,
        "`du -s -x` on snapshots/",
    )
    t.row(
        "`snapshots/`: owners' sum + its own inode, inodes",
        sum(u.files for u in owners.values()) + 1,
        inodes,
        "`du -s -x --inodes` on snapshots/",
    )
    t.row(
        "owner `container` allocated",
        num(s, "driver_disk_bytes", owner="container"),
        container_dirs,
        "`du` on the containers' snapshot dirs",
    )
    t.row(
        "orphan dirs",
        num(s, "orphan_dirs"),
        len(os.listdir(area)) - cd.listed,
        "dirs in snapshots/ − snapshots `ctr snapshots ls` lists",
    )
    host_path = "/" + str(leaked.relative_to(engine.rootfs))
    t.row(
        "orphan dir (path)",
        ", ".join(f"`{o.path}`" for o in scan.orphans),
        f"`{host_path}`",
        "the dir `trixie_seed` leaked",
    )
    t.row(
        "owner `orphan` allocated",
        num(s, "driver_disk_bytes", owner="orphan"),
        du(leaked)[0],
        "`du` on the leaked dir",
    )

    content = croot / CONTENT
    kinds = _content_kinds(cd, content)
    for kind in CONTENT_KINDS:
        t.row(
            f"content `{kind}` allocated",
            num(s, "content_disk_bytes", kind=kind),
            kinds.get(kind, 0),
            "`du` of its blobs, kind by `ctr content ls` / `images ls`",
        )
    disk, inodes = du(content)
    t.row(
        "content store allocated",
        sum(num(s, "content_disk_bytes", kind=k) for k in CONTENT_KINDS),
        disk,
        f"`du -s -x` on {CONTENT}",
    )
    t.row(
        "content store inodes",
        sum(num(s, "content_files", kind=k) for k in CONTENT_KINDS),
        inodes,
        f"`du -s -x --inodes` on {CONTENT}",
    )
    volume_rows(t, scan, truth, root)
    df_size_rows(t, s, truth)


def _image_chains(engine: ChrootEngine) -> set[str]:
    api = engine.api()
    try:
        out: set[str] = set()
        for img in api.images(all=True):
            out.update(chain_ids(api.inspect_image(img["Id"])["RootFS"].get("Layers") or []))
        return out
    finally:
        api.close()


def _alone(path: Path) -> int:
    """A dir's own blocks, not its entries'."""
    return os.lstat(path).st_blocks * 512


def _content_kinds(cd: Containerd, content: Path) -> dict[str, int]:
    """Every entry of the content store by kind, from containerd's answers and the images'
    own manifests (OCI: an index lists manifests, a manifest its config and layers); failing
    those, the GC labels containerd keeps on each blob (the unpacker's `uncompressed` on a
    layer, gc.ref.snapshot on a config, gc.ref.content on a manifest); a blob no namespace
    lists is unreferenced; the store's own dirs are other. Allocated bytes by kind."""
    sha = content / "blobs" / "sha256"
    by_doc: dict[str, str] = {}

    def doc(digest: str) -> Any:
        try:
            return json.loads((sha / digest.removeprefix("sha256:")).read_bytes())
        except (OSError, ValueError):
            return None

    def visit(digest: str, depth: int = 0) -> None:
        d = doc(digest)
        if not isinstance(d, dict) or depth > 4:
            return
        by_doc[digest] = "manifest"
        for m in d.get("manifests") or ():
            visit(m["digest"], depth + 1)
        if "config" in d:
            by_doc[d["config"]["digest"]] = "config"
            for layer in d.get("layers") or ():
                by_doc[layer["digest"]] = "layer"

    for target in cd.targets:
        visit(target)
    out: dict[str, int] = defaultdict(int)
    for p in sha.iterdir():
        digest = f"sha256:{p.name}"
        keys = cd.labels.get(digest, set())
        if digest not in cd.recorded:
            kind = "unreferenced"
        elif digest in by_doc:
            kind = by_doc[digest]
        elif "containerd.io/uncompressed" in keys:
            kind = "layer"
        elif any(k.startswith("containerd.io/gc.ref.snapshot.") for k in keys):
            kind = "config"
        elif any(k.startswith("containerd.io/gc.ref.content.") for k in keys):
            kind = "manifest"
        else:
            kind = "other"
        out[kind] += du(p)[0]
    out["partial"] += sum(du(p)[0] for p in (content / "ingest").iterdir())
    out["other"] += sum(_alone(d) for d in (content, content / "blobs", sha, content / "ingest"))
    out["other"] += sum(du(p)[0] for p in content.iterdir() if p.name not in ("blobs", "ingest"))
    return out
