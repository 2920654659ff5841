"""Docker Desktop's VM disk image on this host: where it is and what it takes. Stat only.

Desktop (macOS, Windows, Linux) runs the engine in a VM whose whole disk is one file on the
host. That file is live under a hypervisor, so nothing here opens it: one stat gives its
apparent size (`st_size`: on a sparse Docker.raw the disk's limit, what Finder shows) and its
allocated bytes (`st_blocks * 512`, what the host disk really lost; Windows' stat has no
st_blocks, so there the platform's GetCompressedFileSizeW). The only files read are Desktop's
own settings, as bounded JSON, to follow a disk image the user moved.

What is looked at (home, environment, host OS) comes in a `Where`, so tests run anywhere.
Paths are joined with this host's separator: on Windows that is Windows' own.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from exporter.model import DesktopDiskImage

MACOS, LINUX, WSL2, HYPERV = "macos", "linux", "wsl2", "hyperv"
SETTINGS_MAX = 4 << 20  # a settings file is a few kB; anything this big is not one

Allocated = Callable[[str, os.stat_result], int]


@dataclass(frozen=True)
class Where:
    """The host as discovery sees it."""

    system: str  # macos, windows, linux, or "" (another OS: nothing to find)
    home: str
    environ: Mapping[str, str] = field(default_factory=dict)


def host_system(platform: str = sys.platform) -> str:
    if platform == "darwin":
        return "macos"
    if platform in ("win32", "cygwin"):
        return "windows"
    return "linux" if platform.startswith("linux") else ""


def this_host() -> Where:
    return Where(host_system(), os.path.expanduser("~"), os.environ)


@dataclass(frozen=True)
class Candidate:
    path: str
    platform: str
    origin: str  # flag, settings, default


@dataclass(frozen=True)
class Problem:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class DiskImageError(Exception):
    """The disk image the operator named cannot be measured; str() is the one line to show."""

    explained = True  # samplers log str() as it is (exporter.samplers.base.reason)


# -- where Desktop keeps it ----------------------------------------------------------------

_MAC_DATA = ("Library", "Containers", "com.docker.docker", "Data")
# Today's place first, then those of older releases (raw before qcow2 in each).
_MAC_DEFAULTS = [
    (*_MAC_DATA, *where, name)
    for where in (("vms", "0", "data"), ("vms", "0"), ("com.docker.driver.amd64-linux",))
    for name in ("Docker.raw", "Docker.qcow2")
]
_LINUX_DEFAULT = (".docker", "desktop", "vms", "0", "data", "Docker.raw")
# Under %LOCALAPPDATA%: Desktop's WSL 2 data disk now, and the one it used before.
_WSL_DEFAULTS = [("Docker", "wsl", "disk", "docker_data.vhdx"), ("Docker", "wsl", "data", "ext4.vhdx")]
# What a "Disk image location" dir holds, by the setting that names it.
_IN_DATA_FOLDER = {  # dataFolder: macOS, Linux, Windows with Hyper-V
    MACOS: [("Docker.raw",), ("Docker.qcow2",)],
    LINUX: [("Docker.raw",), ("Docker.qcow2",)],
    HYPERV: [("DockerDesktop.vhdx",)],
}
_IN_WSL_DIR = [("disk", "docker_data.vhdx"), ("data", "ext4.vhdx")]  # customWslDistroDir
_ANY_IMAGE = [("Docker.raw",), ("Docker.qcow2",), ("DockerDesktop.vhdx",), *_IN_WSL_DIR,
              ("docker_data.vhdx",), ("ext4.vhdx",)]  # fmt: skip


def _under(base: str, parts: Iterable[tuple[str, ...]]) -> list[str]:
    return [os.path.join(base, *p) for p in parts]


def _windows_dirs(where: Where) -> dict[str, str]:
    env, home = where.environ, where.home
    return {
        "local": env.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local"),
        "roaming": env.get("APPDATA") or os.path.join(home, "AppData", "Roaming"),
        "programdata": env.get("ProgramData") or env.get("PROGRAMDATA") or "C:\\ProgramData",
        "public": env.get("PUBLIC") or "C:\\Users\\Public",
    }


def defaults(where: Where) -> list[Candidate]:
    """Where Desktop puts its disk image when nobody moved it."""
    if where.system == "macos":
        return [Candidate(p, MACOS, "default") for p in _under(where.home, _MAC_DEFAULTS)]
    if where.system == "linux":
        return [Candidate(os.path.join(where.home, *_LINUX_DEFAULT), LINUX, "default")]
    if where.system == "windows":
        d = _windows_dirs(where)
        hyperv = [
            os.path.join(d["programdata"], "DockerDesktop", "vm-data", "DockerDesktop.vhdx"),
            # Docker for Windows before Desktop 2.x: Hyper-V's own default place
            os.path.join(d["public"], "Documents", "Hyper-V", "Virtual hard disks", "DockerDesktop.vhdx"),
        ]
        return [Candidate(p, WSL2, "default") for p in _under(d["local"], _WSL_DEFAULTS)] + [
            Candidate(p, HYPERV, "default") for p in hyperv
        ]
    return []


def settings_files(where: Where) -> list[str]:
    """Desktop's settings, newest name first: settings-store.json since 4.35, settings.json
    before (docs.docker.com, Desktop settings)."""
    if where.system == "macos":
        base = os.path.join(where.home, "Library", "Group Containers", "group.com.docker")
    elif where.system == "linux":
        base = os.path.join(where.home, ".docker", "desktop")
    elif where.system == "windows":
        base = os.path.join(_windows_dirs(where)["roaming"], "Docker")
    else:
        return []
    return [os.path.join(base, "settings-store.json"), os.path.join(base, "settings.json")]


def read_settings(path: str) -> dict[str, object] | None:
    """A settings file as JSON; None when there is none; OSError or ValueError when it cannot
    be read as one. Only a regular file is opened (a FIFO would block), never through a link."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file")
    if st.st_size > SETTINGS_MAX:
        raise ValueError(f"{st.st_size} bytes: too big for a settings file")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        raw = f.read(SETTINGS_MAX + 1)
    try:
        data = json.loads(raw.decode("utf-8-sig"))  # Windows editors may add a BOM
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _setting(data: Mapping[str, object], key: str) -> object:
    """settings.json spells keys camelCase, settings-store.json PascalCase."""
    low = key.lower()
    return next((v for k, v in data.items() if k.lower() == low), None)


