"""The mount table: which dirs may hold a mount, so that only they are walked in a worker."""

from __future__ import annotations

import subprocess
from pathlib import Path

from exporter.sources.mounts import MountPoints, MountTable, parse_mountinfo

# Two lines as the kernel writes them (proc(5)): a space in a mount point is written \040.
MOUNTINFO = (
    b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    b"95 22 0:52 / /var/lib/docker/volumes/nfs\\040one/_data rw - nfs4 srv:/x rw,addr=10.0.0.9\n"
    b"96 22 0:53 / /srv/a\\134b rw - tmpfs none rw\n"
)


def test_mount_points_are_field_five_decoded_and_sorted() -> None:
    assert parse_mountinfo(MOUNTINFO) == ("/", "/srv/a\\b", "/var/lib/docker/volumes/nfs one/_data")
    assert parse_mountinfo(b"short line\n\n") == ()


def test_a_mount_at_or_below_a_path_and_nowhere_else(tmp_path: Path) -> None:
    vols = tmp_path / "volumes"
    for name in ("a", "b", "c"):
        (vols / name).mkdir(parents=True)
    points = MountPoints((str(vols / "a" / "_data"), str(vols / "b" / "_data" / "sub")))
    assert points.under(str(vols / "a" / "_data"))  # at it
    assert points.under(str(vols / "b" / "_data"))  # below it
    assert not points.under(str(vols / "a" / "_dat"))  # a prefix of a mount point's name is not it
    assert not points.under(str(vols / "c" / "_data"))
    # A point named like it sorts between "_data" and "_data/": passed over, not taken for it.
    beside = str(vols / "c" / "_data-old")
    assert not MountPoints((beside,)).under(str(vols / "c" / "_data"))
    assert MountPoints((beside, str(vols / "c" / "_data" / "x"))).under(str(vols / "c" / "_data"))
    assert MountPoints(None).under("/anything")  # no table: anywhere may hold a mount
    assert MountPoints(()).under(str(tmp_path / "gone" / "x" / "_data"))  # parent gone: unknown


def test_an_unreadable_table_says_a_mount_may_be_anywhere(tmp_path: Path) -> None:
    table = MountTable(str(tmp_path / "no-such-mountinfo"))
    assert table.view().under(str(tmp_path)) and table.view().points is None


def test_the_table_is_read_again_only_after_the_kernel_says_it_changed(tmp_path: Path) -> None:
    table = MountTable()
    mnt = tmp_path / "m"
    mnt.mkdir()
    assert not table.view().under(str(mnt))
    for _ in range(5):
        table.view()
    assert table.reads == 1  # one poll a view, no read
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(mnt)], check=True)
    try:
        assert table.view().under(str(mnt)) and table.reads == 2
        assert table.view().under(str(tmp_path))  # a mount below
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert not table.view().under(str(mnt)) and table.reads == 3
    table.close()
    assert table.view().points is not None and table.reads == 4  # reopened
