"""exporter.sources.bolt on bbolt files a real containerd wrote: what it reads matches what
`ctr` says, and torn, truncated, fuzzed, looping or racing input gives a BoltError or an
honest view, never another exception, a hang or an unbounded read. The files are made once
per module by a private containerd (stopped before the tests run); tests/test_bolt_real.py
reads them while containerd and dockerd hold them."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.sources import bolt, bolt_format, containerd_meta
from exporter.sources.bolt import (
    ANY,
    KEYS,
    TEXT,
    VARINT,
    BoltError,
    Corrupt,
    Inconsistent,
    Row,
    Unreadable,
    read_db,
    uvarint,
    varint,
)
from tests.harness import BOLT_NOT_BUILT
from tests.harness import boltbytes as bb
from tests.harness import containerd as hc
from tests.harness.engine import default_test_root

TEST_ROOT = Path(os.environ.get("DSE_TEST_ROOT") or default_test_root())
NS = "dse-bolt"
KINDS = {1: "View", 2: "Active", 3: "Committed"}  # core/snapshots/snapshotter.go Kind


@dataclass
class Made:
    before: bytes  # meta.db at txid T
    after: bytes  # meta.db at T+1: one label more
    snaps: bytes  # the overlayfs snapshotter's metadata.db
    images: dict[str, str]  # what ctr said, at `after`
    snapshots: dict[str, tuple[str, str]]
    usage: dict[str, tuple[float, int, int]]
    content: dict[str, dict[str, str]]
    sizes: dict[str, int]  # blob digest -> its length, from `ctr content get`
    dirs: set[str]  # the names under overlayfs/snapshots/
    config: str  # the image config blob's digest


def quiet_copy(path: Path) -> bytes:
    """The file's bytes once containerd has been idle for a moment (its GC runs on its own);
    judged by the copies' own metas, so a reader that blocked could not hang the fixture."""
    for _ in range(50):
        first = bb.newest(path.read_bytes()).txid
        time.sleep(0.2)
        data = path.read_bytes()
        if bb.newest(data).txid == first:
            return data
    raise RuntimeError(f"{path} never quiet")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    ctd = hc.PrivateContainerd(TEST_ROOT / "bolt-unit")
    try:
        ctd.start()
        hc.populate(ctd, NS, tmp_path_factory.mktemp("bolt"))
        config = hc.config_digest(ctd, NS)
        for attempt in range(3):  # one label is one write tx, unless the GC ran in between
            before = quiet_copy(ctd.meta_db)
            ctd.ctr("content", "label", config, f"dse.test/last={attempt}", ns=NS)
            after = quiet_copy(ctd.meta_db)
            if bb.newest(after).txid == bb.newest(before).txid + 1:
                break
        else:
            raise RuntimeError("no single-tx label change in 3 tries")
        blobs = hc.content(ctd, NS)
        sizes = {d: len(subprocess.run([hc.CTR, "-a", str(ctd.address), "-n", NS, "content", "get", d],
                                       capture_output=True, check=True).stdout) for d in blobs}  # fmt: skip
        return Made(
            before, after, quiet_copy(ctd.snapshots_db), hc.images(ctd, NS), hc.snapshots(ctd, NS),
            hc.usage(ctd, NS), blobs, sizes,
            set(os.listdir(ctd.root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots")), config,
        )  # fmt: skip
    finally:
        ctd.stop()


pytestmark = pytest.mark.usefixtures("bolt_walk")  # every test on both walks (tests/conftest.py)


SCRATCH: list[Path] = []  # one dir for the module's throwaway files


@pytest.fixture(scope="module", autouse=True)
def scratch(tmp_path_factory: pytest.TempPathFactory) -> None:
    SCRATCH[:] = [tmp_path_factory.mktemp("bolt-files")]


def put(data: bytes, where: Path | None = None) -> Path:
    path = where or SCRATCH[0] / "x.db"
    path.write_bytes(data)
    return path


def read(data: bytes) -> bolt.Snapshot:
    return read_db(put(data))


class Spy:
    """os.pread, counting the calls: (size, offset) each."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def __call__(self, fd: int, size: int, offset: int) -> bytes:
        self.calls.append((size, offset))
        return os.pread(fd, size, offset)


def text(b: bolt.Bucket) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in b.items()}


# -- real files: what containerd wrote is what ctr reports ---------------------------------


def test_meta_db_is_what_ctr_lists(made: Made) -> None:
    snap = read(made.after)
    assert snap.txid == bb.newest(made.after).txid and snap.page_size == os.sysconf("SC_PAGE_SIZE")
    assert set(snap.root.buckets) == {b"v1"} and snap.bucket("v1", NS) is not None
    ns = snap.bucket("v1", NS)
    assert {k.decode() for k in ns.bucket("images").buckets} == set(made.images) == {hc.TAG}
    for name, digest in made.images.items():
        assert ns.bucket("images", name, "target").get("digest") == digest.encode()
    blobs = ns.bucket("content", "blob")
    # As ctr lists them: the image's four (index, config, two layers), and whatever else the
    # import left at that moment (ctr's oracle is the whole listing, not a count).
    assert {k.decode() for k in blobs.buckets} == set(made.content) and len(made.content) >= 4
    for digest, labels in made.content.items():
        assert text(blobs.bucket(digest, "labels")) == labels
        assert varint(blobs.bucket(digest).get("size"))[0] == made.sizes[digest]
    assert text(blobs.bucket(made.config, "labels"))["dse.test/last"] in {"0", "1", "2"}
    records = ns.bucket("snapshots", "overlayfs")
    assert {k.decode() for k in records.buckets} == set(made.snapshots) and len(made.snapshots) == 4
    for key, (parent, _) in made.snapshots.items():
        assert (records.bucket(key).get("parent") or b"").decode() == parent


def test_the_files_have_branch_overflow_and_inline_pages(made: Made) -> None:
    """The tree is read through each kind of page: a branch page (the 30 big labels), a leaf
    with an overflow page (the 4 KiB label), inline buckets (bucket.go: root 0)."""
    snap = read(made.after)
    ps = snap.page_size
    ns = snap.bucket("v1", NS)
    big = ns.bucket("content", "blob", made.config, "labels")
    assert bb.page_header(made.after, big.root, ps)[1] == 0x01  # a branch page
    assert {k: v for k, v in text(big).items() if k.startswith("dse.test/big.")} == hc.BIG_LABELS
    labels = ns.bucket("images", hc.TAG, "labels")
    assert bb.page_header(made.after, labels.root, ps)[3] >= 1  # overflow pages
    assert text(labels) == hc.OVERFLOW_LABEL
    assert ns.bucket("images", hc.TAG, "target").root == 0  # inline


def test_snapshotter_db_is_what_ctr_lists(made: Made) -> None:
    """v1/snapshots/<backend name>: id (uvarint) is the dir under snapshots/, kind, parent,
    and for Committed ones size and inodes (varints) as `ctr snapshots usage` prints them."""
    meta = read(made.after).bucket("v1", NS, "snapshots", "overlayfs")
    key_of = {rec.get("name"): key.decode() for key, rec in meta.buckets.items()}
    snaps = read(made.snaps).bucket("v1", "snapshots")
    assert set(snaps.buckets) == set(key_of) and len(key_of) == 4
    ids = set()
    for name, rec in snaps.buckets.items():
        key = key_of[name]
        raw = rec.get("id")
        sid, end = uvarint(raw)
        assert end == len(raw)
        ids.add(str(sid))
        assert KINDS[rec.get("kind")[0]] == made.snapshots[key][1]
        parent = made.snapshots[key][0]
        assert key_of.get(rec.get("parent")) == (parent or None)
        if made.snapshots[key][1] == "Committed":
            printed, unit, inodes = made.usage[key]
            assert abs(varint(rec.get("size"))[0] - printed) <= 0.05 * unit
            assert varint(rec.get("inodes"))[0] == inodes
    assert ids == made.dirs  # every dir is a record's id, and no record lacks its dir
    assert snaps.sequence == max(int(i) for i in ids)  # NextSequence hands out the ids


def test_txid_reads_the_two_metas_only(made: Made) -> None:
    spy = Spy()
    assert bolt.txid(put(made.after), pread=spy) == bb.newest(made.after).txid
    assert len(spy.calls) == 2 and all(size <= 4096 for size, _ in spy.calls)


def test_64k_pages(made: Made) -> None:
    """Page size from the meta, not the machine: the same file laid out in 64 KiB pages, as
    arm64 and ppc64le hosts write it. With meta 0 torn, meta 1 is found at 64 KiB."""
    big = bb.relayout(made.after, 65536)
    snap = read(big)
    assert snap.page_size == 65536 and snap.txid == bb.newest(made.after).txid
    assert snap.root == read(made.after).root
    torn = read(bb.break_meta(big, 0))
    assert torn.page_size == 65536 and torn.txid == bb.metas(made.after)[1].txid
    assert torn.root == read(bb.break_meta(made.after, 0)).root


# -- torn and truncated -----------------------------------------------------------------------


def test_a_torn_newest_meta_falls_back_to_the_other(made: Made) -> None:
    """The other meta's tree is intact (its pages are not reused before txid T+2 starts)."""
    torn = bb.break_meta(made.after, bb.newest(made.after).index)
    snap = read(torn)
    older = read(made.before)
    assert snap.txid == older.txid == bb.newest(made.after).txid - 1
    assert snap.root == older.root and snap.root != read(made.after).root


def test_both_metas_torn_is_corrupt(made: Made) -> None:
    torn = bb.break_meta(bb.break_meta(made.after, 0), 1)
    with pytest.raises(Corrupt):
        read(torn)
    with pytest.raises(Corrupt):
        bolt.txid(put(torn))


def test_truncated_anywhere(made: Made) -> None:
    """Short of the pages the newest meta uses: Corrupt. Past them: the whole view."""
    full = read(made.after)
    need = bb.newest(made.after).pgid * full.page_size
    cuts = sorted({*range(0, len(made.after), 509), 1, 15, 16, 79, 80, 4095, 4096, 4176, need - 1, need})
    for cut in cuts:
        path = put(made.after[:cut])
        if cut < need:
            with pytest.raises(Corrupt):
                read_db(path)
        else:
            assert read_db(path).root == full.root


# -- fuzzed: only a BoltError or a view, in bounded time --------------------------------------


def read_or_error(data: bytes) -> bolt.Snapshot | BoltError:
    started = time.monotonic()
    try:
        return read(data)
    except BoltError as e:
        return e
    finally:
        assert time.monotonic() - started < 5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 63), st.booleans(), st.integers(1, 255)),
                min_size=1, max_size=8))  # fmt: skip
