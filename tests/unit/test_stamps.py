"""exporter.sources.stamps: AtomicTree against GNU du and du.walk, on trees aged by hand.

A fresh tmp tree is "just modified" everywhere, so nothing in it may be reused; `age` sets its
mtimes an hour back, as on a host whose image store nobody touched lately.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from exporter.sources import du
from exporter.sources.du import walk
from exporter.sources.rawfs import names_in, read_short, scandir_sorted
from exporter.sources.stamps import SETTLE_NS, AtomicTree, settled_stamp
from exporter.sources.witness import witnessed_inode, witnessing
from tests.unit.test_du import assert_matches_du, impl, make_tree, write  # noqa: F401 - impl: a fixture
from tests.unit.test_layout import age


def rename_in(path: Path, data: bytes) -> None:
    """Write as dockerd does (ioutils.AtomicWriteFile): a temp file in the dir, renamed over."""
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.rename(tmp, path)


def count_dirs(root: Path) -> int:
    """Real dirs under root and root itself (os.walk lists links to dirs among dirs too)."""
    return 1 + sum(not os.path.islink(os.path.join(top, d)) for top, dirs, _ in os.walk(root) for d in dirs)


def test_matches_du_and_walk_on_first_and_later_walks(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    os.link(root / "d0" / "e0" / "f0", root / "d1" / "hard")  # a link across dirs: counted once
    tree = AtomicTree()
    first = tree.walk(str(root))
    assert first == walk(str(root))
    assert_matches_du(root, first)
    assert tree.listed == count_dirs(root)

    age(root)
    assert tree.walk(str(root)) == first
    assert tree.listed == count_dirs(root)  # the stamps were not settled when read: read again
    again = tree.walk(str(root))
    assert again == first
    # Now only the dirs holding a multi-link file are read; the rest are reused.
    assert tree.listed == 2


def test_a_file_renamed_in_or_removed_is_seen_and_only_its_dir_is_read(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    age(root)
    tree = AtomicTree()
    tree.walk(str(root))
    assert tree.walk(str(root)) == walk(str(root)) and tree.listed == 0

    rename_in(root / "d3" / "e1" / "f1", b"y" * 50_000)  # replaced: bigger
    (root / "d2" / "e2" / "f2").unlink()
    (root / "d5" / "new").mkdir()
    write(root / "d5" / "new" / "file", 7000)
    got = tree.walk(str(root))
    assert_matches_du(root, got)
    assert got == walk(str(root))
    # The changed dirs were read (the new one, its parent, the two others); nothing else was.
    assert tree.listed == 4

    age(root)  # settled again: from the second walk on, nothing is read
    tree.walk(str(root))
    assert tree.walk(str(root)) == got and tree.listed == 0

    # A change that has settled by the next walk: the stamp moved, so the dir is read.
    rename_in(root / "d6" / "e0" / "f6", b"z" * 33_000)
    age(root)
    assert tree.walk(str(root)) == walk(str(root)) != got


def test_a_change_within_the_settle_time_is_never_missed(tmp_path: Path) -> None:
    """A dir modified in the last SETTLE_NS is read every time: a second change in the same
    mtime tick would leave its stamp as it was."""
    root = make_tree(tmp_path / "t")
    age(root)
    tree = AtomicTree()
    tree.walk(str(root))
    d = root / "d4" / "e0"
    rename_in(d / "f4", b"a" * 100)
    stamp = (os.lstat(d).st_ino, os.lstat(d).st_mtime_ns)
    assert tree.walk(str(root)) == walk(str(root))
    # Same tick, same stamp (forced here): still read, because the stamp is too fresh to trust.
    rename_in(d / "f4", b"b" * 90_000)
    os.utime(d, ns=(stamp[1], stamp[1]))
    assert time.time_ns() - stamp[1] < SETTLE_NS
    assert tree.walk(str(root)) == walk(str(root))
    assert settled_stamp(str(d)) is None and settled_stamp(str(root)) is not None


def test_exclude_deadline_and_odd_roots(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    tree = AtomicTree()
    assert tree.walk(str(root), frozenset({"d1", "d2/e0"})) == walk(
        str(root), exclude=frozenset({"d1", "d2/e0"})
    )
    partial = tree.walk(str(root), deadline=time.monotonic() - 1)
    assert partial.partial and partial.files == 1  # the root itself, then it stopped
    assert tree.walk(str(tmp_path / "missing")) == walk(str(tmp_path / "missing"))
    assert tree.walk(str(root / "zero")) == walk(str(root / "zero"))


def test_dir_names_are_the_same_object_while_the_same_names(tmp_path: Path) -> None:
    from exporter.sources.stamps import DirNames

    (tmp_path / "a").mkdir()
    names = DirNames()
    first = names.get(str(tmp_path))  # a fresh dir: its stamp not settled, listed every time
    assert first == ("a",) and names.get(str(tmp_path)) is first
    (tmp_path / "b").mkdir()
    second = names.get(str(tmp_path))
    assert second == ("a", "b") and second is not first
    old = time.time() - 60
    os.utime(tmp_path, (old, old))  # settled: the stamp alone says nothing moved
    assert names.get(str(tmp_path)) is second
    (tmp_path / "c").touch()
    os.utime(tmp_path, (old, old))  # a change the stamp cannot see is not read: by design
    assert names.get(str(tmp_path)) is second
    os.utime(tmp_path, (old + 1, old + 1))
    assert names.get(str(tmp_path)) == ("a", "b", "c")


# --- the witness of a read ------------------------------------------------------------------


@pytest.mark.usefixtures("impl")  # the C stat and its Python twin
def test_stat_stamps_is_os_stat_s_inode_and_mtime_through_links(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_bytes(b"x")
    os.symlink("d", tmp_path / "to-d")
    paths = [tmp_path / n for n in ("d", "f", "to-d", "gone")]
    got = list(du.INODE_STAT.iter_unpack(du.stat_stamps(tuple(map(os.fsencode, paths)))))
    want = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as e:
            want.append((e.errno, 0, 0, 0))
        else:
            want.append((0, int(stat.S_ISDIR(st.st_mode)), st.st_ino, st.st_mtime_ns))
    assert got == want and got[0] == got[2]  # the link: its dir's


@pytest.mark.usefixtures("impl")
def test_a_witness_holds_while_every_stamp_and_inode_it_took_holds(tmp_path: Path) -> None:
    """A read that went by settled stamps (and single inodes) alone is witnessed; any of them
    moved, or the read having listed or opened anything, and the witness does not hold."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "f").write_bytes(b"x" * 100)
    age(tmp_path)
    with witnessing() as w:
        assert settled_stamp(str(a)) and settled_stamp(str(b))
        assert witnessed_inode(str(b / "f")) == du.one_inode(str(b / "f"))
    assert not w.void and w.holds()
    assert settled_stamp(str(a))  # outside: nothing noted, nothing voided
    assert w.holds()
    (b / "f").write_bytes(b"x" * 9000)  # in place: no stamp moves, the inode does
    assert not w.holds()
    with witnessing() as w:
        settled_stamp(str(a))
        witnessed_inode(str(b / "f"))
    assert w.holds()
    (a / "new").mkdir()  # a name made: the stamp moves
    assert not w.holds()
    for looks in (lambda: names_in(str(a)), lambda: scandir_sorted(str(a)), lambda: read_short(str(b / "f"))):
        with witnessing() as w:
            settled_stamp(str(b))
            looks()
        assert w.void and not w.holds()
    with witnessing() as w:
        settled_stamp(str(a))  # modified just now: not settled, so nothing to go by
    assert w.void
    age(tmp_path)
    with witnessing() as w:
        settled_stamp(str(a))
        done = threading.Event()
        threading.Thread(target=lambda: (names_in(str(a)), done.set())).start()  # another thread's read
        assert done.wait(10)
    assert not w.void and w.holds()
