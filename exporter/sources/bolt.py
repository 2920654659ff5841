"""A read-only reader of bbolt files: containerd's meta.db and overlayfs metadata.db, Docker's
volumes/metadata.db, BuildKit's buildkit/*.db.

Their writer holds an exclusive flock on the file for its whole life, and a restarting writer
waits forever for any lock we hold, so this never locks, maps or writes: it preads the meta
pages, then the used part of the file (meta pgid * pageSize bytes, one pread), then the metas
again, like a seqlock. The pages reachable from meta txid T are not reused before txid T+2
starts (freelist pending pages, released only at the next write tx), so if the highest valid
txid is still T afterwards, the copy is the consistent tree of T. Layout facts are from
etcd-io/bbolt internal/common/{page,meta}.go, bucket.go and db.go; native endian, so LE only
(amd64, arm64).
"""

from __future__ import annotations

import gc
import os
import stat
import struct
from collections.abc import Callable, ItemsView, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

MAX_BYTES = 256 << 20  # the files are tens of MB at most (moby/buildkit#6977: 24 MB)
TRIES = 3
MAX_DEPTH = 64  # nested buckets + B+tree levels along one path; real files have < 16

MAGIC, VERSION = 0xED0CDAED, 2
BRANCH, LEAF, META = 0x01, 0x02, 0x04  # page.go page flags
BUCKET_LEAF = 0x01  # page.go BucketLeafFlag: the leaf element's value is a nested bucket

_PAGE = struct.Struct("<QHHI")  # page.go Page: id, flags, count, overflow
_META = struct.Struct("<IIII QQ QQQ Q")  # meta.go Meta: magic, version, pageSize, flags,
#   root InBucket{root, sequence}, freelist, pgid (high water), txid, checksum
_SUMMED = 56  # meta.go Sum64: FNV-1a over the Meta fields before checksum
_META_END = _PAGE.size + _META.size
_BRANCH = struct.Struct("<IIQ")  # page.go branchPageElement: pos, ksize, pgid
_LEAF = struct.Struct("<IIII")  # page.go leafPageElement: flags, pos, ksize, vsize
_INBUCKET = struct.Struct("<QQ")  # InBucket: root pgid (0 = inline), sequence

Pread = Callable[[int, int, int], bytes]  # os.pread's signature: (fd, size, offset)


class BoltError(Exception):
    """The only exception this module raises."""


class Unreadable(BoltError):
    """Cannot be opened or read: missing, permission, a symlink, not a regular file, EIO."""


class Corrupt(BoltError):
    """No valid meta, or a page or element that breaks the format."""


class Inconsistent(BoltError):
    """The writer committed during every try: no consistent view was read."""


@dataclass(frozen=True)
class Bucket:
    """One bucket; equal to another with the same content, wherever its pages are."""

    sequence: int  # the bucket's NextSequence counter
    values: Mapping[bytes, bytes]  # plain keys
    buckets: Mapping[bytes, Bucket]  # nested buckets
    root: int = field(default=0, compare=False)  # its root page id; 0 for an inline bucket

    def items(self) -> ItemsView[bytes, bytes]:
        return self.values.items()

    def get(self, key: bytes | str) -> bytes | None:
        return self.values.get(_b(key))

    def bucket(self, *path: bytes | str) -> Bucket | None:
        """The nested bucket at `path` (names as bytes, or str as UTF-8), None if absent."""
        b: Bucket | None = self
        for name in path:
            b = b.buckets.get(_b(name)) if b is not None else None
        return b


@dataclass(frozen=True, eq=False)
class Snapshot:
    txid: int  # changes with every commit: cache what you derive by it
    page_size: int
    root: Bucket  # the top-level buckets are root.buckets

    def bucket(self, *path: bytes | str) -> Bucket | None:
        return self.root.bucket(*path)


def read_db(path: str | os.PathLike[str], *, pread: Pread = os.pread, max_bytes: int = MAX_BYTES) -> Snapshot:
    """The whole tree at the newest committed txid. `pread` is replaceable for tests."""
    fd = _open(path)
    # The tree holds no reference cycles; the cyclic GC's passes over it while it grows (tens of
    # thousands of buckets) are a third of the parse (bench/containerd_store.py).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(TRIES - 1):
            try:
                return _attempt(fd, pread, max_bytes)
            except (Corrupt, Inconsistent):  # a torn meta or page, or the writer moved on
                pass
        try:
            return _attempt(fd, pread, max_bytes)
        except (Corrupt, Inconsistent) as e:
            raise type(e)(f"{path}: {e} (after {TRIES} tries)") from e
    finally:
        if collecting:
            gc.enable()
        os.close(fd)


