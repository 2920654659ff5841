"""exporter.sources.du: the walk against GNU du as ground truth, and the Walker pool.

Runs as root (tmpfs mounts, whiteouts, dropping to nobody); no Docker engine needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.sources import du
from exporter.sources.du import EMPTY, Usage, Walker, WalkJob, walk
from exporter.sources.livewalk import LiveTrees

MB = 1024 * 1024


# --- helpers ----------------------------------------------------------------------------


def du_bytes(path: Path | str, *opts: str) -> int:
    out = subprocess.run(["du", "-s", "--block-size=1", *opts, os.fsencode(path)], capture_output=True)
    return int(out.stdout.split(b"\t", 1)[0])


def du_inodes(path: Path | str, *opts: str) -> int:
    out = subprocess.run(["du", "-s", "--inodes", *opts, os.fsencode(path)], capture_output=True)
    return int(out.stdout.split(b"\t", 1)[0])


def ref_apparent(path: Path | str, exclude: tuple[str, ...] = ()) -> int:
    """Docker's calcSize, written plainly: st_size of non-directories, hard links once."""
    total, seen = 0, set()
    root = os.fsencode(path)
    skip = {os.path.join(root, os.fsencode(x)) for x in exclude}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            if p in skip:
                continue
            st = os.lstat(p)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def assert_matches_du(path: Path | str, usage: Usage, *du_opts: str) -> None:
    assert usage.disk_bytes == du_bytes(path, *du_opts)
    assert usage.files == du_inodes(path, *du_opts)
    assert usage.errors == 0
    assert usage.partial is False


