"""Small live dirs measured by their settled listings: every figure as du.walk gives it, and
the listing trusted only while every dir's (inode, ctime) holds."""

from __future__ import annotations

import operator
import os
import subprocess
import time
from pathlib import Path

import pytest

from exporter.sources import livewalk
from exporter.sources.du import walk
from exporter.sources.livewalk import LiveTrees

SETTLE_NS = 30_000_000  # 30 ms: longer than a ctime tick, short enough for a test


def settle() -> None:
    time.sleep(2 * SETTLE_NS / 1e9)


def tree(root: Path) -> Path:
    (root / "fs" / "tmp").mkdir(parents=True)
    (root / "work" / "work").mkdir(parents=True)
    (root / "fs" / "tmp" / "state").write_bytes(b"x" * 5000)
    (root / "fs" / "etc").mkdir()
    (root / "fs" / "etc" / "hosts").write_bytes(b"h" * 10)
    os.link(root / "fs" / "etc" / "hosts", root / "fs" / "hosts.link")
    os.symlink("etc/hosts", root / "fs" / "sym")
    (root / "skip").mkdir()
    (root / "skip" / "big").write_bytes(b"s" * 70_000)
    return root


@pytest.fixture(params=["c", "python"])
def trees(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LiveTrees:
    if request.param == "python":
        monkeypatch.setattr(livewalk, "_native", None)
    elif livewalk._native is None:
        pytest.fail("the C walk is not built (setup.py build_ext)")
    return LiveTrees(settle_ns=SETTLE_NS)


def check(trees: LiveTrees, root: Path, exclude: frozenset[str] = frozenset({"skip"})) -> tuple[int, int]:
    """Measure once; it must be what a walk says. Returns (reused, listed) of that measure."""
    reused, listed = trees.reused, trees.listed
    (got,) = trees.measure([(str(root), exclude)])
    assert got == walk(str(root), exclude=exclude)
    return trees.reused - reused, trees.listed - listed


def test_a_settled_tree_is_restated_not_listed_while_its_dirs_hold(trees: LiveTrees, tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    assert check(trees, root) == (0, 1)  # just made: listed, not kept (a change may follow in its tick)
    assert check(trees, root) == (0, 1)
    settle()
    assert check(trees, root) == (0, 1)  # settled now: listed and kept
    assert check(trees, root) == (1, 0)
    (root / "fs" / "tmp" / "state").write_bytes(b"y" * 123_456)  # in place: no dir moves
    assert check(trees, root) == (1, 0)  # the new size, from the lstat
    with open(root / "fs" / "etc" / "hosts", "ab") as f:  # through one of two links: counted once
        f.write(b"z" * 9000)
    assert check(trees, root) == (1, 0)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: (r / "fs" / "tmp" / "new").write_bytes(b"n" * 100), id="file-made"),
        pytest.param(lambda r: (r / "fs" / "tmp" / "state").unlink(), id="file-removed"),
        pytest.param(lambda r: os.rename(r / "fs" / "tmp" / "state", r / "fs" / "state"), id="renamed"),
        pytest.param(
            lambda r: os.rename(r / "fs" / "etc" / "hosts", r / "fs" / "tmp" / "state"), id="renamed-over"
        ),
        pytest.param(lambda r: (r / "work" / "work" / "d").mkdir(), id="dir-made"),
        pytest.param(lambda r: os.link(r / "fs" / "tmp" / "state", r / "work" / "l"), id="link-made"),
        pytest.param(lambda r: os.chmod(r / "fs" / "etc", 0o700), id="mode"),
        pytest.param(lambda r: (r / "skip" / "more").write_bytes(b"m"), id="inside-an-exclude"),
    ],
)
def test_any_change_to_a_dir_lists_the_tree_again(trees: LiveTrees, tmp_path: Path, change: object) -> None:
    root = tree(tmp_path / "t")
    settle()
    check(trees, root)
    assert check(trees, root) == (1, 0)
    change(root)  # type: ignore[operator]
    reused, listed = check(trees, root)
    if (root / "skip" / "more").exists():
        assert (reused, listed) == (1, 0)  # an excluded dir's entries are not the tree's
    else:
        assert (reused, listed) == (0, 1)


def test_a_mount_come_or_gone_lists_the_tree_again(trees: LiveTrees, tmp_path: Path) -> None:
    """A mount does not move its parent's ctime: the lstat's device tells it."""
    root = tree(tmp_path / "t")
    settle()
    check(trees, root)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(root / "fs" / "tmp")], check=True)
    try:
        (root / "fs" / "tmp" / "on-tmpfs").write_bytes(b"t" * 4096)
        assert check(trees, root)[1] == 1  # the mount point is not ours, as du -x says
        settle()
        check(trees, root)
        assert check(trees, root) == (1, 0)
    finally:
        subprocess.run(["umount", str(root / "fs" / "tmp")], check=True)
    assert check(trees, root)[1] == 1


