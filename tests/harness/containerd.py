"""A private containerd for tests (its own root, state, socket and config; no CRI, no
network), driven with `ctr`, and the bbolt files it writes. Also a docker-save style image
archive made here, which `ctr images import` takes without any registry."""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from tests.harness.engine import unmount_all
from tests.harness.procs import end

CONTAINERD = "/usr/bin/containerd"  # Debian's, which docker.io depends on
CTR = "/usr/bin/ctr"


class PrivateContainerd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / "root"
        self.address = base / "c.sock"  # the base is short: sun_path has 108 bytes
        self.pidfile = base / "containerd.pid"
        self.log = base / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def meta_db(self) -> Path:
        return self.root / "io.containerd.metadata.v1.bolt" / "meta.db"

    @property
    def snapshots_db(self) -> Path:
        return self.root / "io.containerd.snapshotter.v1.overlayfs" / "metadata.db"

    def kill_stale(self) -> None:
        """A containerd of ours left by a killed run (its pidfile, and our socket in its
        command line): never anyone else's."""
        try:
            pid = int(self.pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"containerd" in cmdline and str(self.address).encode() in cmdline:
            os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)

    def start(self, timeout: float = 20.0) -> PrivateContainerd:
        self.kill_stale()
        unmount_all(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        config = self.base / "config.toml"
        config.write_text(
            "version = 2\n"
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            # the opt plugin would make /opt/containerd otherwise
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{self.base / "opt"}"\n'
        )
        cmd = [
            CONTAINERD, "--config", str(config), "--root", str(self.root),
            "--state", str(self.base / "state"), "--address", str(self.address),
            "--log-level", "warn",
        ]  # fmt: skip
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        self.pidfile.write_text(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.log.read_text()[-2000:]}")
            if self.address.exists() and self.ctr("version", check=False, timeout=5) is not None:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"containerd not ready in {timeout}s: {self.log.read_text()[-2000:]}")

    def ctr(self, *args: str, ns: str | None = None, check: bool = True, timeout: float = 30) -> str | None:
        cmd = [CTR, "-a", str(self.address), *(["-n", ns] if ns else []), *args]
        res = subprocess.run(cmd, capture_output=True, timeout=timeout)
        if res.returncode != 0:
            if check:
                raise RuntimeError(f"ctr {' '.join(args)[:200]} failed: {res.stderr.decode()[-2000:]}")
            return None
        return res.stdout.decode()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        end(self.proc, timeout)
        self.proc = None
        unmount_all(self.base)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_archive(tag: str, layers: list[dict[str, bytes]]) -> bytes:
    """A `docker save` archive (manifest.json, config, one layer.tar per layer) for this
    machine's platform, which `ctr images import` unpacks by default."""
    tars = [_tar(files) for files in layers]
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    files = {config_name: config}
    for i, t in enumerate(tars):
        files[f"layer{i}/layer.tar"] = t
    layer_names = [f"layer{i}/layer.tar" for i in range(len(tars))]
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]
    files["manifest.json"] = json.dumps(manifest).encode()
    return _tar(files)


TAG = "example.test/dse/bolt:1"
BIG_LABELS = {f"dse.test/big.{i:02d}": f"{i:02d}" + "x" * 948 for i in range(30)}  # ~30 KB: a branch page
OVERFLOW_KEY = "dse.test/overflow"  # key + value = 4096, containerd's label limit: a 2-page leaf
OVERFLOW_LABEL = {OVERFLOW_KEY: "y" * (4096 - len(OVERFLOW_KEY))}


def populate(ctd: PrivateContainerd, ns: str, workdir: Path) -> None:
    """Namespace `ns` with an imported two-layer image (images, content, committed snapshots),
    an Active and a View snapshot on it, 30 large labels on the image config blob (its labels
    bucket needs a branch page) and one 4 KiB label on the image (an overflow page)."""
    archive = workdir / "image.tar"
    archive.write_bytes(
        image_archive(TAG, [{"hello.txt": b"hello\n" * 1000}, {"two.txt": b"two\n" * 3000, "b/c": b"c"}])
    )
    ctd.ctr("images", "import", str(archive), ns=ns)
    ctd.ctr("content", "label", config_digest(ctd, ns), *(f"{k}={v}" for k, v in BIG_LABELS.items()), ns=ns)
    ctd.ctr("images", "label", TAG, *(f"{k}={v}" for k, v in OVERFLOW_LABEL.items()), ns=ns)
    top = next(k for k, (parent, _) in snapshots(ctd, ns).items() if parent)
    ctd.ctr("snapshots", "prepare", "dse-work", top, ns=ns)
    # `ctr snapshots prepare` labels its snapshot as a GC root, `view` does not: the GC that
    # the import's lease removal set off may take the view before the label is on. Until it
    # holds, make it again.
    for _ in range(5):
        ctd.ctr("snapshots", "view", "dse-view", top, ns=ns, check=False)
        ctd.ctr("snapshots", "label", "dse-view", "containerd.io/gc.root=dse", ns=ns, check=False)
        time.sleep(0.2)
        if "dse-view" in snapshots(ctd, ns):
            return
    raise RuntimeError("the View snapshot does not stay")


def config_digest(ctd: PrivateContainerd, ns: str) -> str:
    """The image config blob: the one labelled with the snapshot GC ref."""
    blobs = content(ctd, ns)
    return next(d for d, labels in blobs.items() if "containerd.io/gc.ref.snapshot.overlayfs" in labels)


def snapshots(ctd: PrivateContainerd, ns: str) -> dict[str, tuple[str, str]]:
    """`ctr snapshots ls`: key -> (parent key or "", kind)."""
    out = {}
    for line in (ctd.ctr("snapshots", "ls", ns=ns) or "").splitlines()[1:]:
        f = line.split()
        out[f[0]] = (f[1] if len(f) == 3 else "", f[-1])
    return out


def usage(ctd: PrivateContainerd, ns: str) -> dict[str, tuple[float, int, int]]:
    """`ctr snapshots usage`: key -> (size in bytes as printed, to 0.1 unit; the unit; inodes)."""
    units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
    out = {}
    for line in (ctd.ctr("snapshots", "usage", ns=ns) or "").splitlines()[1:]:
        key, size, unit, inodes = line.split()
        out[key] = (float(size) * units[unit], units[unit], int(inodes))
    return out


def content(ctd: PrivateContainerd, ns: str) -> dict[str, dict[str, str]]:
    """`ctr content ls`: digest -> labels."""
    out = {}
    for line in (ctd.ctr("content", "ls", ns=ns) or "").splitlines()[1:]:
        digest, _size, _age, labels = re.split("\t+", line, maxsplit=3)  # tabwriter pads with tabs
        pairs = [kv.split("=", 1) for kv in labels.split(",") if kv and kv != "-"]
        out[digest] = {k: v for k, v in pairs}
    return out


def images(ctd: PrivateContainerd, ns: str) -> dict[str, str]:
    """`ctr images ls`: name -> target digest."""
    lines = (ctd.ctr("images", "ls", ns=ns) or "").splitlines()[1:]
    return {f[0]: f[2] for f in (line.split() for line in lines)}