def write(path: Path, size: int, byte: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(byte * size)
    return path


def make_tree(root: Path, files: int = 60) -> Path:
    """A small mixed tree: nested dirs, sizes around block boundaries, empty files, symlinks."""
    for i in range(files):
        write(root / f"d{i % 7}" / f"e{i % 3}" / f"f{i}", (i * 977) % 20000)
    (root / "empty-dir").mkdir()
    write(root / "zero", 0)
    os.symlink("d0/e0/f0", root / "link-to-file")
    os.symlink("d1", root / "link-to-dir")
    os.symlink("/nonexistent/target", root / "dangling")
    return root


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- stat_inodes: single inodes in one call ----------------------------------------------


def test_stat_inodes_counts_each_path_as_one_inode_does(impl: str, tmp_path: Path) -> None:
    """One call for the single inodes a rescan stats (exporter.scan.plan.Inodes): each path's
    figure is one_inode's, a dir told apart; the same bytes while nothing changed."""
    (tmp_path / "f").write_bytes(b"x" * 5000)
    (tmp_path / "d").mkdir()
    os.symlink("f", tmp_path / "ln")
    long = "n" * 300  # ENAMETOOLONG: unreadable, not gone
    rel = (b"f", b"d", b"ln", b"gone", b"f/under-a-file", long.encode())
    paths = (*rel, os.fsencode(tmp_path / "f"))  # and absolute
    raw = du.stat_inodes(paths, os.fsencode(tmp_path))
    got = du.inode_usages(raw)
    want = [du.one_inode(os.path.join(tmp_path, os.fsdecode(p))) for p in paths]
    assert [g for g, _ in got] == want
    assert [is_dir for _, is_dir in got] == [False, True, False, False, False, False, False]
    assert want[3] == want[4] == EMPTY and want[5] == du.UNREADABLE and want[2].apparent_bytes == len("f")
    assert du.stat_inodes(paths, os.fsencode(tmp_path)) == raw
    (tmp_path / "f").write_bytes(b"x" * 9000)
    changed = du.inode_usages(du.stat_inodes(paths, os.fsencode(tmp_path)))
    assert changed[0][0].apparent_bytes == changed[6][0].apparent_bytes == 9000
    # A base that cannot be opened: its relative paths as lstat says of them, absolute ones stat'ed.
    gone = du.inode_usages(du.stat_inodes((b"f", os.fsencode(tmp_path / "f")), os.fsencode(tmp_path / "no")))
    assert [g for g, _ in gone] == [EMPTY, du.one_inode(str(tmp_path / "f"))]
    if impl == "c":
        for bad in ((b"a\0b",), ("str",)):
            with pytest.raises(ValueError):
                du._native.stat_inodes(bad, os.fsencode(tmp_path))


# --- walk: figures against du -------------------------------------------------------------
# Every walk test runs twice: on the C walk (_walk.c) and on the Python one (walk_python).


@pytest.fixture(params=["c", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(du, "_native", None)
        monkeypatch.setenv("DSE_WALK", "python")  # for walks in a subprocess
    else:
        c_walk()
        monkeypatch.delenv("DSE_WALK", raising=False)
    return str(request.param)


def c_walk() -> Any:
    """The C walk module; a suite run without it fails (never skips) with how to build it."""
    assert du._native is not None, NOT_BUILT
    return du._native


NOT_BUILT = (
    "the C walk (exporter/sources/_walk.c) is not built: install gcc and Python's headers, then"
    " `pip install -e .` (make venv) again"
)


def test_the_c_walk_is_built() -> None:
    # setup.py's extension is optional for users without a compiler; this suite has one.
    assert du.WALK_IMPL == "c" and du._native is not None, NOT_BUILT


@pytest.mark.usefixtures("impl")
def test_plain_tree_matches_du(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    usage = walk(str(root))
    assert_matches_du(root, usage)
    assert usage.apparent_bytes == ref_apparent(root)


@pytest.mark.usefixtures("impl")
def test_hard_links_counted_once(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    big = write(root / "a" / "big", 3 * MB)
    for i in range(3):
        (root / f"b{i}").mkdir()
        os.link(big, root / f"b{i}" / "again")
    usage = walk(str(root))
    assert_matches_du(root, usage)
    assert usage.apparent_bytes == 3 * MB == ref_apparent(root)
    assert usage.files == 1 + 4 + 1  # root, dirs a b0 b1 b2, one inode for four names


@pytest.mark.usefixtures("impl")
def test_sparse_file(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    with open(root / "sparse", "wb") as f:
        f.truncate(100 * MB)
    usage = walk(str(root))
    assert_matches_du(root, usage)
    assert usage.apparent_bytes == 100 * MB
    assert usage.disk_bytes < 64 * 1024  # the dir and no data blocks


@pytest.mark.usefixtures("impl")
def test_whiteout_counts_the_inode_only(tmp_path: Path) -> None:
    root = tmp_path / "diff"
    write(root / "keep", 5000)
    os.mknod(root / "deleted", stat.S_IFCHR | 0o000, os.makedev(0, 0))  # overlayfs whiteout
    usage = walk(str(root))
    assert_matches_du(root, usage)
    assert usage.files == 3
    assert usage.apparent_bytes == 5000


@pytest.mark.usefixtures("impl")
def test_symlinks_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "huge", 4 * MB)
    root = tmp_path / "tree"
    write(root / "small", 10)
    os.symlink(outside, root / "to-outside")
    os.symlink(root, root / "to-self")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.symlink("..", root / "up")
    usage = walk(str(root))
    assert_matches_du(root, usage)
    assert usage.apparent_bytes == ref_apparent(root) < MB  # link targets' lengths, not the file
    assert usage.files == 7


@pytest.mark.usefixtures("impl")
@pytest.mark.timeout(30)
def test_fifo_and_socket_are_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "t"
    write(root / "f", 100)
    os.mkfifo(root / "fifo")  # opening it for reading would block forever
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(root / "sock"))
        sock.listen(1)
        usage = walk(str(root))
    finally:
        sock.close()
    assert_matches_du(root, usage)
    assert usage.files == 4


def flatten_and_remove_chain(root: Path) -> None:
    """Remove a deep chain of dirs without deep paths or recursion (shutil.rmtree recurses)."""
    cur, n = root, 0
    while True:
        subdirs = [p for p in cur.iterdir() if p.is_dir() and not p.is_symlink()]
        for p in cur.iterdir():
            if p not in subdirs:
                p.unlink()
        if not subdirs:
            break
        n += 1
        nxt = root.parent / f"{root.name}-up{n % 2}"  # not the name `cur` has
        os.rename(subdirs[0], nxt)  # the child moves up: every path stays short
        if cur != root:
            cur.rmdir()
        cur = nxt
    if cur != root:
        cur.rmdir()
    root.rmdir()


@pytest.mark.usefixtures("impl")
def test_deep_tree_beyond_path_max(tmp_path: Path) -> None:
    # 2000 levels of 10-byte names: a 22 kB path, far past PATH_MAX; the walk is fd-relative.
    root = tmp_path / "deep"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(2000):
            name = f"level-{i:04d}"
            with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
                f.write(b"y" * (i % 50))
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(fd)
        before = open_fds()
        usage = walk(str(root))
        assert open_fds() == before
        assert_matches_du(root, usage)
        assert usage.files == 1 + 2000 * 2
        assert usage.apparent_bytes == sum(i % 50 for i in range(2000))
    finally:
        flatten_and_remove_chain(root)


@pytest.mark.usefixtures("impl")
def test_odd_names(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path / "odd")
    os.mkdir(root)
    names = [b"\xff\xfe", b"new\nline", b"with space", "ünïcødé".encode(), "日本語".encode(), b"-dash", b"\\"]
    for i, name in enumerate(names):
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"z" * (100 * (i + 1)))
    sub = os.path.join(root, b"dir\xff\n")
    os.mkdir(sub)
    with open(os.path.join(sub, b"in\xfe"), "wb") as f:
        f.write(b"q" * 9000)
    usage = walk(os.fsdecode(root))
    assert_matches_du(root, usage)
    assert usage.apparent_bytes == ref_apparent(root) == sum(100 * (i + 1) for i in range(len(names))) + 9000
    assert walk(root) == usage  # bytes paths work too
    assert walk(os.fsdecode(root), exclude=frozenset({os.fsdecode(b"dir\xff\n")})).files == usage.files - 2


@pytest.mark.usefixtures("impl")
def test_files_changing_mid_walk(tmp_path: Path) -> None:
    root = tmp_path / "churn"
    for i in range(40):
        for j in range(25):
            write(root / f"d{i}" / f"f{j}", 3000)
    stop = threading.Event()
    failures: list[BaseException] = []

    def churn() -> None:
        try:
            for n in range(30000):
                if stop.is_set():
                    return
                d = root / f"d{n % 40}"
                victim = d / f"f{n % 25}"
                if n % 2:
                    victim.unlink(missing_ok=True)
                else:
                    victim.write_bytes(b"n" * 3000)
                if n % 500 == 0:  # whole directories vanish and come back too
                    extra = root / f"x{n % 3}"
                    if extra.exists():
                        for p in extra.iterdir():
                            p.unlink()
                        extra.rmdir()
                    else:
                        write(extra / "g", 10)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            failures.append(e)

    t = threading.Thread(target=churn)
    t.start()
    try:
        results = [walk(str(root)) for _ in range(30)]
    finally:
        stop.set()
        t.join()
    assert not failures
    # The churn rewrites (truncate, then 3000 bytes) or unlinks only the files f{n % 25} of
    # d{n % 40}; the others keep their 3000 bytes throughout. At most: every file whole, plus
    # the three x*/g of 10 bytes.
    touched = {(n % 40, n % 25) for n in range(30000)}
    untouched = 40 * 25 - len(touched)
    assert untouched > 0
    for u in results:
        assert u.errors == 0 and not u.partial
        assert 1 + 40 + untouched <= u.files <= 1 + 40 + 40 * 25 + 6
        assert untouched * 3000 <= u.apparent_bytes <= 40 * 25 * 3000 + 3 * 10, u
        assert u.disk_bytes > 0
    assert_matches_du(root, walk(str(root)))


@pytest.mark.usefixtures("impl")
def test_exclude_merged(tmp_path: Path) -> None:
    layer = tmp_path / "overlay2" / ("a" * 64)
    write(layer / "diff" / "usr" / "bin" / "tool", 70000)
    write(layer / "merged" / "usr" / "bin" / "tool", 70000)  # stands for the live overlay mount
    (layer / "work" / "work").mkdir(parents=True)
    write(layer / "link", 26)
    usage = walk(str(layer), exclude=frozenset({"merged"}))
    assert_matches_du(layer, usage, "--exclude=merged")
    assert usage.apparent_bytes == ref_apparent(layer, exclude=("merged",)) == 70026
    assert walk(str(layer), exclude=frozenset({"merged/"})) == usage  # normalised
    assert walk(str(layer)).files == usage.files + 4


@pytest.mark.usefixtures("impl")
def test_exclude_is_relative_to_the_root(tmp_path: Path) -> None:
    root = tmp_path / "c"
    write(root / "mounts" / "shm" / "x", 5000)
    write(root / "logs" / "mounts" / "y", 7000)
    usage = walk(str(root), exclude=frozenset({"mounts", "logs/mounts/y"}))
    assert usage.apparent_bytes == 0
    assert usage.files == 1 + 2  # root, logs, logs/mounts
    assert walk(str(root), exclude=frozenset({"mounts"})).apparent_bytes == 7000
    # A NUL cannot be in a name: such an exclude matches nothing (C's strcmp would stop at it).
    assert walk(str(root), exclude=frozenset({"mounts\0zz", "logs\0"})) == walk(str(root))


def test_c_walk_refuses_a_nul_in_an_exclude(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        c_walk().walk(os.fsencode(tmp_path), (b"a\0b",), -1.0)


@pytest.mark.usefixtures("impl")
def test_stays_on_one_filesystem(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", files=20)
    mnt = root / "sub"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "none", str(mnt)], check=True)
    try:
        write(mnt / "on-tmpfs", 8 * MB)
        write(mnt / "deeper" / "more", 1 * MB)
        usage = walk(str(root))
        assert_matches_du(root, usage, "-x")
        assert usage.apparent_bytes < MB
        assert du_bytes(root) > usage.disk_bytes + 8 * MB  # plain du crosses the mount
        assert walk(str(mnt)).apparent_bytes == 9 * MB  # rooted on the tmpfs, it is counted
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.usefixtures("impl")
def test_same_filesystem_bind_mounts_are_walked_once(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", files=30)
    (root / "dup").mkdir()
    (root / "cycle").mkdir()
    before = walk(str(root))
    subprocess.run(["mount", "--bind", str(root / "d1"), str(root / "dup")], check=True)
    try:
        subprocess.run(["mount", "--bind", str(root), str(root / "cycle")], check=True)
        try:
            usage = walk(str(root))
        finally:
            subprocess.run(["umount", str(root / "cycle")], check=True)
        # du skips the cycle too, but counts the duplicate twice; we count each dir inode once
        # (the mount points' own hidden dirs are not visible to either).
        assert usage.files == before.files - 2
        assert usage.apparent_bytes == before.apparent_bytes
        assert usage.errors == 0 and not usage.partial
    finally:
        subprocess.run(["umount", str(root / "dup")], check=True)


# --- walk: edges -----------------------------------------------------------------------


@pytest.mark.usefixtures("impl")
def test_a_dir_whose_entries_take_many_reads(tmp_path: Path) -> None:
    # 3,000 names of 60 bytes are ~250 KB of entries: many reads of the C walk's 32 KiB buffer
    # (getdents64 straight into it), with subdirs among them that later reads list.
    root = tmp_path / "big"
    for i in range(3000):
        name = f"{i:060d}"
        if i % 500 == 250:
            write(root / name / "inside", 5000)
        else:
            write(root / name, i % 5000)
    usage = walk(str(root))
    assert usage.files == 1 + 3000 + 6
    assert_matches_du(root, usage)
    assert usage.apparent_bytes == ref_apparent(root)
    children = du._walk_children(str(tmp_path), ("big",), frozenset(), None, du._native is None)
    assert Usage(*children) == usage


@pytest.mark.usefixtures("impl")
def test_missing_root_and_file_root(tmp_path: Path) -> None:
    assert walk(str(tmp_path / "nope")) == Usage(0, 0, 0, 0, False)
    assert walk(str(tmp_path / "nope" / "deeper")) == EMPTY
    f = write(tmp_path / "f", 4096 * 3)
    assert_matches_du(f, walk(str(f)))
    assert walk(str(f)).apparent_bytes == 4096 * 3
    assert walk(str(tmp_path / "f" / "x")) == EMPTY  # ENOTDIR: as good as missing


@pytest.mark.usefixtures("impl")
def test_deadline_in_the_past_is_partial(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree")
    usage = walk(str(root), deadline=time.monotonic() - 1)
    assert usage.partial is True
    assert walk(str(root), deadline=-5.0) == usage  # below zero too (C reads a negative as none)
    assert usage.files <= du_inodes(root)
    assert walk(str(root), deadline=time.monotonic() + 60).partial is False


def test_deadline_mid_walk_stops_and_closes_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "tree"
    for i in range(30):
        for j in range(40):
            write(root / f"a{i % 5}" / f"b{i}" / f"f{j}", 10)
    full = walk(str(root))
    # C: its test hook makes the 3rd check (after ~768 entries) count as past the deadline.
    before = open_fds()
    in_c = Usage(*c_walk().walk(os.fsencode(root), (), 1e18, 3))
    assert open_fds() == before
    # Python: a clock that ticks once per check, past a deadline of 3.0 at the 3rd.
    clock = iter(range(10**6))
    monkeypatch.setattr(du.time, "monotonic", lambda: float(next(clock)))
    in_python = du.walk_python(str(root), deadline=3.0)
    assert open_fds() == before
    for usage in (in_c, in_python):
        assert usage.partial is True
        assert 0 < usage.files < full.files
        assert usage.disk_bytes < full.disk_bytes and usage.apparent_bytes < full.apparent_bytes
    assert in_c == in_python  # the same entries, in the same order, stop at the same point


# A random tree: nested dirs, files of any size (some sparse), hard links within and across
# dirs, symlinks, fifos, empty dirs; then one of its paths excluded, or none.
_NODE = st.tuples(
    st.sampled_from(["file", "sparse", "link", "symlink", "fifo", "dir"]),
    st.integers(0, 3),  # depth: which of the dirs made so far it goes in
    st.integers(0, 70_000),  # size
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(nodes=st.lists(_NODE, min_size=1, max_size=40), pick=st.integers(0, 1000), excl=st.booleans())
def test_c_and_python_walks_agree_on_random_trees(
    tmp_path: Path, nodes: list[tuple[str, int, int]], pick: int, excl: bool
) -> None:
    c_walk()
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    dirs, files, made = [root], [], []
    for i, (kind, depth, size) in enumerate(nodes):
        parent = dirs[min(depth, len(dirs) - 1)]
        path = parent / f"n{i}"
        if kind == "dir":
            path.mkdir()
            dirs.append(path)
        elif kind == "link" and files:
            os.link(files[size % len(files)], path)
        elif kind == "symlink":
            os.symlink("../" * depth + "n0", path)
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            with open(path, "wb") as f:
                if kind == "sparse":
                    f.truncate(size * 64)
                    f.seek(size)
                f.write(b"d" * (size % 9000))
            files.append(path)
        made.append(path)
    exclude = frozenset({os.path.relpath(made[pick % len(made)], root)}) if excl else frozenset()
    in_c = du.walk(str(root), exclude=exclude)
    assert in_c == du.walk_python(str(root), exclude=exclude)
    if not exclude:
        assert_matches_du(root, in_c)


def test_usage_add() -> None:
    a, b = Usage(1, 2, 3, 0, False), Usage(10, 20, 30, 1, True)
    assert a + b == Usage(11, 22, 33, 1, True)
    assert a + EMPTY == a
    assert sum([a, a], EMPTY) == Usage(2, 4, 6, 0, False)
    # A tuple underneath, but never tuple arithmetic: + sums, * is refused.
    with pytest.raises(TypeError):
        a * 2
    assert a.__add__((1, 2, 3, 4, False)) is NotImplemented
    assert du.total([a, b, a]) == a + b + a == Usage(12, 24, 36, 1, True)
    assert du.total([a, a]).partial is False and du.total([]) == EMPTY


_AS_NOBODY = """
import json, os, sys
from exporter.sources.du import walk  # imported as root: the interpreter's files may be private
os.setgroups([])
os.setresgid(65534, 65534, 65534)
os.setresuid(65534, 65534, 65534)
print(json.dumps([walk(p)._asdict() for p in sys.argv[1:]]))
"""


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    # pytest's tmp dirs are 0700 root: nobody could not even reach a tree there.
    base = Path(tempfile.mkdtemp(prefix="dse-du-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


@pytest.mark.usefixtures("impl")
def test_unreadable_dir_counts_an_error_and_goes_on(world_readable_dir: Path) -> None:
    root = world_readable_dir / "tree"
    write(root / "readable" / "a", 12345)
    write(root / "locked" / "secret" / "b", 50000)
    write(root / "locked" / "c", 6000)
    write(root / "z-after" / "d", 777)
    os.chmod(root / "locked", 0o000)  # root-owned: nobody can neither list nor enter it
    out = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(root), str(root / "locked")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    usage, locked_root = (Usage(**u) for u in json.loads(out.stdout))
    # Rooted at the locked dir: the root's own inode is counted, and the failed open is an error.
    assert locked_root == Usage(os.lstat(root / "locked").st_blocks * 512, 0, 1, 1, False)
    assert usage.errors == 1
    assert usage.apparent_bytes == 12345 + 777
    # Ground truth: du as the same user (it exits 1 for the unreadable dir, but prints the total).
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "du", "-s"]
    disk = subprocess.run([*as_nobody, "--block-size=1", str(root)], capture_output=True, text=True)
    inodes = subprocess.run([*as_nobody, "--inodes", str(root)], capture_output=True, text=True)
    assert disk.returncode == 1 and "Permission denied" in disk.stderr
    assert usage.disk_bytes == int(disk.stdout.split()[0])
    assert usage.files == int(inodes.stdout.split()[0]) == 6  # root, readable, a, locked, z-after, d
    # As root, nothing is hidden.
    assert_matches_du(root, walk(str(root)))


def test_install_without_a_compiler_walks_in_python(tmp_path: Path) -> None:
    """setup.py's extension is optional: with no working C compiler the package still installs,
    and walks in Python with the same figures."""
    repo = Path(__file__).resolve().parents[2]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(repo / name, src / name)
    shutil.copytree(repo / "exporter", src / "exporter", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    target = tmp_path / "site"
    env = {**os.environ, "CC": "/bin/false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("DSE_WALK", None)
    subprocess.run(
        # Build isolation fetches setuptools from the package index, as any user's install does.
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(src)],
        env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert not list(target.rglob("_walk*.so"))
    tree = make_tree(tmp_path / "tree")
    out = subprocess.run(
        [sys.executable, "-c", "import json, sys; from exporter.sources import du;"
         " print(json.dumps([du.WALK_IMPL, du.walk(sys.argv[1])]))", str(tree)],
        env={**env, "PYTHONPATH": str(target)}, cwd=tmp_path, check=True, capture_output=True, text=True,
    )  # fmt: skip
    impl, usage = json.loads(out.stdout)
    assert impl == "python"
    assert Usage(*usage) == walk(str(tree))


# --- Walker ------------------------------------------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for i in range(6):
        out[f"layer:{i}"] = make_tree(tmp_path / f"l{i}", files=10 + 30 * i)
    return out


def test_walker_parallel_equals_per_dir_walks(dirs: dict[str, Path]) -> None:
    jobs = [WalkJob(key, str(path), hint=i) for i, (key, path) in enumerate(dirs.items())]
    with Walker(workers=2) as walker:
        got = walker.run(jobs)
        assert walker.walks == len(jobs)
        assert walker._pool is not None
        assert got == {key: walk(str(path)) for key, path in dirs.items()}
        assert walker.run(jobs, deadline=time.monotonic() + 60) == got  # the pool is reused
        assert walker.walks == 2 * len(jobs)
    assert walker._pool is None
    with Walker(workers=2, python_walk=True) as in_python:  # the workers walk in Python: the same
        assert in_python.run(jobs) == got and in_python._pool is not None


def test_walker_in_process_for_one_worker_or_one_job(dirs: dict[str, Path]) -> None:
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    walker = Walker(workers=1)
    assert walker.run(jobs) == {key: walk(str(path)) for key, path in dirs.items()}
    assert walker.walks == len(jobs) and walker._pool is None
    walker = Walker(workers=4)
    assert walker.run(jobs[:1]) == {jobs[0].key: walk(jobs[0].path)}
    assert walker._pool is None
    assert walker.run([]) == {}
    walker.close()


def spy_submits(walker: Walker) -> list[list[WalkJob]]:
    """The batches the walker's running pool is given from now on, each as it is submitted."""
    pool = walker._pool
    assert pool is not None
    submitted: list[list[WalkJob]] = []
    real_submit = pool.submit

    def spy(fn: object, batch: list[WalkJob], *args: object) -> object:
        submitted.append(batch)
        return real_submit(fn, batch, *args)  # type: ignore[arg-type]

    pool.submit = spy  # type: ignore[method-assign]
    return submitted


def test_walker_small_run_shares_the_walk_with_a_running_pool(dirs: dict[str, Path]) -> None:
    """A small run (every hint known, their sum under local_below) never starts the pool; once
    it is up, the workers get one batch each but one, which this process walks meanwhile."""
    jobs = [WalkJob(key, str(path), hint=1000 + 30 * i) for i, (key, path) in enumerate(dirs.items())]
    want = {key: walk(str(path)) for key, path in dirs.items()}
    with Walker(workers=3) as walker:
        assert walker.run(jobs, local_below=10_000) == want
        assert walker._pool is None and walker.walks == len(jobs)
        assert walker.run(jobs) == want  # a big run starts the pool
        submitted = spy_submits(walker)
        assert walker.run(jobs, local_below=10_000) == want
        assert len(submitted) == 2  # workers - 1 batches; the third share walked here
        sent = {j.key for b in submitted for j in b}
        assert 0 < len(sent) < len(jobs)
        assert walker.walks == 3 * len(jobs)
        # Unknown costs (hint 0) make a run big: every batch goes to the pool.
        submitted.clear()
        assert walker.run([dataclasses.replace(j, hint=0) for j in jobs], local_below=10_000) == want
        assert {j.key for b in submitted for j in b} == set(want)


@pytest.fixture
def walked_here(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Keys of the jobs this process walks itself, by a walk or by their listings (workers
    import du afresh: they go unseen)."""
    here: list[str] = []
    real, real_live = du._safe_walk, du._live_usages

    def spy(job: WalkJob, *args: object) -> Usage:
        here.append(job.key)
        return real(job, *args)  # type: ignore[arg-type]

    def spy_live(trees: LiveTrees, jobs: list[WalkJob], deadline: float | None) -> list[Usage]:
        here.extend(job.key for job in jobs)
        return real_live(trees, jobs, deadline)

    monkeypatch.setattr(du, "_safe_walk", spy)
    monkeypatch.setattr(du, "_live_usages", spy_live)
    return here


def test_walker_tiny_run_walks_here_but_what_is_isolated(
    dirs: dict[str, Path], walked_here: list[str]
) -> None:
    """A small run cheaper than a round trip to the pool (du._SHARE_ABOVE) is walked here even
    with the pool up; its isolated jobs alone go to the workers, spread over them (one hung
    volume does not leave the others unfinished)."""
    jobs = [WalkJob(key, str(path), hint=10 + 30 * i) for i, (key, path) in enumerate(dirs.items())]
    assert sum(j.hint for j in jobs) + du._PER_WALK * len(jobs) < du._SHARE_ABOVE
    want = {key: walk(str(path)) for key, path in dirs.items()}
    with Walker(workers=2) as walker:
        assert walker.run([dataclasses.replace(j, hint=0) for j in jobs]) == want  # starts the pool
        pool = walker._pool
        submitted = spy_submits(walker)
        walked_here.clear()
        assert walker.run(jobs, local_below=10_000) == want
        assert submitted == [] and sorted(walked_here) == sorted(want)
        risky = {jobs[1].key, jobs[4].key}
        walked_here.clear()
        mixed = [dataclasses.replace(j, isolate=j.key in risky) for j in jobs]
        assert walker.run(mixed, local_below=10_000) == want
        assert sorted(len(b) for b in submitted) == [1, 1]  # one each, over both workers
        assert {j.key for b in submitted for j in b} == risky
        assert sorted(walked_here) == sorted(set(want) - risky)
        # Above _SHARE_ABOVE, the same run is shared with the pool again.
        submitted.clear()
        heavy = [dataclasses.replace(j, hint=j.hint + du._SHARE_ABOVE) for j in jobs]
        assert walker.run(heavy, local_below=100_000) == want
        assert len(submitted) == 1 and 0 < len(submitted[0]) < len(jobs)
        assert walker._pool is pool


def test_walker_isolated_jobs_only_walk_in_a_worker(dirs: dict[str, Path], walked_here: list[str]) -> None:
    """A job that may hang (a volume's _data on NFS) never walks in this process when there can
    be a pool: not in a small run's local share, not alone, not before the pool is up."""
    jobs = [WalkJob(key, str(path), hint=10 + 30 * i) for i, (key, path) in enumerate(dirs.items())]
    risky = {jobs[0].key, jobs[3].key}
    jobs = [dataclasses.replace(j, isolate=j.key in risky) for j in jobs]
    want = {key: walk(str(path)) for key, path in dirs.items()}
    with Walker(workers=2) as walker:
        assert walker.run(jobs, local_below=10_000) == want  # small, no pool yet: starts it
        assert walker._pool is not None
        assert walked_here and not risky & set(walked_here)  # the rest: shared with the pool
        walked_here.clear()
        assert walker.run(jobs, local_below=10_000) == want  # small, with the pool up
        assert walked_here and not risky & set(walked_here)
        walked_here.clear()
        assert walker.run(jobs[:1]) == {jobs[0].key: want[jobs[0].key]}  # alone
        assert walked_here == []
    walked_here.clear()
    assert Walker(workers=1).run(jobs) == want  # one worker asked for: everything in-process
    assert set(walked_here) == set(want)


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("python_walk", [False, True])
def test_walker_start_walks_each_child_as_walk_would(tmp_path: Path, workers: int, python_walk: bool) -> None:
    """Walker.start hands a whole dir's children to the workers as one job per share (not one
    per dir): each child comes back as walk() of it with the exclude, keyed by (path, exclude);
    a child gone meanwhile is EMPTY, as walk() says; with one worker nothing is started."""
    area = tmp_path / "snapshots"
    names = []
    for i in range(7):
        make_tree(area / str(i) / "fs", files=5 + i)
        write(area / str(i) / "work" / "w", 100 * i)
        names.append(str(i))
    names.append("gone")
    excl = frozenset({"fs"})
    with Walker(workers=workers, python_walk=python_walk) as walker:
        files = du.ChildWalks(str(area / "1" / "work"), ("w", "nope"))  # a walk of a file: its lstat
        started = walker.start([du.ChildWalks(str(area), tuple(names), excl), files], time.monotonic() + 60)
        assert started.jobs == len(names) + 2
        assert len(started._futures) == 2 * min(workers - 1, len(names))  # a share per free worker
        got = started.children(str(area), excl)
        assert walker.walks == len(names)  # only what was asked for is collected
        assert started.children(str(area), excl) is got  # collected once
        assert started.children(str(area), frozenset()) == {}  # not started: nothing
        stats = started.children(files.path, frozenset())
        assert walker.walks == len(names) + 2
    want = {n: walk(str(area / n), exclude=excl) for n in names}
    assert got == want
    assert want["gone"] == EMPTY and want["3"].apparent_bytes == 300
    assert all(u.files == 3 for n, u in want.items() if n != "gone")  # the dir, work/, w
    assert stats == {"w": du.one_inode(str(area / "1" / "work" / "w")), "nope": EMPTY}
    assert stats["w"].apparent_bytes == 100
    assert not Walker(workers=1).start([du.ChildWalks(str(area), tuple(names), excl)]).jobs
    with Walker(workers=2) as walker:
        assert walker.start([du.ChildWalks(str(area), (), excl)]).jobs == 0  # nothing to hand over


@pytest.mark.parametrize("python", [False, True])
def test_children_of_a_missing_or_file_parent_are_what_walk_says(tmp_path: Path, python: bool) -> None:
    """The C walk of children opens their parent once: where it cannot, each child is still
    what walk() of its path says (a missing parent's child is EMPTY, not an error)."""
    (tmp_path / "file").write_bytes(b"x")
    for parent in (tmp_path / "missing", tmp_path / "file"):
        flat = du._walk_children(str(parent), ("a", "b"), frozenset({"fs"}), None, python)
        assert list(flat) == [*EMPTY, *EMPTY] == [*walk(str(parent / "a")), *walk(str(parent / "b"))]
    tree = make_tree(tmp_path / "t" / "x", files=30)
    flat = du._walk_children(str(tmp_path / "t"), ("x",), frozenset({"d1", "d2/e0"}), None, python)
    assert Usage(*flat[:4], bool(flat[4])) == walk(str(tree), exclude=frozenset({"d1", "d2/e0"}))


def test_walker_start_past_deadline_gives_nothing_partial(tmp_path: Path) -> None:
    """What a worker did not finish is absent from the results: the caller walks it."""
    make_tree(tmp_path / "a" / "x", files=20)
    with Walker(workers=2) as walker:
        started = walker.start([du.ChildWalks(str(tmp_path), ("a",))], deadline=time.monotonic() - 1)
        assert started.jobs == 1 and started.children(str(tmp_path), frozenset()) == {}


def test_walker_survives_a_missing_dir_and_passes_exclude(tmp_path: Path, dirs: dict[str, Path]) -> None:
    layer = tmp_path / "layer"
    write(layer / "diff" / "f", 1000)
    write(layer / "merged" / "f", 1000)
    jobs = [
        WalkJob("gone", str(tmp_path / "does-not-exist")),
        WalkJob("layer", str(layer), frozenset({"merged"})),
        *(WalkJob(key, str(path)) for key, path in dirs.items()),
    ]
    with Walker(workers=2) as walker:
        got = walker.run(jobs)
    assert got["gone"] == EMPTY
    assert got["layer"].apparent_bytes == 1000
    assert set(got) == {j.key for j in jobs}
    assert walker.walks == len(jobs)


def test_walker_recovers_from_a_killed_worker(dirs: dict[str, Path]) -> None:
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    want = {key: walk(str(path)) for key, path in dirs.items()}
    with Walker(workers=2) as walker:
        assert walker.run(jobs) == want
        for proc in list(walker._pool._processes.values()):  # type: ignore[union-attr]
            proc.kill()
            proc.join()
        assert walker.run(jobs) == want  # finished in-process
        assert walker.walks == 2 * len(jobs)
        assert walker.run(jobs) == want  # a fresh pool
        assert walker._pool is not None and walker.walks == 3 * len(jobs)


def test_a_prefetch_whose_workers_die_gives_nothing_and_the_next_run_walks(dirs: dict[str, Path]) -> None:
    """Workers killed under a prefetch: its results are simply absent (never an exception),
    and the run that walks what it lacked gets a fresh pool."""
    parent = next(iter(dirs.values())).parent
    names = tuple(sorted(p.name for p in dirs.values()))
    jobs = [WalkJob(n, str(parent / n)) for n in names]
    want = {n: walk(str(parent / n)) for n in names}
    with Walker(workers=2) as walker:
        assert walker.run(jobs) == want  # the pool is up
        procs = list(walker._pool._processes.values())  # type: ignore[union-attr]
        for p in procs:
            os.kill(p.pid, signal.SIGSTOP)  # they take the job and finish none of it
        started = walker.start([du.ChildWalks(str(parent), names)], time.monotonic() + 60)
        assert started.jobs == len(names)
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
        assert started.children(str(parent), frozenset()) == {}
        assert walker.run(jobs) == want and walker.run(jobs) == want


def run_while_the_workers_die(walker: Walker, jobs: list[WalkJob]) -> dict[str, Usage]:
    """`walker.run(jobs)` with its workers frozen (they take the jobs and finish none of them),
    then killed while the run waits on them."""
    procs = list(walker._pool._processes.values())  # type: ignore[union-attr]
    for p in procs:
        os.kill(p.pid, signal.SIGSTOP)
    got: dict[str, Usage] = {}
    runner = threading.Thread(target=lambda: got.update(walker.run(jobs)))
    runner.start()
    time.sleep(0.3)
    assert runner.is_alive() and not got
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
    runner.join(timeout=60)
    return got


def test_walker_recovers_from_a_worker_killed_mid_run(dirs: dict[str, Path]) -> None:
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    want = {key: walk(str(path)) for key, path in dirs.items()}
    with Walker(workers=2) as walker:
        walker.run(jobs[:2])  # the pool is up
        got = run_while_the_workers_die(walker, jobs)
        assert got == want  # finished in-process
        assert walker.walks == 2 + len(jobs)
        assert walker.run(jobs) == want and walker._pool is not None  # a fresh pool


def test_walker_never_walks_an_isolated_job_here_after_its_worker_died(
    dirs: dict[str, Path], walked_here: list[str]
) -> None:
    """A worker that dies under an isolated job (stuck on a hung mount, then killed) leaves that
    job unfinished: walking it here could hang this process for good. The others are redone."""
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    want = {key: walk(str(path)) for key, path in dirs.items()}
    risky = jobs[2].key
    jobs = [dataclasses.replace(j, isolate=j.key == risky) for j in jobs]
    with Walker(workers=2) as walker:
        walker.run([j for j in jobs if not j.isolate][:2])  # the pool is up
        walked_here.clear()
        got = run_while_the_workers_die(walker, jobs)
        assert got[risky] == Usage(0, 0, 0, 0, True)  # unfinished, not walked here
        assert risky not in walked_here
        assert {k: u for k, u in got.items() if k != risky} == {k: u for k, u in want.items() if k != risky}
        assert walker.run(jobs) == want  # a fresh pool walks it next time


def test_walker_shutdown_mid_run_returns_the_unfinished_as_partial(dirs: dict[str, Path]) -> None:
    """shutdown() from another thread (the daemon stopping) kills the workers and drops the
    queued batches: the run still returns, with what was not walked marked partial."""
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    walker = Walker(workers=2)
    walker.run(jobs[:2])  # the pool is up
    procs = list(walker._pool._processes.values())  # type: ignore[union-attr]
    for p in procs:  # frozen: every batch stays queued or in hand
        os.kill(p.pid, signal.SIGSTOP)
    got: dict[str, Usage] = {}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            got.update(walker.run(jobs, deadline=time.monotonic() + 3))
        except BaseException as e:  # noqa: BLE001 - the assertion below names it
            errors.append(e)

    runner = threading.Thread(target=run)
    runner.start()
    time.sleep(0.3)
    walker.shutdown()
    runner.join(timeout=60)
    assert not runner.is_alive() and errors == []
    assert set(got) == set(dirs)
    assert any(u.partial for u in got.values())
    assert all(u.partial or u == walk(dirs[k]) for k, u in got.items())


def test_walker_after_shutdown_walks_nothing_and_starts_no_pool(dirs: dict[str, Path]) -> None:
    """A run or a prefetch that comes after shutdown() (a sampler's, as the exporter stops)
    starts no pool and walks nothing: every job unfinished."""
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    walker = Walker(workers=2)
    walker.run(jobs[:2])  # the pool is up
    walker.shutdown()
    got = walker.run(jobs)
    assert set(got) == set(dirs) and all(u.partial and u.files == 0 for u in got.values())
    assert walker._pool is None
    assert not walker.start([du.ChildWalks(str(next(iter(dirs.values())).parent), ("a",))]).jobs
    assert walker._pool is None


def test_walker_past_deadline_reports_partial(dirs: dict[str, Path]) -> None:
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    with Walker(workers=2) as walker:
        got = walker.run(jobs, deadline=time.monotonic() - 1)
    assert set(got) == set(dirs)
    assert all(u.partial for u in got.values())


def test_walker_never_raises_for_a_bad_job(dirs: dict[str, Path]) -> None:
    jobs = [WalkJob("bad", None), *(WalkJob(k, str(p)) for k, p in dirs.items())]  # type: ignore[arg-type]
    for workers in (1, 2):
        with Walker(workers=workers) as walker:
            got = walker.run(jobs)
        assert got["bad"] == Usage(0, 0, 0, 1, False)
        assert all(got[k] == walk(str(p)) for k, p in dirs.items())


def test_walker_python_walk_uses_no_c(dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    # bench/scan_vs_du.py times both walks side by side: the Python one must not touch the C one.
    want = {key: walk(str(path)) for key, path in dirs.items()}

    class Refuses:
        def walk(self, *args: object) -> None:
            raise AssertionError("the C walk was called")

    monkeypatch.setattr(du, "_native", Refuses())
    jobs = [WalkJob(key, str(path)) for key, path in dirs.items()]
    assert Walker(workers=1, python_walk=True).run(jobs) == want
    # and without python_walk it is: each job one error, from the refusing stand-in
    assert Walker(workers=1).run(jobs) == {k: Usage(0, 0, 0, 1, False) for k in dirs}


def test_walker_sums_a_repeated_key(dirs: dict[str, Path]) -> None:
    paths = list(dirs.values())[:2]
    got = Walker(workers=1).run([WalkJob("logs", str(p)) for p in paths])
    assert got == {"logs": walk(str(paths[0])) + walk(str(paths[1]))}


def test_batches_balance_by_hint_and_keep_every_job() -> None:
    jobs = [WalkJob(f"j{i}", "/x", hint=h) for i, h in enumerate([100, 1, 1, 50, 50, 0, 0, 0, 3, 2])]
    batches = du._batches(jobs, 3)
    assert sorted(j.key for b in batches for j in b) == sorted(j.key for j in jobs)
    assert batches[0] == [jobs[0]]  # the biggest job alone, first
    assert batches[1][0].key == "j3" and batches[2][0].key == "j4"  # then the two 50s
    assert du._batches(jobs[:2], 8) == [[jobs[0]], [jobs[1]]]
    unknown = [WalkJob(f"u{i}", "/x") for i in range(8)]
    assert [len(b) for b in du._batches(unknown, 4)] == [2, 2, 2, 2]  # no hints: spread by count


def test_walker_measures_small_dirs_here_by_their_settled_listings(
    dirs: dict[str, Path], walked_here: list[str]
) -> None:
    """In this process a job with a small hint is measured by its listing while its dirs hold
    (exporter.sources.livewalk: one lstat an inode), a bigger or an isolated one walked; the
    figures are a walk's either way, and a listing no run asks for is dropped."""
    jobs = [WalkJob(key, str(path), hint=10 + 30 * i) for i, (key, path) in enumerate(dirs.items())]
    big = dataclasses.replace(jobs[0], hint=du._LIVE_AT_MOST + 1)
    risky = dataclasses.replace(jobs[1], isolate=True)
    jobs = [big, risky, *jobs[2:]]
    want = {key: walk(str(path)) for key, path in dirs.items()}
    walker = Walker(workers=1)
    walker.live.settle_ns = 30_000_000
    time.sleep(0.1)  # the trees settle
    assert walker.run(jobs) == want and walker.live.listed == len(jobs) - 2
    (dirs["layer:3"] / "d0" / "e0" / "f0").write_bytes(b"g" * 50_000)  # grown in place: no dir moves
    want["layer:3"] = walk(str(dirs["layer:3"]))
    walked_here.clear()
    assert walker.run(jobs) == want and walker.live.reused == len(jobs) - 2
    assert sorted(walked_here) == sorted(want) and walker.walks == 2 * len(jobs)
    walker.run(jobs[:3])
    assert set(walker.live._listings) == {(j.path, j.exclude) for j in jobs[2:3]}