def test_gone_root_a_file_root_and_forgotten_listings(trees: LiveTrees, tmp_path: Path) -> None:
    root = tree(tmp_path / "t")
    (tmp_path / "f").write_bytes(b"f" * 3000)
    settle()
    check(trees, root)
    check(trees, tmp_path / "f", frozenset())
    assert check(trees, tmp_path / "nowhere", frozenset()) == (0, 1)
    subprocess.run(["rm", "-rf", str(root)], check=True)
    assert check(trees, root) == (0, 1)  # gone: as a walk of a gone dir says
    trees.retain(set())
    assert not trees._listings


def test_a_file_bind_mounted_from_another_filesystem_is_not_counted(trees: LiveTrees, tmp_path: Path) -> None:
    """A file mounted over a listed file (as a container's /etc/hosts is) is not ours: du -x
    leaves it out, and so does the restat, by its device."""
    root = tree(tmp_path / "t")
    (root / "work" / "file").write_bytes(b"w" * 100)
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "none", str(other)], check=True)
    try:
        (other / "big").write_bytes(b"b" * 200_000)
        settle()
        check(trees, root)
        subprocess.run(["mount", "--bind", str(other / "big"), str(root / "work" / "file")], check=True)
        try:
            assert check(trees, root) == (0, 1)
        finally:
            subprocess.run(["umount", str(root / "work" / "file")], check=True)
    finally:
        subprocess.run(["umount", str(other)], check=True)