def test_flipped_bytes(made: Made, flips: list[tuple[int, int, bool, int]]) -> None:
    """Random bytes xored anywhere, or in page headers and the element arrays after them."""
    data = bytearray(made.after)
    ps = bb.page_size(made.after)
    for where, near, header, xor in flips:
        data[(where % (len(data) // ps)) * ps + near if header else where % len(data)] ^= xor
    result = read_or_error(bytes(data))
    assert isinstance(result, bolt.Snapshot | BoltError)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["root", "pgid", "page_size", "txid"]),
       st.one_of(st.integers(0, 70), st.sampled_from([1023, 1024, 65536, 1 << 24, 1 << 31]),
                 st.integers(0, (1 << 32) - 1)),
       st.booleans())  # fmt: skip
def test_fuzzed_meta_fields_that_pass_the_checksum(made: Made, name: str, value: int, newest: bool) -> None:
    index = bb.newest(made.after).index if newest else 1 - bb.newest(made.after).index
    result = read_or_error(bb.set_meta(made.after, index, **{name: value}))
    assert isinstance(result, bolt.Snapshot | BoltError)


def test_a_branch_page_pointing_back_is_corrupt_not_a_loop(made: Made) -> None:
    snap = read(made.after)
    ps = snap.page_size
    branch = snap.bucket("v1", NS, "content", "blob", made.config, "labels").root
    top = bb.newest(made.after)
    first_child = int.from_bytes(made.after[branch * ps + 16 + 8 : branch * ps + 24 + 8], "little")
    cases = [  # (element, child, why)
        (0, branch, "reached twice"),  # itself
        (0, struct_root(made.after, top.offset), "reached twice"),  # the root of the whole tree
        (1, first_child, "reached twice"),  # a sibling's page: no loop, one page reached twice
        (0, 0, "outside"), (0, 1, "outside"), (0, top.pgid, "outside"), (0, 1 << 40, "outside"),
    ]  # fmt: skip
    for element, child, why in cases:
        spy = Spy()
        started = time.monotonic()
        with pytest.raises(Corrupt, match=why):
            read_db(put(bb.set_branch_child(made.after, branch, ps, element, child)), pread=spy)
        assert time.monotonic() - started < 2
        # 3 tries, each the same reads: the metas, each page it reached once, the metas again
        one = spy.calls[: len(spy.calls) // 3]
        assert spy.calls == one * 3 and one[:2] == one[-2:] == [(4096, 0), (80, ps)]
        firsts = [offset for size, offset in one[2:-2] if offset % ps == 0]
        assert len(firsts) == len(set(firsts)) <= len(made.after) // ps


def test_a_page_naming_another_page_is_corrupt(made: Made) -> None:
    """A page header whose id is not the pgid followed: a stale or half-written page."""
    snap = read(made.after)
    branch = snap.bucket("v1", NS, "content", "blob", made.config, "labels").root
    data = bytearray(made.after)
    data[branch * snap.page_size] ^= 0x40
    with pytest.raises(Corrupt, match="header says id"):
        read(bytes(data))


def test_keys_out_of_order_are_corrupt(made: Made) -> None:
    """bbolt keeps a bucket's keys sorted across its leaves; a torn leaf need not be."""
    data = made.after.replace(b"dse.test/big.05", b"dse.test/big.95")
    assert data != made.after
    with pytest.raises(Corrupt, match="out of order"):
        read(data)


def struct_root(data: bytes, meta_offset: int) -> int:
    return int.from_bytes(data[meta_offset + 16 + 16 : meta_offset + 16 + 24], "little")


# -- the seqlock: retried while the writer commits, given up after 3 tries -------------------


class Versions:
    """A pread over one file version or another: after a call of `size` bytes at `offset`,
    it moves on to the next version if `flip(size, offset)`. `tries`: how many reads began
    with meta 0 (each try reads meta 0, meta 1, the pages, meta 0, meta 1)."""

    def __init__(self, versions: list[bytes], flip: Callable[[int, int], bool]) -> None:
        self.versions, self.flip, self.current, self.calls, self.meta0 = versions, flip, 0, 0, 0

    def __call__(self, fd: int, size: int, offset: int) -> bytes:
        self.calls += 1
        self.meta0 += (size, offset) == (4096, 0)
        out = self.versions[self.current][offset : offset + size]
        if self.flip(size, offset):
            self.current = (self.current + 1) % len(self.versions)
        return out

    @property
    def tries(self) -> int:
        return self.meta0 // 2


class AfterMetas:
    """A flip: True at the first read of a page after the metas, once per try (the writer
    commits while we read the pages); with `at_close_of` N, instead only once, at the closing
    meta 1 of try N (it commits right after we checked)."""

    def __init__(self, ps: int, at_close_of: int = 0) -> None:
        self.ps, self.at_close_of, self.prev, self.meta1 = ps, at_close_of, 0, 0

    def __call__(self, size: int, offset: int) -> bool:
        was, self.prev = self.prev, offset
        if offset == self.ps and size == 80:
            self.meta1 += 1
            return self.at_close_of > 0 and self.meta1 == 2 * self.at_close_of
        return not self.at_close_of and was == self.ps and offset != 0


def padded(made: Made) -> Path:
    return put(made.after + b"\0" * max(0, len(made.before) - len(made.after)))


def test_retries_when_the_txid_moves_while_reading(made: Made) -> None:
    """Metas and pages of T, then the metas say T+1: read again, and return T+1's tree."""
    ps = bb.page_size(made.after)
    once = AfterMetas(ps)
    pread = Versions([made.before, made.after], lambda size, offset: once(size, offset) and pread.tries == 0)
    snap = read_db(padded(made), pread=pread)
    assert snap.txid == bb.newest(made.after).txid and snap.root == read(made.after).root
    assert pread.tries == 2 and pread.current == 1  # T's metas, a page of T, the rest of T+1: again


def test_retries_a_torn_page_then_reads_it_whole(made: Made) -> None:
    """A page caught half-written (here: a branch child pointing back) is retried too."""
    snap = read(made.after)
    branch = snap.bucket("v1", NS, "content", "blob", made.config, "labels").root
    torn = bb.set_branch_child(made.after, branch, snap.page_size, 0, branch)
    pread = Versions([torn, made.after], AfterMetas(snap.page_size, at_close_of=1))
    assert read_db(put(made.after), pread=pread).root == snap.root and pread.tries == 2


def test_gives_up_with_inconsistent_after_three_moving_tries(made: Made) -> None:
    pread = Versions([made.before, made.after], AfterMetas(bb.page_size(made.after)))  # once a try
    with pytest.raises(Inconsistent, match="after 3 tries") as e:
        read_db(padded(made), pread=pread)
    assert isinstance(e.value, BoltError) and pread.tries == 3


def test_too_large_is_refused_without_retrying(made: Made) -> None:
    spy = Spy()
    with pytest.raises(BoltError, match="cap") as e:
        read_db(put(made.after), pread=spy, max_bytes=3 * 4096)
    assert type(e.value) is BoltError and [size for size, _ in spy.calls] == [4096, 80]


# -- read-only, and bad paths -------------------------------------------------------------------


def test_reading_changes_nothing_and_holds_no_lock(made: Made, tmp_path: Path) -> None:
    """Bytes, mtime, ctime and the dir listing stay; every read is on an O_RDONLY |
    O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC fd with no lock of ours in /proc/locks; no fd is
    left open, after an error either."""
    (tmp_path / "ok").mkdir()
    (tmp_path / "torn").mkdir()
    path = put(made.after, tmp_path / "ok" / "meta.db")
    torn = put(bb.break_meta(bb.break_meta(made.after, 0), 1), tmp_path / "torn" / "meta.db")
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))

    def state() -> tuple[object, ...]:
        st = path.stat()
        return path.read_bytes(), st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sorted(os.listdir(path.parent))

    before = state()
    fds = sorted(os.listdir("/proc/self/fd"))
    count = Spy()
    read_db(path, pread=count)
    seen = []

    def spy(fd: int, size: int, offset: int) -> bytes:
        info = dict(
            line.split(":\t") for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()[:4]
        )
        locks = [line for line in Path("/proc/locks").read_text().splitlines() if f" {os.getpid()} " in line]
        seen.append((int(info["flags"], 8), locks))
        return os.pread(fd, size, offset)

    for _ in range(3):
        read_db(path, pread=spy)
        bolt.txid(path, pread=spy)
        with pytest.raises(Corrupt):
            read_db(torn, pread=spy)
    assert state() == before and before[4] == ["meta.db"]
    assert sorted(os.listdir("/proc/self/fd")) == fds
    # a torn meta 0 means probing for meta 1 at 1 KiB << i, as bbolt does: bounded, per try
    probes = sum(1 for i in range(15) if (1024 << i) + 80 <= len(made.after))
    assert len(seen) == 3 * (len(count.calls) + 2 + 3 * (1 + probes))
    want = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for flags, locks in seen:
        assert flags & os.O_ACCMODE == os.O_RDONLY and flags & want == want and not locks


