"""Debian trixie's Docker 26.1 (API 1.45) for tests, without touching the host's engines.

A trixie rootfs is debootstrapped once per machine into the cache (a kept dir, its marker
written last), copied once per checkout to `<test root>/tx` (R), and each engine runs there in
a private mount namespace + chroot, as DESIGN.md "Newer engines than bookworm's" says. Two
flavours share R under their own NAME: the containerd image store and overlay2. From
outside, an engine's socket is R/run/NAME.sock and its DockerRootDir /var/lib/NAME is
R/var/lib/NAME, so the exporter reads it with `--path.rootfs R`, as in a container.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import docker

from tests.harness.baseimage import CACHE, MIRROR
from tests.harness.engine import DOCKER_CLI

# docker.io carries dockerd only: the trixie CLI (API 1.45) and its BuildKit client are
# docker-cli and docker-buildx.
PACKAGES = "docker.io,docker-cli,docker-buildx,containerd,runc,iptables,ca-certificates"
# Named by its package list: a changed list is a new cache, never a stale one reused.
ROOTFS_CACHE = CACHE / f"debian-trixie-{hashlib.sha256(PACKAGES.encode()).hexdigest()[:8]}"
# Explicit, so a missing keyring fails the build instead of skipping the signature check.
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MARKER = ".dse-complete"  # written last: a dir without it is half made and never used
API_VERSION = "1.45"
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"

# Each flavour's daemon.json (Docker 26 has no --feature flag).
CSTORE = "cs"
OVERLAY2 = "o2"
CONFIGS: dict[str, dict[str, Any]] = {
    CSTORE: {"features": {"containerd-snapshotter": True}},
    OVERLAY2: {"storage-driver": "overlay2"},
}


def _build_id(root: Path) -> str | None:
    try:
        return (root / MARKER).read_text().strip() or None
    except OSError:
        return None


def rootfs_cache(timeout: float = 780) -> Path:
    """The trixie rootfs, debootstrapped once per machine (well under a minute on a good
    link). Built under a temporary name and renamed into place, so a run that dies half-way,
    or two runs at once, never leave a half-made cache that looks whole. The timeout stays
    under the 900 s that tests asking for these engines allow, so it fails with its log."""
    if _build_id(ROOTFS_CACHE):
        return ROOTFS_CACHE
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f"{ROOTFS_CACHE.name}.tmp-{os.getpid()}"
    remove_tree(tmp)
    started = time.monotonic()
    try:
        res = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--keyring={KEYRING}", f"--include={PACKAGES}",
             "trixie", str(tmp), MIRROR],
            capture_output=True, timeout=timeout,
        )  # fmt: skip
        if res.returncode != 0:
            log = tmp / "debootstrap" / "debootstrap.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(
                f"debootstrap trixie failed ({res.returncode}): "
                f"{res.stderr.decode(errors='replace')[-2000:]}\n{tail}"
            )
        unmount_under(tmp)  # debootstrap unmounts its /proc and /sys; be sure before renaming
        (tmp / MARKER).write_text(f"built {time.time():.0f} in {time.monotonic() - started:.0f}s\n")
        try:
            tmp.rename(ROOTFS_CACHE)
        except OSError:
            if not _build_id(ROOTFS_CACHE):  # not a concurrent build that won: a real failure
                raise
    finally:
        remove_tree(tmp)
    return ROOTFS_CACHE


def rootfs_copy(test_root: Path) -> Path:
    """This checkout's R: a copy of the cached rootfs (about a second), kept across runs
    while it is a copy of the current cache. Engines wipe only their own NAME's dirs in it."""
    cache = rootfs_cache()
    want = _build_id(cache)
    root = test_root / "tx"
    if _build_id(root) == want:
        return root
    kill_chrooted(root)  # engines of a killed run in an outdated copy
    remove_tree(root)
    tmp = test_root / f"tx.tmp-{os.getpid()}"
    remove_tree(tmp)
    test_root.mkdir(parents=True, exist_ok=True)
    _check_overlay_capable(test_root)
    try:
        # The marker is copied with the tree, but the rename below is what publishes it.
        subprocess.run(["cp", "-a", f"{cache}/.", str(tmp)], check=True, capture_output=True, timeout=300)
        tmp.rename(root)
    finally:
        remove_tree(tmp)
    return root