def _attempt(fd: int, pread: Pread, max_bytes: int) -> Snapshot:
    size, meta = _metas(fd, pread)
    need = meta.hwm * meta.page_size
    if need > size:
        raise Corrupt(f"meta txid {meta.txid} uses {need} bytes, the file has {size}")
    if need > max_bytes:  # a real limit, not a race: BoltError, not retried
        raise BoltError(f"{need} bytes in use, more than the {max_bytes} bytes cap")
    data = _pread(fd, pread, need, 0)
    walk_error = root = None
    try:
        if len(data) != need:
            raise Corrupt(f"short read: {len(data)} of {need} bytes")
        root = _Walk(data, meta).bucket(meta.root, meta.sequence, None, 0)
    except Corrupt as e:
        walk_error = e
    # The seqlock check: a page we read may have been rewritten only once txid T+2 started.
    again = _metas(fd, pread)[1].txid
    if again != meta.txid:
        raise Inconsistent(f"txid moved from {meta.txid} to {again} while reading")
    if walk_error is not None or root is None:
        raise walk_error or Corrupt("no tree")
    return Snapshot(meta.txid, meta.page_size, root)


def txid(path: str | os.PathLike[str], *, pread: Pread = os.pread) -> int:
    """The newest committed txid, from the two meta pages alone (a cheap cache check). A file
    shorter than the pages that meta uses is Corrupt here already, as read_db would find."""
    fd = _open(path)
    try:
        size, meta = _metas(fd, pread)
        need = meta.hwm * meta.page_size
        if need > size:
            raise Corrupt(f"meta txid {meta.txid} uses {need} bytes, the file has {size}")
        return meta.txid
    finally:
        os.close(fd)


def uvarint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """Go's binary.Uvarint at buf[pos:]: (value, position after it)."""
    x = shift = 0
    for i in range(pos, min(len(buf), pos + 10)):  # binary.MaxVarintLen64
        b = buf[i]
        if i - pos == 9 and b > 1:
            break
        x |= (b & 0x7F) << shift
        if b < 0x80:
            return x, i + 1
        shift += 7
    raise Corrupt(f"bad uvarint at {pos}: {bytes(buf[pos : pos + 10]).hex()}")


def varint(buf: bytes, pos: int = 0) -> tuple[int, int]:
    """Go's binary.Varint (zigzag) at buf[pos:]: (value, position after it)."""
    ux, end = uvarint(buf, pos)
    return (~(ux >> 1) if ux & 1 else ux >> 1), end


def _b(name: bytes | str) -> bytes:
    return name.encode() if isinstance(name, str) else name