def in_thread(fn: Callable[[], object], timeout: float = 10) -> object:
    box: list[object] = []
    t = threading.Thread(target=lambda: box.append(_catch(fn)), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "blocked"
    return box[0]


def _catch(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - the test looks at what it was
        return e


def test_bad_paths(made: Made, tmp_path: Path) -> None:
    db = put(made.after, tmp_path / "ok.db")
    (tmp_path / "empty.db").write_bytes(b"")
    (tmp_path / "text.db").write_bytes(b"not a bolt file\n" * 1000)
    (tmp_path / "dir.db").mkdir()
    os.mkfifo(tmp_path / "fifo.db")
    (tmp_path / "link.db").symlink_to(db)
    cases = {"missing.db": Unreadable, "empty.db": Corrupt, "text.db": Corrupt, "dir.db": Unreadable,
             "fifo.db": Unreadable, "link.db": Unreadable}  # fmt: skip
    for name, error in cases.items():
        for fn in (read_db, bolt.txid):
            result = in_thread(lambda fn=fn, name=name: fn(tmp_path / name))  # a fifo must not hang
            assert type(result) is error, (name, fn, result)


def test_permission_denied_is_unreadable(made: Made, tmp_path: Path) -> None:
    """As nobody (a forked child), on a root file of mode 0600: root itself reads anything."""
    os.chmod(tmp_path, 0o755)
    db = put(made.after, tmp_path / "meta.db")
    os.chmod(db, 0o600)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            try:
                bolt.read_db(db)
                out = "read it"
            except BaseException as e:  # noqa: BLE001 - the parent looks at what it was
                out = f"{type(e).__name__}: {e}"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    assert out.startswith("Unreadable: ") and "Permission denied" in out, out
    assert stat.S_IMODE(db.stat().st_mode) == 0o600 and db.read_bytes() == made.after


# -- the helpers --------------------------------------------------------------------------------


def test_varints_as_go_encodes_them() -> None:
    """Go's binary.PutUvarint / PutVarint outputs (encoding/binary/varint.go)."""
    assert uvarint(b"\x00") == (0, 1) and uvarint(b"\xac\x02") == (300, 2)
    assert uvarint(b"\xff" * 9 + b"\x01") == ((1 << 64) - 1, 10)
    assert varint(b"\x01") == (-1, 1) and varint(b"\x02") == (1, 1) and varint(b"\x81\x01") == (-65, 2)
    assert varint(b"\xfe" + b"\xff" * 8 + b"\x01") == ((1 << 63) - 1, 10)
    assert varint(b"\xff" * 9 + b"\x01") == (-(1 << 63), 10)
    assert uvarint(b"\x01\x00\x02", 2) == (2, 3)  # the snapshotter's parents/ keys: id 0x00 id
    for bad in (b"", b"\x80", b"\xff" * 9 + b"\x02", b"\xff" * 10):
        with pytest.raises(Corrupt):
            uvarint(bad)


@given(st.integers(0, (1 << 64) - 1))
def test_uvarint_round_trip(x: int) -> None:
    out, v = bytearray(), x
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    assert uvarint(bytes(out) + b"tail") == (x, len(out))


def test_fnv1a64_vectors() -> None:
    """meta.go Sum64 is hash/fnv New64a; the reference vectors for "" and "a"."""
    for f in (bolt_format._fnv1a64, bb.fnv1a64):
        assert f(b"") == 0xCBF29CE484222325 and f(b"a") == 0xAF63DC4C8601EC8C


# -- select: only what a shape names, and the same from either walk ----------------------------


def outcome(fn: Callable[[], object]) -> object:
    """What a call gave: its result, or its error's type and message (which name the file)."""
    try:
        return ("ok", fn())
    except BoltError as e:
        return (type(e).__name__, str(e))


def on_both(fn: Callable[[], object]) -> tuple[object, object]:
    """fn's outcome with the C walk and with the Python walk."""
    native = bolt._native
    if native is None:
        pytest.fail(BOLT_NOT_BUILT)
    c = outcome(fn)
    bolt._native = None
    try:
        return c, outcome(fn)
    finally:
        bolt._native = native


def tree(b: bolt.Bucket) -> tuple[object, ...]:
    """A Bucket as plain values, its pages' ids too (Bucket's == leaves them out)."""
    return (b.sequence, b.root, dict(b.values), {k: tree(v) for k, v in b.buckets.items()})


def records(x: object) -> object:
    """containerd_meta's records as plain values, to compare across walks and readers."""
    if hasattr(x, "__dataclass_fields__"):
        return (type(x).__name__, *(records(getattr(x, f)) for f in x.__dataclass_fields__))
    if hasattr(x, "items"):
        return {k: records(v) for k, v in x.items()}
    return x


def test_a_shape_reads_only_the_pages_it_names(made: Made, bolt_walk: str) -> None:
    path = put(made.after)
    whole, names_only = Spy(), Spy()
    read_db(path, pread=whole)
    top = bolt.select(path, {ANY: {}}, pread=names_only)
    assert top.tree == {"v1": {}} and top.txid == bb.newest(made.after).txid
    assert len(names_only.calls) == 4 + 1  # the metas twice, and the root's page
    ns = {"images": {ANY: Row(target=Row(digest=TEXT, size=VARINT))}, "content": {"blob": KEYS}}
    part = Spy()
    got = bolt.select(path, {"v1": {ANY: ns}}, pread=part).tree["v1"][NS]
    assert 5 < len(part.calls) < len(whole.calls)
    snap = read_db(path)
    blobs = snap.bucket("v1", NS, "content", "blob")
    assert got["content"] == {"blob": frozenset(k.decode() for k in blobs.buckets)}
    for name, rec in snap.bucket("v1", NS, "images").buckets.items():
        target = rec.bucket("target")
        want = (target.get("digest").decode(), varint(target.get("size"))[0])
        assert got["images"][name.decode()] == (want,)


def test_shapes_take_each_sort_as_named(made: Made, bolt_walk: str) -> None:
    """A value kind for a bucket, or a bucket's shape for a value, is left out; a Row's absent
    keys are None; ANY is every key not named; keys and TEXT are UTF-8, surrogateescape."""
    path = put(made.after)
    snap = read_db(path)
    blob = snap.bucket("v1", NS, "content", "blob", made.config)
    shape = {"labels": TEXT, "size": {ANY: TEXT}, "createdat": bolt.BYTES, ANY: VARINT}
    got = bolt.select(path, {"v1": {NS: {"content": {"blob": {made.config: shape}}}}}).tree
    mine = got["v1"][NS]["content"]["blob"][made.config]
    assert mine == {"createdat": blob.get("createdat"), "updatedat": varint(blob.get("updatedat"))[0]}
    row = Row(nothing=TEXT, size=VARINT, labels={"dse.test/last": TEXT})
    got = bolt.select(path, {"v1": {NS: {"content": {"blob": {made.config: row}}}}}).tree
    labels = text(blob.bucket("labels"))
    assert got["v1"][NS]["content"]["blob"][made.config] == (
        None, varint(blob.get("size"))[0], {"dse.test/last": labels["dse.test/last"]}
    )  # fmt: skip
    with pytest.raises(ValueError):
        bolt.select(path, {"v1": 99})


def test_containerd_records_as_from_the_whole_tree(made: Made, bolt_walk: str, tmp_path: Path) -> None:
    """read_metadata and read_snapshots, which read by shape, give what the whole tree gives
    (reference_* below: the records made from read_db's Buckets)."""
    meta, snaps = put(made.after, tmp_path / "meta.db"), put(made.snaps, tmp_path / "metadata.db")
    assert records(containerd_meta.read_metadata(meta)) == records(reference_metadata(meta))
    assert records(containerd_meta.read_snapshots(snaps)) == records(reference_snapshots(snaps))
    ns = containerd_meta.read_metadata(meta).namespaces[NS]
    assert set(ns.images) == set(made.images) and set(ns.blobs) == set(made.content)
    got = containerd_meta.read_blob_labels(meta, {NS: sorted(ns.blobs), "no-such-ns": ["sha256:0"]})
    assert got.txid == containerd_meta.read_metadata(meta).txid
    assert {d: dict(labels) for d, labels in got.labels[NS].items()} == made.content
    assert set(got.labels) == {NS}  # what is not recorded is left out
    one = containerd_meta.read_blob_labels(meta, {NS: [made.config, "sha256:" + "0" * 64]}).labels[NS]
    assert {d: dict(labels) for d, labels in one.items()} == {made.config: made.content[made.config]}


def test_blob_kinds_by_labels_read_for_the_unreached_only(made: Made, tmp_path: Path) -> None:
    """The blobs no manifest reaches get their kind from their labels, read from the real
    meta.db for those blobs alone: each kind as the GC labels that ctr lists say."""
    from exporter.stores.containerd import META_DB, ContainerdReader
    from exporter.stores.content import _blob_kind

    croot = tmp_path / "croot"
    (croot / META_DB).parent.mkdir(parents=True)
    meta = containerd_meta.read_metadata(put(made.after, croot / META_DB))
    reached = {made.config: "config"}  # as if a manifest named the config, and no other blob
    reads: list[dict[str, list[str]]] = []
    real = containerd_meta.read_blob_labels

    def spy(path: str, wanted: dict[str, list[str]]) -> containerd_meta.BlobLabels:
        reads.append(wanted)
        return real(path, wanted)

    containerd_meta.read_blob_labels = spy  # type: ignore[assignment]
    try:
        keys = ContainerdReader()._blob_labels(str(croot), meta, reached)
    finally:
        containerd_meta.read_blob_labels = real  # type: ignore[assignment]
    others = sorted(set(made.content) - {made.config})
    assert reads == [{NS: others}]
    assert keys == {d: frozenset(made.content[d]) for d in others}
    recorded = frozenset(made.content)
    kinds = {d: _blob_kind(d, recorded, reached, keys) for d in made.content}
    assert kinds[made.config] == "config"
    for d in others:  # the rule, from the labels as ctr lists them
        labels = made.content[d]
        want = (
            "layer" if "containerd.io/uncompressed" in labels
            else "config" if any(k.startswith("containerd.io/gc.ref.snapshot.") for k in labels)
            else "manifest" if any(k.startswith("containerd.io/gc.ref.content.") for k in labels)
            else "other"
        )  # fmt: skip
        assert kinds[d] == want
    assert {"layer", "manifest"} <= set(kinds.values())  # the index's and the layers' labels
    assert _blob_kind("sha256:" + "0" * 64, recorded, reached, keys) == "unreferenced"
    assert ContainerdReader()._blob_labels(str(croot), meta, dict.fromkeys(made.content, "x")) == {}
    put(made.after[: len(made.after) // 2], croot / META_DB)  # torn since: the scan fails, counted
    reader = ContainerdReader()
    for _ in range(2):
        with pytest.raises(BoltError):
            reader._blob_labels(str(croot), meta, reached)
    assert reader._errors == {"meta.db": 2} and reader._failing == {"blob labels"}


def fuzzed(data: bytes, flips: list[tuple[int, int, bool, int]]) -> bytes:
    out = bytearray(data)
    ps = bb.page_size(data)
    for where, near, header, xor in flips:
        out[(where % (len(out) // ps)) * ps + near if header else where % len(out)] ^= xor
    return bytes(out)


FLIPS = st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 600), st.booleans(), st.integers(1, 255)),
                 min_size=1, max_size=6)  # fmt: skip


class TestBothWalks:
    """Tests that compare the two walks themselves: run once, not once per walk."""

    @pytest.fixture(autouse=True)
    def bolt_walk(self) -> str:  # the conftest's, overridden: the C walk stays in place here
        return "both"

    @settings(max_examples=150, deadline=None)
    @given(FLIPS, st.booleans())
    def test_c_and_python_walks_agree_on_fuzzed_files(self, made: Made, flips: list, snaps: bool) -> None:
        """Byte for byte the same result, or the same error with the same message, from either
        walk: the whole tree, and containerd's records."""
        path = put(fuzzed(made.snaps if snaps else made.after, flips))
        c, py = on_both(lambda: tree(read_db(path).root))
        assert c == py
        reader = containerd_meta.read_snapshots if snaps else containerd_meta.read_metadata
        c, py = on_both(lambda: records(reader(path)))
        assert c == py


@settings(max_examples=150, deadline=None)
@given(FLIPS, st.booleans())
def test_records_by_shape_or_from_the_whole_tree_on_fuzzed(made: Made, flips: list, snaps: bool) -> None:
    """Where the whole tree reads, the records by shape are the same; where the shape's part
    is broken, the whole tree is broken too (the shape reads a part of what read_db reads)."""
    path = put(fuzzed(made.snaps if snaps else made.after, flips))
    mine, ref = containerd_meta.read_snapshots, reference_snapshots
    if not snaps:
        mine, ref = containerd_meta.read_metadata, reference_metadata
    got, want = outcome(lambda: records(mine(path))), outcome(lambda: records(ref(path)))
    if want[0] == "ok":
        assert got == want
    if got[0] != "ok":
        assert want[0] != "ok"


def test_records_made_without_init_are_the_same(bolt_walk: str) -> None:
    from types import MappingProxyType

    from exporter.records import maker
    from exporter.sources.containerd_meta import Lease, SnapshotRecord

    make = maker(SnapshotRecord)
    made_one = make(7, "moby/3/sha256:x", 3, "", 4096, 2)
    plain = SnapshotRecord(7, "moby/3/sha256:x", 3, "", 4096, 2)
    assert made_one == plain and hash(made_one) == hash(plain) and repr(made_one) == repr(plain)
    assert type(made_one) is SnapshotRecord and made_one.key == "sha256:x" and made_one.namespace == "moby"
    with pytest.raises(AttributeError):
        made_one.size = 1  # type: ignore[misc]
    lease = maker(Lease)("l", MappingProxyType({"a": "b"}), frozenset({"k"}), frozenset())
    assert lease == Lease("l", MappingProxyType({"a": "b"}), frozenset({"k"}), frozenset())
    with pytest.raises(TypeError):
        make(1, 2)
    for cls in (bolt.Snapshot, bolt.Bucket, Made):  # not frozen, not slots, or neither
        with pytest.raises(TypeError):
            maker(cls)


def reference_snapshots(path: Path) -> containerd_meta.Snapshots:
    """metadata.db's records from read_db's whole tree, as containerd_meta made them before
    it read by shape."""
    from types import MappingProxyType

    db = read_db(path)
    snaps = db.bucket("v1", "snapshots")
    if snaps is None:
        if db.bucket("v1") is None and not db.root.buckets:
            return containerd_meta.Snapshots(db.txid, {}, {})
        raise containerd_meta.UnknownSchema(f"{path}: no v1/snapshots bucket")
    by_id = {}
    for name, b in snaps.buckets.items():
        raw_id, kind = b.get("id"), b.get("kind")
        if not raw_id or not kind:
            continue
        try:
            sid = uvarint(raw_id)[0]
        except BoltError:
            continue
        size, inodes = _varint(b.get("size")), _varint(b.get("inodes"))
        parent = _text(b.get("parent"))
        by_id[sid] = containerd_meta.SnapshotRecord(sid, _text(name), kind[0], parent, size, inodes)
    return containerd_meta.Snapshots(
        db.txid, MappingProxyType(by_id), MappingProxyType({r.backend: r for r in by_id.values()})
    )


def reference_metadata(path: Path, snapshotter: str = "overlayfs") -> containerd_meta.Metadata:
    """meta.db's records from read_db's whole tree, as containerd_meta made them before it
    read by shape."""
    from types import MappingProxyType

    cm = containerd_meta
    db = read_db(path)
    v1 = db.bucket("v1")
    if v1 is None:
        if not db.root.buckets:
            return cm.Metadata(db.txid, 0, {})
        raise cm.UnknownSchema(f"{path}: no v1 bucket")
    version = _varint(v1.get("version"))
    if version not in cm.KNOWN_VERSIONS:
        raise cm.UnknownSchema(f"{path}: schema version {version}, not one of {cm.KNOWN_VERSIONS}")
    empty = bolt.Bucket(0, MappingProxyType({}), MappingProxyType({}))

    def labels(b: bolt.Bucket | None) -> MappingProxyType[str, str]:
        return MappingProxyType({_text(k): _text(v) for k, v in b.items()} if b else {})

    def names(b: bolt.Bucket | None) -> frozenset[str]:
        return frozenset(_text(k) for k in b.buckets) if b is not None else frozenset()

    def keys(b: bolt.Bucket | None) -> frozenset[str]:
        return frozenset(_text(k) for k in b.values) | names(b) if b is not None else frozenset()

    namespaces = {}
    for raw, ns in v1.buckets.items():
        images = {}
        for name, img in (ns.bucket("images") or empty).buckets.items():
            target = img.bucket("target")
            digest = _text(target.get("digest")) if target is not None else ""
            if digest:
                images[_text(name)] = digest
        snapshots = {
            _text(k): cm.NamespacedSnapshot(_text(k), _text(b.get("name")))
            for k, b in (ns.bucket("snapshots", snapshotter) or empty).buckets.items()
        }
        blobs = keys(ns.bucket("content", "blob"))
        leases = {
            _text(k): cm.Lease(_text(k), labels(b.bucket("labels")), keys(b.bucket("snapshots", snapshotter)),
                               keys(b.bucket("content")))
            for k, b in (ns.bucket("leases") or empty).buckets.items()
        }  # fmt: skip
        namespaces[_text(raw)] = cm.Namespace(
            _text(raw), MappingProxyType(images), MappingProxyType(snapshots), blobs,
            MappingProxyType(leases), names(ns.bucket("content", "ingests")), names(ns.bucket("containers")),
        )  # fmt: skip
    return cm.Metadata(db.txid, version, MappingProxyType(namespaces))


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", "surrogateescape") if raw else ""


def _varint(raw: bytes | None) -> int | None:
    try:
        return varint(raw)[0] if raw else None
    except BoltError:
        return None