def from_settings(where: Where) -> tuple[list[Candidate], list[Problem]]:
    """The disk image a user moved (Settings > Resources > Disk image location), from the
    first settings file there is."""
    for path in settings_files(where):
        try:
            data = read_settings(path)
        except (OSError, ValueError) as exc:
            return [], [Problem(path, _why(exc))]
        if data is None:
            continue
        found: list[Candidate] = []
        problems: list[Problem] = []
        windows = where.system == "windows"
        for key, parts in (
            ("dataFolder", _IN_DATA_FOLDER[HYPERV if windows else where.system]),
            *([("customWslDistroDir", _IN_WSL_DIR)] if windows else []),
        ):
            value = _setting(data, key)
            if value in (None, ""):
                continue
            if not isinstance(value, str) or not os.path.isabs(value):
                problems.append(Problem(path, f"{key} is not an absolute path: {value!r}"))
                continue
            platform = WSL2 if key == "customWslDistroDir" else (HYPERV if windows else where.system)
            found += [Candidate(p, platform, "settings") for p in _under(value, parts)]
        return found, problems
    return [], []


def discover(where: Where) -> tuple[list[Candidate], list[Problem]]:
    """Every place this host's Desktop may keep its disk image: the moved one first."""
    moved, problems = from_settings(where)
    return moved + defaults(where), problems


def platform_of(path: str, system: str) -> str:
    name = os.path.basename(path).lower()
    if name in ("docker_data.vhdx", "ext4.vhdx"):
        return WSL2
    if name.endswith((".vhdx", ".vhd")):
        return HYPERV
    return MACOS if system == "macos" else LINUX


def given(path: str, system: str) -> list[Candidate]:
    """--desktop.disk-image: the file, or the known images in a "Disk image location" dir."""
    if os.path.isdir(path):
        return [Candidate(p, platform_of(p, system), "flag") for p in _under(path, _ANY_IMAGE)]
    return [Candidate(path, platform_of(path, system), "flag")]


def image_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    return ext if ext in ("raw", "qcow2", "vhdx", "vhd") else "unknown"


# -- what it takes --------------------------------------------------------------------------


def _windows_allocated(path: str) -> int:
    """GetCompressedFileSizeW: the bytes a sparse or compressed file holds on disk (else its
    length). It takes a path: the image is not opened by us."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    call = kernel32.GetCompressedFileSizeW
    call.argtypes = [wintypes.LPCWSTR, ctypes.POINTER(wintypes.DWORD)]
    call.restype = wintypes.DWORD
    high = wintypes.DWORD(0)
    low = call(path, ctypes.byref(high))
    if low == 0xFFFFFFFF:
        code = ctypes.get_last_error()  # type: ignore[attr-defined]
        if code:
            raise ctypes.WinError(code)  # type: ignore[attr-defined]
    return (high.value << 32) | low


def allocated_bytes(path: str, st: os.stat_result) -> int:
    blocks = getattr(st, "st_blocks", None)
    if blocks is not None:
        return blocks * 512
    return _windows_allocated(path)


def measure(
    c: Candidate, allocated: Allocated = allocated_bytes
) -> tuple[DesktopDiskImage, os.stat_result, list[Problem]]:
    """One stat of the image (OSError when it cannot be had, or is no regular file), the
    allocated-size call, and the free space of the filesystem holding it (statvfs)."""
    st = os.stat(c.path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.EINVAL, "not a regular file")
    problems: list[Problem] = []
    try:
        held: int | None = allocated(c.path, st)
    except OSError as exc:
        held = None
        problems.append(Problem(c.path, f"allocated size: {_why(exc)}"))
    try:
        usage = shutil.disk_usage(os.path.dirname(c.path) or ".")
        size, avail = usage.total, usage.free
    except OSError as exc:
        size = avail = None
        problems.append(Problem(c.path, f"host filesystem: {_why(exc)}"))
    image = DesktopDiskImage(
        path=c.path,
        format=image_format(c.path),
        platform=c.platform,
        origin=c.origin,
        apparent_bytes=st.st_size,
        allocated_bytes=held,
        filesystem_size=size,
        filesystem_avail=avail,
    )
    return image, st, problems


def absent(exc: OSError) -> bool:
    """Nothing there: the normal answer for a place Desktop does not use on this host."""
    return isinstance(exc, (FileNotFoundError, NotADirectoryError))


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
