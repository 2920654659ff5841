"""exporter.sources.fs: mountinfo parsing, the mount holding a path, and --path.rootfs mapping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.sources.fs import Mount, host_to_local, local_to_host, mount_of, read_mounts, statfs


@pytest.fixture
def mounts(mountinfo_path: Path) -> list[Mount]:
    return read_mounts(str(mountinfo_path))


def by_point(mounts: list[Mount]) -> dict[str, Mount]:
    return {m.mountpoint: m for m in mounts}


# --- read_mounts ------------------------------------------------------------------------


def test_read_mounts_fields(mounts: list[Mount]) -> None:
    m = by_point(mounts)
    assert m["/"] == Mount(mountpoint="/", fstype="ext4", readonly=False, dev="254:0", root="/")
    assert m["/proc"].fstype == "proc"
    assert m["/var/lib/docker/overlay2/8f1b23ec413d/merged"].fstype == "overlay"


def test_read_mounts_unescapes_octal(mounts: list[Mount]) -> None:
    points = {m.mountpoint for m in mounts}
    assert "/srv/docker data" in points
    assert "/mnt/tab\tand\\slash" in points  # \011 and \134, with optional fields before " - "


def test_read_mounts_bind_root(mounts: list[Mount]) -> None:
    m = by_point(mounts)
    assert m["/var/lib/docker"].root == "/var/lib/docker"
    assert m["/mnt/readonly-bind"].root == "/srv/export"


def test_read_mounts_readonly_from_super_options(mounts: list[Mount]) -> None:
    m = by_point(mounts)
    assert m["/mnt/media"].readonly is True  # the filesystem itself is ro
    # A read-only bind of a read-write filesystem: the filesystem is not read-only.
    assert m["/mnt/readonly-bind"].readonly is False


def test_read_mounts_empty_source_field(mounts: list[Mount]) -> None:
    """proc(5): the mount source may be empty ("- tmpfs  rw,..."); systemd and libmount test it.

    The line must still be read: without it a Docker root on that tmpfs would be attributed
    to the filesystem below it.
    """
    m = by_point(mounts)
    assert "/run/user/1000" in m
    assert m["/run/user/1000"].fstype == "tmpfs"
    assert m["/run/user/1000"].readonly is False
    assert m["/run/user/1000"].dev == "0:54"


def test_read_mounts_missing_file_and_garbage(tmp_path: Path) -> None:
    assert read_mounts(str(tmp_path / "nope")) == []
    junk = tmp_path / "mountinfo"
    junk.write_bytes(
        b"garbage\n\n1 2 3\n27 1 254:0 / / rw - ext4 /dev/vda rw\n40 27 8:1 /\xff /x rw - ext4 /dev/sdb rw\n"
    )
    got = read_mounts(str(junk))
    assert [m.mountpoint for m in got] == ["/", "/x"]


def test_read_mounts_of_this_process() -> None:
    got = read_mounts()
    assert any(m.mountpoint == "/" for m in got)


# --- mount_of ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "mountpoint"),
    [
        ("/", "/"),
        ("/etc/hosts", "/"),
        ("/srv/docker data/overlay2", "/srv/docker data"),
        ("/srv/docker data", "/srv/docker data"),
        ("/srv/docker", "/"),  # a prefix of a mount point is not under it
        ("/var/lib/docker2/x", "/var/lib/docker2"),
        ("/var/lib/docker/overlay2/8f1b23ec413d/merged/etc", "/var/lib/docker/overlay2/8f1b23ec413d/merged"),
        ("/mnt/media/a/b", "/mnt/media"),
    ],
)
def test_mount_of_longest_prefix(mounts: list[Mount], path: str, mountpoint: str) -> None:
    found = mount_of(path, mounts)
    assert found is not None
    assert found.mountpoint == mountpoint


def test_mount_of_stacked_mounts_last_one_wins(mounts: list[Mount]) -> None:
    found = mount_of("/mnt/stack/file", mounts)
    assert found is not None
    assert found.fstype == "tmpfs"
    assert found.readonly is True  # "second", mounted over "first"


def test_mount_of_docker_root_bind_mounted_onto_itself(mounts: list[Mount]) -> None:
    # dockerd bind-mounts /var/lib/docker onto itself; the filesystem's own mount is "/".
    for path in ("/var/lib/docker", "/var/lib/docker/overlay2", "/var/lib/docker/volumes/v/_data"):
        found = mount_of(path, mounts)
        assert found is not None
        assert (found.mountpoint, found.root, found.dev) == ("/", "/", "254:0"), path


def test_mount_of_bind_without_visible_origin_keeps_the_bind() -> None:
    mounts = [
        Mount("/", "overlay", False, dev="0:40", root="/"),
        Mount("/data", "ext4", False, dev="8:1", root="/srv/data"),
    ]
    found = mount_of("/data/x", mounts)
    assert found is not None
    assert found.mountpoint == "/data"


def test_mount_of_trailing_slash_mountpoint() -> None:
    mounts = [Mount("/", "ext4", False, dev="1:1"), Mount("/data/", "xfs", False, dev="1:2")]
    found = mount_of("/data/docker", mounts)
    assert found is not None
    assert found.dev == "1:2"


def test_mount_of_no_mounts() -> None:
    assert mount_of("/var/lib/docker", []) is None


# --- rootfs mapping ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "rootfs", "local"),
    [
        ("/var/lib/docker", "/", "/var/lib/docker"),
        ("/var/lib/docker", "", "/var/lib/docker"),
        ("/var/lib/docker", "/host", "/host/var/lib/docker"),
        ("/var/lib/docker", "/host/", "/host/var/lib/docker"),
    ],
)
def test_host_to_local(host: str, rootfs: str, local: str) -> None:
    assert host_to_local(host, rootfs) == local


@pytest.mark.parametrize(
    ("local", "rootfs", "host"),
    [
        ("/host/var/lib/docker", "/host", "/var/lib/docker"),
        ("/host", "/host", "/"),
        ("/host/", "/host/", "/"),
        ("/hostile/x", "/host", "/hostile/x"),  # not under the rootfs: left as it is
        ("/var/lib/docker", "/", "/var/lib/docker"),
    ],
)
def test_local_to_host(local: str, rootfs: str, host: str) -> None:
    assert local_to_host(local, rootfs) == host


def test_round_trip() -> None:
    for path in ("/", "/var/lib/docker", "/srv/docker data"):
        assert local_to_host(host_to_local(path, "/host"), "/host") == path


# --- statfs -----------------------------------------------------------------------------


def test_statfs_with_rootfs(tmp_path: Path) -> None:
    (tmp_path / "var" / "lib" / "docker").mkdir(parents=True)
    mounts = [Mount("/", "ext4", False, dev="1:1"), Mount(str(tmp_path), "ext4", True, dev="1:1")]
    fs = statfs("/var/lib/docker", str(tmp_path), mounts)
    st = os.statvfs(tmp_path)
    assert fs.path == "/var/lib/docker"
    assert fs.mountpoint == "/"  # the rootfs itself, named as the host names it
    assert fs.readonly is True
    assert fs.size == st.f_blocks * st.f_frsize
    assert fs.files == st.f_files


def test_statfs_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        statfs("/no/such/dir", str(tmp_path), [])