def _check_overlay_capable(path: Path) -> None:
    """overlayfs cannot put its upper dir on overlayfs: the data roots live in R, so R must be
    on a real filesystem (here /tmp is the root ext4)."""
    stat = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    fstype = stat.stdout.strip()
    if fstype in ("overlayfs", "overlay"):
        raise RuntimeError(
            f"{path} is on {fstype}: Docker's overlay drivers cannot work there; "
            "set DSE_TEST_ROOT to a dir on ext4, xfs or tmpfs"
        )


def mounts_under(path: Path) -> list[str]:
    """Mount points at or under path in this (the host's) mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == str(path) or mp.startswith(str(path) + "/"):
                out.append(mp)
    return out


def unmount_under(path: Path) -> None:
    for mp in sorted(mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def remove_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


def name_for(test_root: Path, flavour: str) -> str:
    """An engine NAME unique per checkout (its test root) and flavour, so engines of other
    checkouts are never taken for ours, and short: it is in socket paths."""
    h = hashlib.sha256(str(test_root.resolve()).encode()).hexdigest()[:8]
    return f"dse{h}{flavour}"


# -- processes ----------------------------------------------------------------------------


def _procs() -> dict[int, tuple[int, str, bytes]]:
    """pid -> (ppid, root as /proc shows it, cmdline) for every process we can see."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            root = os.readlink(f"/proc/{pid}/root")
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # gone, or a kernel thread
        out[pid] = (ppid, root, cmdline)
    return out


