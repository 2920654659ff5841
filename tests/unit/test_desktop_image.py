"""Docker Desktop's disk image: discovery on each platform (fake home, LOCALAPPDATA, APPDATA,
ProgramData), the figures of real sparse files, what is counted and logged, that the image is
never opened (inotify), and that a host without Desktop shows nothing about it."""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from exporter import report
from exporter.collector import StorageCollector
from exporter.model import DesktopSnapshot
from exporter.samplers import DesktopSampler, Store
from exporter.sources import desktop
from exporter.sources.desktop import Where

MiB, GiB = 1 << 20, 1 << 30
MAC_DATA = "Library/Containers/com.docker.docker/Data"
MAC_RAW = f"{MAC_DATA}/vms/0/data/Docker.raw"


def sparse(path: Path, size: int, written: int, chunk: int = MiB) -> Path:
    """A sparse file of `size` bytes with `written` bytes of data spread through it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        block = os.urandom(chunk)
        n = written // chunk
        for i in range(n):
            f.seek(i * (size // n))
            f.write(block)
    return path


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def run(where: Where, **kw: object) -> tuple[Store, DesktopSampler, bool]:
    store = Store()
    sampler = DesktopSampler(store, where=where, **kw)  # type: ignore[arg-type]
    ok = sampler.run()
    return store, sampler, ok


def snap(store: Store) -> DesktopSnapshot:
    s = store.latest(DesktopSnapshot)
    assert s is not None
    return s


def exposition(store: Store) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(store))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


# -- discovery, platform by platform -----------------------------------------------------------


def test_macos_docker_raw_apparent_and_allocated(tmp_path: Path) -> None:
    image = sparse(tmp_path / MAC_RAW, 4 * GiB, 3 * MiB)
    store, _, ok = run(Where("macos", str(tmp_path)))
    assert ok
    (i,) = snap(store).images
    assert (i.path, i.format, i.platform, i.origin) == (str(image), "raw", "macos", "default")
    assert i.apparent_bytes == 4 * GiB
    assert i.allocated_bytes == allocated(image)
    assert 3 * MiB <= i.allocated_bytes < 4 * MiB  # the blocks written, not the 4 GiB
    assert i.filesystem_size and i.filesystem_avail is not None and i.filesystem_avail <= i.filesystem_size


def test_macos_older_places_and_qcow2_all_reported_biggest_first(tmp_path: Path) -> None:
    raw = sparse(tmp_path / MAC_RAW, GiB, MiB)
    old = tmp_path / MAC_DATA / "com.docker.driver.amd64-linux" / "Docker.qcow2"
    old.parent.mkdir(parents=True)
    old.write_bytes(os.urandom(3 * MiB))  # a qcow2 is not sparse: its length is what it holds
    store, _, _ = run(Where("macos", str(tmp_path)))
    images = snap(store).images
    assert [(i.path, i.format) for i in images] == [(str(old), "qcow2"), (str(raw), "raw")]
    assert images[0].apparent_bytes == 3 * MiB


def test_linux_desktop_default(tmp_path: Path) -> None:
    image = sparse(tmp_path / ".docker/desktop/vms/0/data/Docker.raw", 2 * GiB, MiB)
    store, _, _ = run(Where("linux", str(tmp_path)))
    (i,) = snap(store).images
    assert (i.path, i.platform, i.apparent_bytes) == (str(image), "linux", 2 * GiB)


def test_wsl2_both_vhdx_names_under_localappdata_with_the_platform_call(tmp_path: Path) -> None:
    local = tmp_path / "Local"
    new = local / "Docker/wsl/disk/docker_data.vhdx"
    old = local / "Docker/wsl/data/ext4.vhdx"
    for p, n in ((new, 5), (old, 1)):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"v" * n * 1000)
    calls: list[str] = []

    def windows_call(path: str, st: os.stat_result) -> int:  # stands in for GetCompressedFileSizeW
        calls.append(path)
        return st.st_size * 7

    where = Where("windows", str(tmp_path / "home"), {"LOCALAPPDATA": str(local)})
    store, _, _ = run(where, allocated=windows_call)
    images = snap(store).images
    assert [(i.path, i.platform, i.format) for i in images] == [
        (str(new), "wsl2", "vhdx"),
        (str(old), "wsl2", "vhdx"),
    ]
    assert [i.allocated_bytes for i in images] == [35_000, 7_000]  # the call's answer, not st_blocks
    assert sorted(calls) == sorted([str(new), str(old)])


def test_hyperv_under_programdata(tmp_path: Path) -> None:
    vhdx = tmp_path / "ProgramData/DockerDesktop/vm-data/DockerDesktop.vhdx"
    vhdx.parent.mkdir(parents=True)
    vhdx.write_bytes(b"x" * 4096)
    where = Where("windows", str(tmp_path / "home"), {"ProgramData": str(tmp_path / "ProgramData")})
    store, _, _ = run(where)
    (i,) = snap(store).images
    assert (i.path, i.platform, i.format) == (str(vhdx), "hyperv", "vhdx")


def test_localappdata_falls_back_to_the_home_dir(tmp_path: Path) -> None:
    vhdx = tmp_path / "AppData/Local/Docker/wsl/disk/docker_data.vhdx"
    vhdx.parent.mkdir(parents=True)
    vhdx.write_bytes(b"x")
    store, _, _ = run(Where("windows", str(tmp_path), {}))
    assert [i.path for i in snap(store).images] == [str(vhdx)]


# -- a disk image the user moved: Desktop's settings --------------------------------------------


def test_settings_store_data_folder_moved_image(tmp_path: Path) -> None:
    moved = sparse(tmp_path / "Volumes/Big/DockerData/Docker.raw", GiB, MiB)
    settings = tmp_path / "home/Library/Group Containers/group.com.docker/settings-store.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"DataFolder": str(moved.parent), "MemoryMiB": 4096}))
    store, _, _ = run(Where("macos", str(tmp_path / "home")))
    (i,) = snap(store).images
    assert (i.path, i.origin, i.platform) == (str(moved), "settings", "macos")
    assert snap(store).skipped == 0


def test_settings_json_camel_case_wsl_dir(tmp_path: Path) -> None:
    wsl_dir = tmp_path / "D/DockerDesktopWSL"
    vhdx = wsl_dir / "disk/docker_data.vhdx"
    vhdx.parent.mkdir(parents=True)
    vhdx.write_bytes(b"x" * 10)
    roaming = tmp_path / "Roaming"
    (roaming / "Docker").mkdir(parents=True)
    # a BOM, as a Windows editor may leave it
    (roaming / "Docker/settings.json").write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"customWslDistroDir": str(wsl_dir)}).encode()
    )
    where = Where("windows", str(tmp_path / "home"), {"APPDATA": str(roaming)})
    store, _, _ = run(where)
    (i,) = snap(store).images
    assert (i.path, i.platform, i.origin) == (str(vhdx), "wsl2", "settings")


def test_settings_store_wins_over_the_old_settings_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    new, stale = tmp_path / "new", tmp_path / "stale"
    sparse(new / "Docker.raw", GiB, MiB)
    sparse(stale / "Docker.raw", GiB, MiB)
    base = home / ".docker/desktop"
    base.mkdir(parents=True)
    (base / "settings-store.json").write_text(json.dumps({"DataFolder": str(new)}))
    (base / "settings.json").write_text(json.dumps({"dataFolder": str(stale)}))
    store, _, _ = run(Where("linux", str(home)))
    assert [i.path for i in snap(store).images] == [str(new / "Docker.raw")]


def test_a_setting_naming_the_default_place_counts_the_image_once(tmp_path: Path) -> None:
    image = sparse(tmp_path / MAC_RAW, GiB, MiB)
    settings = tmp_path / "Library/Group Containers/group.com.docker/settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"dataFolder": str(image.parent)}))
    store, _, _ = run(Where("macos", str(tmp_path)))
    assert [(i.path, i.origin) for i in snap(store).images] == [(str(image), "settings")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"DataFolder": "relative/dir"}', "not an absolute path"),
        (b'{"DataFolder": 42}', "not an absolute path"),
        (b"\xff\xfe\x00garbage", "not JSON"),
    ],
)
def test_bad_settings_are_counted_and_logged_once_and_the_default_still_found(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    image = sparse(tmp_path / ".docker/desktop/vms/0/data/Docker.raw", GiB, MiB)
    settings = tmp_path / ".docker/desktop/settings-store.json"
    settings.write_bytes(content)
    store = Store()
    sampler = DesktopSampler(store, where=Where("linux", str(tmp_path)))
    with capture_logs() as logs:
        assert sampler.run() and sampler.run()
    assert [i.path for i in snap(store).images] == [str(image)]
    assert snap(store).skipped == 1
    warned = [e for e in logs if e["event"] == "desktop disk image not measured"]
    assert len(warned) == 1, logs  # once, not on every run
    assert warned[0]["path"] == str(settings) and reason in warned[0]["reason"]
    assert samples(exposition(store))["docker_storage_sampler_skipped_items"] == [
        ({"sampler": "desktop"}, 1.0)
    ]


def test_a_fifo_for_settings_is_not_opened(tmp_path: Path) -> None:
    """Opening a FIFO would block the sampler for ever: it is refused as no regular file."""
    base = tmp_path / ".docker/desktop"
    base.mkdir(parents=True)
    os.mkfifo(base / "settings-store.json")
    store, _, ok = run(Where("linux", str(tmp_path)))
    assert ok and snap(store).images == () and snap(store).skipped == 1


# -- what cannot be read, and what goes away ----------------------------------------------------


def test_an_unreadable_candidate_is_counted_not_fatal(tmp_path: Path) -> None:
    raw = tmp_path / MAC_RAW
    raw.parent.mkdir(parents=True)
    os.symlink(raw.name, raw)  # a link to itself: stat fails with ELOOP
    qcow = tmp_path / MAC_DATA / "vms/0/data/Docker.qcow2"
    qcow.mkdir()  # a dir where a file should be
    store, _, ok = run(Where("macos", str(tmp_path)))
    assert ok
    assert snap(store).images == () and snap(store).skipped == 2
    assert store.status("desktop").success  # type: ignore[union-attr]


def test_a_discovered_image_that_goes_is_counted_once_and_the_sampler_stays(tmp_path: Path) -> None:
    image = sparse(tmp_path / ".docker/desktop/vms/0/data/Docker.raw", GiB, MiB)
    store = Store()
    sampler = DesktopSampler(store, where=Where("linux", str(tmp_path)))
    assert sampler.run()
    image.unlink()
    with capture_logs() as logs:
        assert sampler.run()
    assert snap(store).images == () and snap(store).skipped == 1
    assert [e["reason"] for e in logs if e.get("path") == str(image)] == ["gone since the last sample"]
    assert sampler.run() and snap(store).skipped == 0
    text = exposition(store)
    assert "desktop_disk_image" not in text  # no figures for an image that is not there
    assert 'docker_storage_sampler_success{sampler="desktop"} 1.0' in text  # but the sampler is seen


def test_a_named_image_that_vanishes_fails_the_run_and_keeps_the_last_figures(tmp_path: Path) -> None:
    image = sparse(tmp_path / "Docker.raw", GiB, MiB)
    store = Store()
    sampler = DesktopSampler(store, disk_image=str(image), where=Where("linux", str(tmp_path / "none")))
    assert store.status("desktop") is not None  # named: seen from the start
    assert sampler.run()
    image.unlink()
    with capture_logs() as logs:
        assert not sampler.run()
    status = store.status("desktop")
    assert status is not None and not status.success and status.failures == 1
    assert status.last_error == f"--desktop.disk-image {image}: No such file or directory"
    assert any(e["event"] == "sample failed" for e in logs)
    assert [i.path for i in snap(store).images] == [str(image)]  # the last good figures stay


def test_a_named_dir_finds_the_image_in_it(tmp_path: Path) -> None:
    image = sparse(tmp_path / "moved/Docker.raw", GiB, MiB)
    store, _, ok = run(Where("macos", str(tmp_path / "none")), disk_image=str(image.parent))
    assert ok
    (i,) = snap(store).images
    assert (i.path, i.origin, i.platform) == (str(image), "flag", "macos")


def test_a_named_image_is_the_only_one_looked_at(tmp_path: Path) -> None:
    sparse(tmp_path / ".docker/desktop/vms/0/data/Docker.raw", GiB, MiB)
    named = tmp_path / "elsewhere/docker_data.vhdx"
    named.parent.mkdir()
    named.write_bytes(b"x" * 100)
    store, _, _ = run(Where("linux", str(tmp_path)), disk_image=str(named))
    assert [(i.path, i.platform) for i in snap(store).images] == [(str(named), "wsl2")]


def test_a_failing_allocated_call_leaves_that_figure_out(tmp_path: Path) -> None:
    sparse(tmp_path / ".docker/desktop/vms/0/data/Docker.raw", GiB, MiB)

    def broken(path: str, st: os.stat_result) -> int:
        raise PermissionError(13, "Access is denied")

    store, _, ok = run(Where("linux", str(tmp_path)), allocated=broken)
    assert ok
    (i,) = snap(store).images
    assert i.allocated_bytes is None and snap(store).skipped == 1
    s = samples(exposition(store))
    assert "docker_storage_desktop_disk_image_allocated_bytes" not in s
    assert s["docker_storage_desktop_disk_image_apparent_bytes"] == [({"path": i.path}, float(GiB))]


# -- no Desktop: nothing anywhere -----------------------------------------------------------------


@pytest.mark.parametrize("system", ["macos", "linux", "windows", ""])
def test_no_desktop_shows_nothing_anywhere(tmp_path: Path, system: str) -> None:
    where = Where(system, str(tmp_path), {"LOCALAPPDATA": str(tmp_path / "L"), "APPDATA": str(tmp_path)})
    store, _, _ = run(where)
    assert store.status("desktop") is None and store.latest(DesktopSnapshot) is None
    assert "desktop" not in exposition(store).lower()
    data = report.collect(store)
    assert "desktop" not in json.dumps(data).lower()
    assert "desktop" not in report.render(data).lower()


# -- the families and the report section ----------------------------------------------------------


def test_families_carry_the_figures_and_odd_paths_round_trip(tmp_path: Path) -> None:
    home = tmp_path / 'a "quoted" home\\ with\nnewline é🐳'
    image = sparse(home / ".docker/desktop/vms/0/data/Docker.raw", 8 * GiB, 2 * MiB)
    store, _, _ = run(Where("linux", str(home)))
    text = exposition(store)
    check = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr
    s = samples(text)
    p = {"path": str(image)}
    assert s["docker_storage_desktop_disk_image_info"] == [({**p, "format": "raw", "platform": "linux"}, 1.0)]
    assert s["docker_storage_desktop_disk_image_apparent_bytes"] == [(p, float(8 * GiB))]
    assert s["docker_storage_desktop_disk_image_allocated_bytes"] == [(p, float(allocated(image)))]
    fs = os.statvfs(image.parent)
    assert s["docker_storage_desktop_disk_image_filesystem_size_bytes"] == [
        (p, float(fs.f_blocks * fs.f_frsize))
    ]
    assert s["docker_storage_sampler_skipped_items"] == [({"sampler": "desktop"}, 0.0)]


@pytest.mark.parametrize(
    ("platform", "fmt", "wanted"),
    [
        ("macos", "raw", ["docker system prune", "docker/desktop-reclaim-space"]),
        ("macos", "qcow2", ["docker system prune", "docker/desktop-reclaim-space"]),
        ("wsl2", "vhdx", ["prune", "reclaim-space", "wsl --shutdown", "Optimize-VHD -Path", "compact vdisk"]),
        ("hyperv", "vhdx", ["prune", "reclaim-space", "Optimize-VHD -Path", "compact vdisk"]),
    ],
)
def test_reclaim_steps_follow_the_platform(platform: str, fmt: str, wanted: list[str]) -> None:
    from exporter.model import DesktopDiskImage
    from exporter.report_desktop import steps

    image = DesktopDiskImage("C:\\D\\disk." + fmt, fmt, platform, "default", 10, 5)
    commands = [s["command"] for s in steps(image) if s["command"]]
    assert len(commands) == len(wanted)
    for command, want in zip(commands, wanted, strict=True):
        assert want in command
    if platform in ("wsl2", "hyperv"):
        assert f'Optimize-VHD -Path "{image.path}" -Mode Full' in commands
    text = " ".join(s["step"] for s in steps(image))
    assert ("qcow2" in text) == (fmt == "qcow2")
    assert ("Disk usage limit" in text) == (platform == "macos")


# -- stat only: the image is never opened ---------------------------------------------------------

IN_ACCESS, IN_MODIFY, IN_OPEN, IN_NONBLOCK = 0x1, 0x2, 0x20, 0o4000


class OpenWatch:
    """inotify on a file: counts opens and reads of it (a stat raises no event)."""

    def __init__(self, path: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(IN_NONBLOCK)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        wd = self.libc.inotify_add_watch(self.fd, str(path).encode(), IN_OPEN | IN_ACCESS | IN_MODIFY)
        assert wd >= 0, os.strerror(ctypes.get_errno())

    def events(self) -> list[int]:
        masks = []
        try:
            buf = os.read(self.fd, 65536)
        except BlockingIOError:
            return masks
        off = 0
        while off < len(buf):
            _wd, mask, _cookie, n = struct.unpack_from("iIII", buf, off)
            masks.append(mask)
            off += 16 + n
        return masks

    def close(self) -> None:
        os.close(self.fd)


def test_the_image_is_only_stat_ed(tmp_path: Path) -> None:
    image = sparse(tmp_path / ".docker/desktop/vms/0/data/Docker.raw", GiB, MiB)
    watch = OpenWatch(image)
    try:
        store = Store()
        sampler = DesktopSampler(store, where=Where("linux", str(tmp_path)))
        for _ in range(3):
            assert sampler.run()
        exposition(store)
        report.render(report.collect(store))
        assert watch.events() == []
        with open(image, "rb") as f:  # the control: an open would have been seen
            f.read(1)
        assert watch.events()
    finally:
        watch.close()


def test_host_system_names() -> None:
    assert [desktop.host_system(p) for p in ("darwin", "win32", "linux", "freebsd14")] == [
        "macos",
        "windows",
        "linux",
        "",
    ]


# -- the flags ----------------------------------------------------------------------------------


def test_flag_defaults() -> None:
    from exporter.config import parse

    cfg = parse([], {})
    assert (cfg.desktop_disk_image, cfg.desktop_interval) == ("", 60.0)
    assert parse(["--sampler.desktop.interval=0"], {}).desktop_interval == 0


def test_disk_image_flag_takes_a_file_a_dir_the_env_and_a_tilde(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exporter.config import parse

    image = sparse(tmp_path / "data/Docker.raw", GiB, MiB)
    assert parse([f"--desktop.disk-image={image}"], {}).desktop_disk_image == str(image)
    assert parse(["--desktop.disk-image", f"{image.parent}/"], {}).desktop_disk_image == str(image.parent)
    env = {"DOCKER_STORAGE_EXPORTER_DESKTOP_DISK_IMAGE": str(image)}
    assert parse([], env).desktop_disk_image == str(image)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse(["--desktop.disk-image=~/data/Docker.raw"], {}).desktop_disk_image == str(image)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--desktop.disk-image=data/Docker.raw"], "use an absolute path"),
        (["--desktop.disk-image={tmp}/none/Docker.raw"], "no Docker Desktop disk image there"),
        (["--desktop.disk-image={tmp}"], "no Docker Desktop disk image there"),  # a dir without one
        (["--desktop.disk-image={tmp}/data/Docker.raw", "--sampler.desktop.interval=0"], "drop one"),
        (["--sampler.desktop.interval=5x"], "use a duration"),
        (["--sampler.desktop.interval=-1s"], "use a duration"),
    ],
)
def test_bad_desktop_flags_are_one_line_naming_the_flag(tmp_path: Path, args: list[str], says: str) -> None:
    from exporter.config import ConfigError, parse

    sparse(tmp_path / "data/Docker.raw", GiB, MiB)
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(ConfigError) as info:
        parse(args, {})
    message = str(info.value)
    assert "\n" not in message and says in message
    assert args[0].split("=")[0] in message


def test_cli_exits_2_with_one_line_for_a_missing_image(tmp_path: Path) -> None:
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_STORAGE_EXPORTER_")}
    missing = tmp_path / "Docker.raw"
    for cmd in ([], ["report"]):
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", *cmd, f"--desktop.disk-image={missing}"],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert (
            "--desktop.disk-image" in line and str(missing) in line and "disk image location" in line.lower()
        )
        assert proc.stdout == ""
