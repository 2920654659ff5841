"""Filesystem facts for the Docker areas: statvfs and the mount that holds a path.

`--path.rootfs` is where the host's `/` is visible to us (node_exporter's convention):
paths the engine reports are host paths, so we read `rootfs + path` and report `path`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from exporter.model import Filesystem


@dataclass(frozen=True)
class Mount:
    mountpoint: str
    fstype: str
    readonly: bool  # of the filesystem itself (super options), not of a read-only bind
    dev: str = ""  # major:minor
    root: str = "/"  # the directory of the filesystem mounted here ("/" unless a bind mount)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1 : i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def read_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[Mount]:
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            return parse_mounts(f.read())
    except OSError:
        return []


def parse_mounts(text: str) -> list[Mount]:
    """The mounts of a mountinfo text (proc(5)), in its order."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        # After " - ": fstype, source (which may be empty), super options; split by position.
        fields, tail = left.split(), right.split(" ")
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        mounts.append(
            Mount(
                mountpoint=_unescape(fields[4]),
                fstype=tail[0],
                readonly="ro" in tail[2].split(","),
                dev=fields[2],
                root=_unescape(fields[3]),
            )
        )
    return mounts


def mount_of(path: str, mounts: list[Mount]) -> Mount | None:
    """The last-mounted, longest mount point containing `path` (mountinfo is in mount order)."""
    best: Mount | None = None
    for m in mounts:
        mp = m.mountpoint.rstrip("/") or "/"
        if path == mp or path.startswith(mp + "/") or mp == "/":
            if best is None or len(mp) >= len(best.mountpoint.rstrip("/") or "/"):
                best = m
    if best is not None and best.root != "/":
        # dockerd bind-mounts its root onto itself; name the filesystem's own mount point.
        for m in mounts:
            if m.dev == best.dev and m.root == "/":
                return m
    return best


def host_to_local(path: str, rootfs: str) -> str:
    """Where a host path is visible to this process."""
    if rootfs in ("", "/"):
        return path
    return os.path.join(rootfs, path.lstrip("/"))


def local_to_host(path: str, rootfs: str) -> str:
    if rootfs in ("", "/"):
        return path
    root = rootfs.rstrip("/")
    if path == root:
        return "/"
    if path.startswith(root + "/"):
        return path[len(root) :]
    return path


def statfs(host_path: str, rootfs: str = "/", mounts: list[Mount] | None = None) -> Filesystem:
    """statvfs of the filesystem holding `host_path`. Raises OSError if it is not visible."""
    local = host_to_local(host_path, rootfs)
    st = os.statvfs(local)
    mount = mount_of(os.path.realpath(local), mounts if mounts is not None else read_mounts())
    readonly = mount.readonly if mount else bool(st.f_flag & os.ST_RDONLY)
    return Filesystem(
        path=host_path,
        mountpoint=local_to_host(mount.mountpoint, rootfs) if mount else "",
        size=st.f_blocks * st.f_frsize,
        avail=st.f_bavail * st.f_frsize,
        files=st.f_files,
        files_free=st.f_ffree,
        readonly=readonly,
    )