def test_trees_are_restated_from_their_common_dir_and_odd_roots_measured_as_walked(
    trees: LiveTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch for all trees, each path looked up from the dir they share (a tree may be that
    dir itself). A root written otherwise (a trailing or doubled slash, relative, through a
    link) is measured as du.walk measures it, and listed again each time rather than kept."""
    a, b = tree(tmp_path / "a"), tree(tmp_path / "x" / "b")
    (tmp_path / "link").symlink_to(a)
    monkeypatch.chdir(tmp_path)
    odd = [
        (str(a) + "/", frozenset({"skip"})),
        (str(tmp_path / "x") + "//b", frozenset()),
        ("a", frozenset()),  # relative, beside absolute ones
        (str(tmp_path / "link") + "/", frozenset()),  # the slash follows the link, as du's lstat does
        (str(tmp_path / "link"), frozenset()),  # the link itself
    ]
    plain = [(str(b), frozenset()), (str(a), frozenset({"skip"}))]
    jobs = odd + plain
    settle()
    want = [walk(p, exclude=e) for p, e in jobs]
    assert want[3] != want[4]
    assert trees.measure(jobs) == want
    reused, listed = trees.reused, trees.listed
    assert trees.measure(jobs) == want
    assert (trees.reused - reused, trees.listed - listed) == (len(plain), len(odd))
    whole = [(str(tmp_path / "x"), frozenset())]
    trees.measure(whole)
    assert trees.measure(whole) == [walk(str(tmp_path / "x"))] and trees.reused == reused + len(plain) + 1


def test_a_dir_it_cannot_read_is_measured_by_du_s_own_walk(trees: LiveTrees, tmp_path: Path) -> None:
    """A name past PATH_MAX cannot be listed by its path (du's fd-relative walk reads it): the
    tree's figures are the walk's, and it is not kept."""
    root = tree(tmp_path / "t")
    deep = os.open(root / "fs", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(20):  # 20 x 250 bytes: past PATH_MAX (4096) from the root
            os.mkdir("d" * 250, dir_fd=deep)
            nxt = os.open("d" * 250, os.O_RDONLY | os.O_DIRECTORY, dir_fd=deep)
            os.close(deep)
            deep = nxt
        fd = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=deep)
        os.write(fd, b"p" * 7000)
        os.close(fd)
    finally:
        os.close(deep)
    settle()
    assert check(trees, root) == (0, 1)
    assert check(trees, root) == (0, 1)
    assert walk(str(root)).errors == 0


def test_a_tree_listed_past_its_deadline_is_partial_and_a_big_one_not_kept(
    trees: LiveTrees, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small dir that grew big since its hint is listed under the scan's deadline, as a walk
    is (partial once it passed), and its names are kept only while they are few."""
    root = tmp_path / "grown"
    root.mkdir()
    for i in range(600):
        (root / f"f{i}").write_bytes(b"")
    settle()
    (got,) = trees.measure([(str(root), frozenset())], deadline=time.monotonic() - 1)
    assert got.partial and 0 < got.files < 601 and not trees._listings
    monkeypatch.setattr(livewalk, "KEEP_AT_MOST", 100)
    assert check(trees, root, frozenset()) == (0, 1)
    assert check(trees, root, frozenset()) == (0, 1)  # not kept: listed again
    monkeypatch.setattr(livewalk, "KEEP_AT_MOST", 1000)
    check(trees, root, frozenset())
    assert check(trees, root, frozenset()) == (1, 0)


def test_one_changed_tree_in_a_batch_is_listed_again_and_the_rest_restated(
    trees: LiveTrees, tmp_path: Path
) -> None:
    """restat_trees answers per tree: a tree whose listing no longer holds, between two that
    do, is listed again alone, and the batch (made once while its listings stay) is made anew."""
    roots = [tree(tmp_path / n) for n in ("a", "b", "c")]
    jobs = [(str(r), frozenset({"skip"})) for r in roots]
    settle()
    trees.measure(jobs)
    assert trees.measure(jobs) == [walk(p, exclude=e) for p, e in jobs]
    batch = trees._batch
    reused, listed = trees.reused, trees.listed
    assert trees.measure(jobs) == [walk(p, exclude=e) for p, e in jobs]
    assert trees._batch is batch and (trees.reused - reused, trees.listed - listed) == (3, 0)
    (roots[1] / "fs" / "new").write_bytes(b"n" * 9000)
    reused, listed = trees.reused, trees.listed
    assert trees.measure(jobs) == [walk(p, exclude=e) for p, e in jobs]
    assert (trees.reused - reused, trees.listed - listed) == (2, 1)


def test_hard_links_counted_once_a_tree_however_many(trees: LiveTrees, tmp_path: Path) -> None:
    """Each hard-linked inode counts once a tree, as du's walk counts it: past the C restat's
    table of them (SEEN_AT_MOST) the tree is listed again, never miscounted."""
    small, big = tmp_path / "small", tmp_path / "big"
    for root, n in ((small, 3), (big, 1100)):
        (root / "d").mkdir(parents=True)
        for i in range(n):
            (root / f"f{i}").write_bytes(b"x" * (100 + i))
            os.link(root / f"f{i}", root / "d" / f"l{i}")
    jobs = [(str(small), frozenset()), (str(big), frozenset())]
    settle()
    want = [walk(p) for p, _ in jobs]
    assert want[1].files == 1100 + 2
    trees.measure(jobs)
    reused, listed = trees.reused, trees.listed
    assert trees.measure(jobs) == want
    # The small tree is restated; the big one restated in Python, listed again by the C restat.
    expect = (2, 0) if livewalk._native is None else (1, 1)
    assert (trees.reused - reused, trees.listed - listed) == expect


def test_restat_trees_refuses_a_batch_that_does_not_add_up(tmp_path: Path) -> None:
    if livewalk._native is None:
        pytest.fail("the C walk is not built (setup.py build_ext)")
    entry = livewalk._ENTRY.pack(livewalk._DIR, 1, 1)
    restat = livewalk._native.restat_trees
    base = os.fsencode(tmp_path)
    for paths, entries, counts in [
        ((b".",), entry, livewalk._TREE.pack(2, 0)),  # counts past the paths
        ((b".", b"."), entry * 2, livewalk._TREE.pack(1, 0)),  # counts short of them
        ((b".",), entry * 2, livewalk._TREE.pack(1, 0)),  # entries not one a path
        ((b"a\0b",), entry, livewalk._TREE.pack(1, 0)),
        (("str",), entry, livewalk._TREE.pack(1, 0)),
    ]:
        with pytest.raises(ValueError):
            restat(paths, base, entries, counts)
    with pytest.raises(TypeError):  # bytes only: a buffer another thread could change is refused
        restat((b".",), base, bytearray(entry), livewalk._TREE.pack(1, 0))
    # A base that cannot be opened: every tree not held (listed again by the caller).
    held = restat((b".",), base + b"/gone", entry, livewalk._TREE.pack(1, 0))
    assert list(livewalk._HELD.iter_unpack(held)) == [(0, 0, 0, 0)]


def test_the_batch_is_made_with_the_listings_and_figures_as_they_were_are_the_same_objects(
    trees: LiveTrees, tmp_path: Path
) -> None:
    """The run that lists the trees makes the next run's batch; a run whose every tree holds
    with last run's figures hands back last run's Usages (what is derived from them downstream
    is kept by identity); a file grown in place is the next run's new figure."""
    roots = [tree(tmp_path / n) for n in ("a", "b")]
    jobs = [(str(r), frozenset({"skip"})) for r in roots]
    settle()
    trees.measure(jobs)  # listed (the pool walked them before, say)
    batch = trees._batch
    assert batch is not None and batch[0] == tuple(trees._listings[j] for j in jobs)
    want = [walk(p, exclude=e) for p, e in jobs]
    first = trees.measure(jobs)
    assert first == want and trees._batch is batch
    second = trees.measure(jobs)
    assert second == want and all(map(operator.is_, second, first))
    with open(roots[1] / "fs" / "tmp" / "state", "ab") as f:  # in place: no dir's stamp moves
        f.write(b"g" * 50_000)
    reused, listed = trees.reused, trees.listed
    third = trees.measure(jobs)
    assert third == [walk(p, exclude=e) for p, e in jobs] and third[1] != second[1]
    assert (trees.reused - reused, trees.listed - listed) == (2, 0) and trees._batch is batch
    assert all(map(operator.is_, trees.measure(jobs), third))
    (roots[0] / "fs" / "new").write_bytes(b"n")  # a name made: listed again, nothing handed back
    fourth = trees.measure(jobs)
    assert fourth == [walk(p, exclude=e) for p, e in jobs] and fourth[0] is not third[0]