def chrooted(rootfs: Path, name: str | None = None) -> set[int]:
    """Processes chrooted into rootfs (and, given name, with it on their command line:
    dockerd, its containerd and the shims all name their socket or config under NAME),
    with all their descendants (container processes, which have roots of their own)."""
    procs = _procs()
    key = name.encode() if name else None
    found = {
        pid for pid, (_, root, cmd) in procs.items() if root == str(rootfs) and (key is None or key in cmd)
    }
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    found.discard(os.getpid())
    return found


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = {p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def _cgroups(pid: int) -> list[tuple[str, str]]:
    """(controllers, path) of each hierarchy the process is in."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []
    return [(c, path) for _, c, path in (line.split(":", 2) for line in lines)]


def _cgroup_dirs(controllers: str, path: str) -> list[str]:
    if controllers == "":  # v2: the unified hierarchy, mounted beside v1 on hybrid hosts
        return [f"/sys/fs/cgroup/unified{path}", f"/sys/fs/cgroup{path}"]
    return [f"/sys/fs/cgroup/{c.removeprefix('name=')}{path}" for c in controllers.split(",")]


def _thaw(cgroups: list[tuple[str, str]]) -> None:
    """A paused container's processes are frozen, and a frozen process does not die of
    SIGKILL until thawed: thaw its freezer cgroup (v1), or its cgroup.freeze (v2)."""
    for controllers, path in cgroups:
        if "freezer" in controllers.split(","):
            targets = [(f"/sys/fs/cgroup/freezer{path}/freezer.state", "THAWED")]
        elif controllers == "":
            targets = [(f"{d}/cgroup.freeze", "0") for d in _cgroup_dirs(controllers, path)]
        else:
            continue
        for target, value in targets:
            try:
                Path(target).write_text(value)
            except OSError:
                pass  # not this hierarchy, or not frozen


def _remove_container_cgroups(cgroups: set[tuple[str, str]]) -> None:
    """The cgroups runc made for killed containers (…/<64-hex id>), which runc would have
    removed on a clean stop; rmdir fails harmlessly on one that still has tasks."""
    for controllers, path in cgroups:
        leaf = path.rsplit("/", 1)[-1]
        if len(leaf) != 64 or any(ch not in "0123456789abcdef" for ch in leaf):
            continue
        for d in _cgroup_dirs(controllers, path):
            try:
                os.rmdir(d)
            except OSError:
                pass


def kill_chrooted(rootfs: Path, name: str | None = None, timeout: float = 10) -> None:
    """SIGKILL what chrooted() finds, repeatedly (a dying dockerd may still fork), bounded."""
    deadline = time.monotonic() + timeout
    cgroups: set[tuple[str, str]] = set()
    try:
        while pids := chrooted(rootfs, name):
            for pid in pids:
                groups = _cgroups(pid)
                cgroups.update(groups)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _thaw(groups)
            left = _wait_gone(pids, max(0.1, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                if left:
                    raise RuntimeError(f"processes in {rootfs} ({name}) survive SIGKILL: {sorted(left)}")
                return
    finally:
        _remove_container_cgroups(cgroups)


# -- the engine ---------------------------------------------------------------------------


class ChrootEngine:
    """dockerd 26 in a private mount namespace, chrooted into R, with its own managed
    containerd under its exec root (never the system's: the chroot has no
    /run/containerd/containerd.sock, and start() checks that nothing else is adopted)."""

    def __init__(self, rootfs: Path, name: str, flavour: str) -> None:
        self.rootfs = rootfs
        self.name = name
        self.flavour = flavour
        self.sock_inside = f"/run/{name}.sock"
        self.data_root_inside = f"/var/lib/{name}"
        self.exec_root_inside = f"/run/{name}"
        self.pidfile_inside = f"/run/{name}.pid"
        self.config_inside = f"/etc/docker/{name}.json"
        self.cli_config_inside = f"/tmp/{name}-cli"
        self.log = rootfs.parent / f"{name}.log"  # outside R: it outlives a wiped state
        self.proc: subprocess.Popen[bytes] | None = None

    def outside(self, inside: str) -> Path:
        """The path, outside, of a path the engine sees."""
        return self.rootfs / inside.lstrip("/")

    @property
    def sock(self) -> Path:
        return self.outside(self.sock_inside)

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    @property
    def data_root(self) -> Path:
        return self.outside(self.data_root_inside)

    @property
    def exec_root(self) -> Path:
        return self.outside(self.exec_root_inside)

    @property
    def pidfile(self) -> Path:
        return self.outside(self.pidfile_inside)

    @property
    def containerd_root(self) -> Path:
        """Docker's managed containerd's root: <data-root>/containerd/daemon."""
        return self.data_root / "containerd" / "daemon"

    @property
    def containerd_sock(self) -> Path:
        return self.exec_root / "containerd" / "containerd.sock"

    def _command(self) -> list[str]:
        r = shlex.quote(str(self.rootfs))
        dockerd = shlex.join([
            "dockerd",
            "-H", f"unix://{self.sock_inside}",
            "--data-root", self.data_root_inside,
            "--exec-root", self.exec_root_inside,
            "--pidfile", self.pidfile_inside,
            "--bridge=none", "--iptables=false", "--ip6tables=false",
            "--config-file", self.config_inside,
        ])  # fmt: skip
        # `mount --bind R R` makes R a mount point, so the rbinds under it stay in this private
        # namespace and die with it; nothing reaches the host's mount table.
        script = (
            f"mount --bind {r} {r}; mount --make-private {r}; mount -t proc proc {r}/proc; "
            f"mount --rbind /sys {r}/sys; mount --rbind /dev {r}/dev; exec chroot {r} {dockerd}"
        )
        return ["unshare", "-m", "--propagation", "private", "sh", "-ec", script]

    def wipe(self) -> None:
        """This engine's state in R, and nothing else: the other flavour shares R."""
        for inside in (self.data_root_inside, self.exec_root_inside, self.cli_config_inside):
            remove_tree(self.outside(inside))
        for inside in (self.sock_inside, self.pidfile_inside):
            self.outside(inside).unlink(missing_ok=True)

    def start(self, timeout: float = 60.0) -> ChrootEngine:
        self.kill_stale()
        self.wipe()
        if self.outside("/run/containerd/containerd.sock").exists():
            # dockerd would adopt a containerd at the default address as "the system's"
            raise RuntimeError(f"{self.outside('/run/containerd/containerd.sock')} exists: remove it")
        cfg = self.outside(self.config_inside)
        cfg.parent.mkdir(parents=True, exist_ok=True)
        cfg.write_text(json.dumps(CONFIGS[self.flavour]) + "\n")
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                self._command(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={"PATH": PATH, "HOME": "/root"}, start_new_session=True,
            )  # fmt: skip
        try:
            self._wait_ready(self.proc, timeout)
        except BaseException:
            self.stop()  # its containerd too, which may outlive a dockerd that gave up
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = docker.APIClient(base_url=self.host, version=API_VERSION, timeout=2)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"dockerd {self.name} exited {proc.returncode}: {self.log_tail()}")
                try:
                    if self.sock.exists() and client.ping():
                        break
                except Exception:  # noqa: BLE001 - not up yet
                    pass
                time.sleep(0.2)
            else:
                raise RuntimeError(f"dockerd {self.name} not ready in {timeout}s: {self.log_tail()}")
        finally:
            client.close()
        if not self.containerd_sock.exists():
            raise RuntimeError(f"dockerd {self.name} runs no managed containerd at {self.containerd_sock}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill_stale(self) -> None:
        """A previous run's engine of this NAME (pytest killed): never anyone else's."""
        kill_chrooted(self.rootfs, self.name)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to dockerd (it stops its containers and containerd), then SIGKILL of all
        that is left: its process group, and what is chrooted here under NAME (containerd and
        the shims have sessions of their own) with their descendants. The private mount
        namespace dies with its last process; anything left under R in the host's table
        (there should be none) is unmounted."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_chrooted(self.rootfs, self.name)
        if self.proc is not None:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        unmount_under(self.rootfs)

    def in_namespace(self, cmd: list[str]) -> list[str]:
        """cmd run in the engine's mount namespace, where its mounts are (containers' rootfs
        and merged dirs, shm): from the host's they are plain empty dirs. R and the socket
        are at the same paths in there."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"dockerd {self.name} is not running")
        return ["nsenter", f"--mount=/proc/{self.proc.pid}/ns/mnt", "--", *cmd]

    # -- clients ------------------------------------------------------------------------

    def docker(
        self,
        *args: str,
        input: bytes | None = None,  # noqa: A002 - as subprocess.run names it
        check: bool = True,
        buildkit: bool = True,
        timeout: float = 300,
    ) -> str:
        """trixie's own docker CLI (26.1, API 1.45, buildx for BuildKit), chrooted into R from
        the host's mount namespace: it needs only the socket, which is a file in R. Paths in
        args are paths inside R."""
        env = {
            "PATH": PATH,
            "HOME": self.cli_config_inside,
            "DOCKER_HOST": f"unix://{self.sock_inside}",
            "DOCKER_CONFIG": self.cli_config_inside,
            "DOCKER_BUILDKIT": "1" if buildkit else "0",
        }
        res = subprocess.run(
            ["chroot", str(self.rootfs), "docker", *args],
            input=input, env=env, capture_output=True, timeout=timeout,
        )  # fmt: skip
        if check and res.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args)[:300]} on {self.name} failed ({res.returncode}): "
                f"{res.stderr.decode(errors='replace')[-2000:]}"
            )
        return res.stdout.decode()

    def host_docker(self, *args: str, input: bytes | None = None) -> str:  # noqa: A002
        """The host's Debian CLI (20.10, API 1.41 at most) against the outside socket: it
        works too (DOCKER_API_VERSION pins what it would negotiate anyway), with the 1.41
        view of the daemon; paths in args are the host's."""
        env = {
            "PATH": os.environ.get("PATH", PATH),
            "HOME": str(self.outside(self.cli_config_inside)),
            "DOCKER_HOST": self.host,
            "DOCKER_CONFIG": str(self.outside(self.cli_config_inside)),
            "DOCKER_API_VERSION": "1.41",
        }
        res = subprocess.run([DOCKER_CLI, *args], input=input, env=env, capture_output=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(
                f"host docker {' '.join(args)[:300]} on {self.name} failed ({res.returncode}): "
                f"{res.stderr.decode(errors='replace')[-2000:]}"
            )
        return res.stdout.decode()

    def build(
        self, tag: str, dockerfile: str, buildkit: bool = False, files: dict[str, bytes] | None = None
    ) -> str:
        """`docker build` of a context made inside R; returns the image ID. BuildKit gets
        `--network none`: the daemon has no bridge network."""
        tmp = self.outside("/tmp")
        with tempfile.TemporaryDirectory(dir=tmp, prefix=f"{self.name}-ctx-") as ctx:
            Path(ctx, "Dockerfile").write_text(dockerfile)
            for rel, data in (files or {}).items():
                Path(ctx, rel).write_bytes(data)
            args = ["build", "-q", "-t", tag]
            if buildkit:
                args += ["--network", "none"]
            out = self.docker(*args, "/tmp/" + Path(ctx).name, buildkit=buildkit)
        return out.strip().splitlines()[-1]

    def api(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.host, version=API_VERSION, timeout=60)