def _open(path: str | os.PathLike[str]) -> int:
    # O_NOFOLLOW: not through a symlink; O_NONBLOCK: a fifo does not hang the open.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise Unreadable(f"{path}: {e.strerror or e}") from e
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable(f"{path}: not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pread(fd: int, pread: Pread, size: int, offset: int) -> bytes:
    try:
        return pread(fd, size, offset)
    except OSError as e:
        raise Unreadable(f"read failed: {e.strerror or e}") from e


@dataclass(frozen=True)
class _Meta:
    page_size: int
    root: int
    sequence: int
    hwm: int
    txid: int


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _meta(buf: bytes, index: int) -> _Meta | None:
    """meta.go Validate (magic, version, checksum), plus: the page says it is meta page
    `index` (meta.go Write sets id = txid % 2 and the meta flag)."""
    if len(buf) < _META_END:
        return None
    pid, flags, _, _ = _PAGE.unpack_from(buf)
    magic, version, ps, _, root, seq, _, hwm, tx, checksum = _META.unpack_from(buf, _PAGE.size)
    if (pid, flags, magic, version) != (index, META, MAGIC, VERSION):
        return None
    if checksum != _fnv1a64(buf[_PAGE.size : _PAGE.size + _SUMMED]):
        return None
    if ps < 1024 or ps > 1 << 24 or ps & (ps - 1) or not 2 <= root < hwm:
        return None
    return _Meta(ps, root, seq, hwm, tx)


def _metas(fd: int, pread: Pread) -> tuple[int, _Meta]:
    """(file size, the valid meta with the highest txid), as db.go getPageSize and meta() do."""
    try:
        size = os.fstat(fd).st_size
    except OSError as e:
        raise Unreadable(f"fstat failed: {e.strerror or e}") from e
    m0 = _meta(_pread(fd, pread, 4096, 0), 0)
    found = [m0] if m0 else []
    # Meta 1 is at offset pageSize. With meta 0 torn, probe where it can be, as bbolt's
    # getPageSizeFromSecondMeta does (1 KiB << i, up to 16 MiB): at most 15 small reads.
    for pos in [m0.page_size] if m0 else [1024 << i for i in range(15)]:
        if pos + _META_END > size:
            break
        m1 = _meta(_pread(fd, pread, _META_END, pos), 1)
        if m1 and m1.page_size == pos:
            found.append(m1)
            break
    if not found:
        raise Corrupt(f"no valid meta page in {size} bytes")
    return size, max(found, key=lambda m: m.txid)


class _Walk:
    """The tree of one meta over the file's bytes, checked as it goes: every page is visited
    at most once and elements and bytes copied are budgeted by the file size, so corrupt
    input costs at most linear time and memory."""

    def __init__(self, data: bytes, meta: _Meta) -> None:
        self.data, self.ps, self.hwm = data, meta.page_size, meta.hwm
        self.seen = bytearray(meta.hwm)  # pgids already visited, overflow pages included
        self.elements = len(data) // _LEAF.size  # each real element has 16 bytes of its own
        self.copied = len(data)  # and each real key and value its own bytes

    def bucket(self, root: int, seq: int, inline: tuple[int, int] | None, depth: int) -> Bucket:
        values: dict[bytes, bytes] = {}
        buckets: dict[bytes, Bucket] = {}
        last = b""
        for flags, k0, k1, v1 in self._leaves(root, inline, depth):
            key = self._copy(k0, k1)
            if key <= last:  # bbolt keys are non-empty, unique and sorted (node.go put)
                raise Corrupt(f"key {key[:60]!r} out of order after {last[:60]!r}")
            last = key
            if flags == BUCKET_LEAF:  # bucket.go openBucket
                if v1 - k1 < _INBUCKET.size:
                    raise Corrupt(f"bucket {key[:60]!r}: value of {v1 - k1} bytes")
                sub, sub_seq = _INBUCKET.unpack_from(self.data, k1)
                # root 0: an inline bucket, whose leaf page follows the header in the value
                span = (k1 + _INBUCKET.size, v1) if sub == 0 else None
                buckets[key] = self.bucket(sub, sub_seq, span, depth + 1)
            elif flags == 0:
                values[key] = self._copy(k1, v1)
            else:
                raise Corrupt(f"leaf element flags {flags:#x}")
        return Bucket(seq, MappingProxyType(values), MappingProxyType(buckets), root)

    def _leaves(
        self, pgid: int, inline: tuple[int, int] | None, depth: int
    ) -> Iterator[tuple[int, int, int, int]]:
        """(flags, key start, key end = value start, value end) of the leaf elements under a
        page, in key order."""
        if depth > MAX_DEPTH:
            raise Corrupt(f"deeper than {MAX_DEPTH}")
        start, end = inline if inline else self._page(pgid)
        if end - start < _PAGE.size:
            raise Corrupt(f"page of {end - start} bytes")
        _, flags, count, _ = _PAGE.unpack_from(self.data, start)
        if flags not in ((LEAF,) if inline else (BRANCH, LEAF)):
            raise Corrupt(f"page {pgid}: flags {flags:#x}")
        self.elements -= count
        if self.elements < 0 or start + _PAGE.size + count * _LEAF.size > end:
            raise Corrupt(f"page {pgid}: {count} elements do not fit")
        for i in range(count):
            e = start + _PAGE.size + i * _LEAF.size  # positions count from the element
            if flags == BRANCH:
                pos, ksize, child = _BRANCH.unpack_from(self.data, e)
                if e + pos + ksize > end:
                    raise Corrupt(f"page {pgid}: branch key out of the page")
                yield from self._leaves(child, None, depth + 1)
            else:
                eflags, pos, ksize, vsize = _LEAF.unpack_from(self.data, e)
                k0 = e + pos
                if k0 + ksize + vsize > end:
                    raise Corrupt(f"page {pgid}: leaf element out of the page")
                yield eflags, k0, k0 + ksize, k0 + ksize + vsize

    def _page(self, pgid: int) -> tuple[int, int]:
        """The byte span of page `pgid` (1 + overflow pages), checked and marked seen."""
        if not 2 <= pgid < self.hwm:
            raise Corrupt(f"pgid {pgid} outside 2..{self.hwm - 1}")
        start = pgid * self.ps
        pid, _, _, overflow = _PAGE.unpack_from(self.data, start)
        n = 1 + overflow
        if pid != pgid or pgid + n > self.hwm:
            raise Corrupt(f"page {pgid}: header says id {pid}, overflow {overflow}")
        if self.seen.find(1, pgid, pgid + n) != -1:
            raise Corrupt(f"page {pgid} reached twice")
        self.seen[pgid : pgid + n] = b"\x01" * n
        return start, start + n * self.ps

    def _copy(self, a: int, b: int) -> bytes:
        self.copied -= b - a
        if self.copied < 0:
            raise Corrupt("keys and values larger than the file")
        return self.data[a:b]
