"""A read-only reader of bbolt files: containerd's meta.db and overlayfs metadata.db, Docker's
volumes/metadata.db, BuildKit's buildkit/*.db.

Their writer holds an exclusive flock on the file for its whole life, and a restarting writer
waits forever for any lock we hold, so this never locks, maps or writes: it preads the meta
pages, then each page the tree reaches from the newest meta, as far as its elements reach (one
to three preads: its head, the rest of its element array, the rest of its keys and values; not
the whole file, most of whose pages hold a small bucket in a fraction of the page), then the
metas again, like a seqlock. The pages reachable from meta txid T are not
reused before txid T+2 starts (freelist pending pages, released only at the next write tx), so
if the highest valid txid is still T afterwards, what was read is the consistent tree of T.
Layout facts are from etcd-io/bbolt internal/common/{page,meta}.go, bucket.go and db.go;
native endian, so LE only (amd64, arm64).

Two ways to read: `read_db` gives the whole tree as `Bucket`s; `select` reads only the part a
caller names in a `Shape` (which buckets, which values, decoded how) into plain dicts, never
reading the pages of buckets the shape leaves out: containerd's meta.db is ~90 MB for 10,000
snapshots, a page per record, and its callers need a fraction of its values. The walk runs in
C (`_bolt.c`, built by setup.py where a compiler is found) or, the same step for step, in
Python; `BOLT_IMPL` says which (bench/containerd_store.py: ~10x less CPU than the whole tree
in Python was).
"""

from __future__ import annotations

import dataclasses
import gc
import os
import stat
import struct
from collections.abc import Callable, ItemsView, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias, TypeVar

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
_HEAD = 512  # bytes read first of a bucket's root page (less than any page size)

Pread = Callable[[int, int, int], bytes]  # os.pread's signature: (fd, size, offset)
T = TypeVar("T")


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


# -- shapes: what `select` reads --------------------------------------------------------------


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()  # a shape key: every key the bucket's shape does not name
# What a shape gives for a plain value: its bytes as UTF-8 text (surrogateescape, so lossless),
# the bytes, or Go's binary.Uvarint / Varint of its first bytes (None when empty or bad).
TEXT, BYTES, UVARINT, VARINT = 1, 2, 3, 4
KEYS = 5  # for a bucket: the frozenset of all its keys (values' and nested buckets'), as text
_BUCKET, _FULL, _ROW = 0, 6, 7  # compiled: a bucket's shape; the whole subtree as read_db reads it; a Row
_VALUE_KINDS = (TEXT, BYTES, UVARINT, VARINT)
_BUCKET_KINDS = (_BUCKET, KEYS, _FULL, _ROW)


class Row:
    """A bucket's shape that gives a tuple, not a dict: what each named key holds, in the
    order given, None where the bucket has no such key (or one of the other sort). Cheaper
    than a dict for the many small buckets of a record each."""

    def __init__(self, **fields: Shape) -> None:
        self.fields = fields


Shape: TypeAlias = "int | Row | Mapping[Any, Shape]"
"""A bucket's shape is a mapping of key (str as UTF-8, bytes, or ANY) to what to take there: a
value kind for a plain value, a mapping or a Row for a nested bucket (an empty mapping: its
name only, its pages unread), KEYS. A key whose element is of the other sort (a bucket where a
value kind is asked, or the reverse) is left out, as a key the shape does not name is. Keys
come out as text."""

# compiled: a kind, or (_BUCKET or _ROW, {name: (its key in the result: text, or the Row's
# index; its node)}, the node for every other key or None)
_Node: TypeAlias = "int | tuple[int, dict[bytes, tuple[str | int, _Node]], _Node | None]"


def _compile(shape: Shape) -> _Node:
    if isinstance(shape, bool) or not isinstance(shape, int | Row | Mapping):
        raise TypeError(f"not a shape: {shape!r}")
    if isinstance(shape, int):
        if shape not in (*_VALUE_KINDS, KEYS):
            raise ValueError(f"not a shape: {shape!r}")
        return shape
    if isinstance(shape, Row):
        fields = {_b(k): (i, _compile(v)) for i, (k, v) in enumerate(shape.fields.items())}
        return (_ROW, fields, None)
    names: dict[bytes, tuple[str | int, _Node]] = {}
    other: _Node | None = None
    for key, sub in shape.items():
        if key is ANY:
            other = _compile(sub)
        elif isinstance(key, str | bytes):
            names[_b(key)] = (_text(_b(key)), _compile(sub))
        else:
            raise TypeError(f"a shape's key is str, bytes or ANY, not {key!r}")
    return (_BUCKET, names, other)


@dataclass(frozen=True, eq=False)
class Selection:
    txid: int  # changes with every commit: cache what you derive by it
    page_size: int
    tree: dict[str, Any]  # the root bucket, as its shape says


def select(
    path: str | os.PathLike[str],
    shape: Mapping[Any, Shape],
    *,
    pread: Pread = os.pread,
    max_bytes: int = MAX_BYTES,
) -> Selection:
    """The part of the tree at the newest committed txid that `shape` names (the root bucket's
    shape: its keys are the top-level buckets). Only the pages of the buckets it descends into
    are read and checked. `pread` is replaceable for tests."""
    node = _compile(shape)
    txid_, page_size, tree = _read(path, pread, max_bytes, node)
    return Selection(txid_, page_size, tree)


def read_db(path: str | os.PathLike[str], *, pread: Pread = os.pread, max_bytes: int = MAX_BYTES) -> Snapshot:
    """The whole tree at the newest committed txid. `pread` is replaceable for tests."""
    txid_, page_size, tree = _read(path, pread, max_bytes, _FULL)
    return Snapshot(txid_, page_size, _to_bucket(tree))


def _to_bucket(raw: tuple[int, int, dict[bytes, bytes], dict[bytes, Any]]) -> Bucket:
    seq, root, values, buckets = raw
    subs = {k: _to_bucket(v) for k, v in buckets.items()}
    return Bucket(seq, MappingProxyType(values), MappingProxyType(subs), root)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off while a tree or records are built from one: they hold no reference
    cycles, and the GC's passes over them while they grow (tens of thousands of dicts and
    records) were a third of the parse (bench/containerd_store.py)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _read(path: str | os.PathLike[str], pread: Pread, max_bytes: int, node: _Node) -> tuple[int, int, Any]:
    fd = _open(path)
    try:
        with gc_paused():
            for _ in range(TRIES - 1):
                try:
                    return _attempt(fd, pread, max_bytes, node)
                except (Corrupt, Inconsistent):  # a torn meta or page, or the writer moved on
                    pass
            try:
                return _attempt(fd, pread, max_bytes, node)
            except (Corrupt, Inconsistent) as e:
                raise type(e)(f"{path}: {e} (after {TRIES} tries)") from e
    finally:
        os.close(fd)


def _attempt(fd: int, pread: Pread, max_bytes: int, node: _Node) -> tuple[int, int, Any]:
    size, meta = _metas(fd, pread)
    need = meta.hwm * meta.page_size
    if need > size:
        raise Corrupt(f"meta txid {meta.txid} uses {need} bytes, the file has {size}")
    if need > max_bytes:  # a real limit, not a race: BoltError, not retried
        raise BoltError(f"{need} bytes in use, more than the {max_bytes} bytes cap")
    walk_error = tree = None
    try:
        tree = _walk(fd, pread, meta, node)
    except Corrupt as e:
        walk_error = e
    # The seqlock check: a page we read may have been rewritten only once txid T+2 started.
    again = _metas(fd, pread)[1].txid
    if again != meta.txid:
        raise Inconsistent(f"txid moved from {meta.txid} to {again} while reading")
    if walk_error is not None or tree is None:
        raise walk_error or Corrupt("no tree")
    return meta.txid, meta.page_size, tree


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


def maker(cls: type[T]) -> Callable[..., T]:
    """A constructor of `cls`, a frozen slots dataclass whose __init__ only sets its fields,
    called with every field, positionally: what a file's records are made with by the
    thousand. In C it sets the slots as their descriptors do, at a fifth of the cost of
    __init__'s object.__setattr__ per field; without the C walk, it is `cls` itself."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = tuple(f.name for f in fields)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if (
        not params.frozen
        or getattr(cls, "__slots__", None) != names
        or hasattr(cls, "__post_init__")
        or any(not f.init for f in fields)
    ):
        raise TypeError(f"{cls.__name__}: not a frozen slots dataclass whose __init__ only sets its fields")
    return cls if _native is None else _native.maker(cls, names)


def _walk(fd: int, pread: Pread, meta: _Meta, node: _Node) -> Any:
    """The root bucket by `node`, in C where it is built (raw preads when `pread` is os.pread,
    else through it), else in Python; the same result and the same errors either way."""
    if _native is None:
        return _PyWalk(fd, pread, meta).bucket(node, meta.root, meta.sequence, None, 0)
    try:
        return _native.walk(
            fd, None if pread is os.pread else pread, meta.page_size, meta.hwm, meta.root, meta.sequence, node
        )
    except OSError as e:
        raise Unreadable(f"read failed: {e.strerror or e}") from e


_Inline: TypeAlias = "tuple[bytes, int, int]"  # an inline bucket's page: (buffer, start, end)


class _PyWalk:
    """The tree of one meta, page by page as it is reached, checked as it goes: every page is
    read at most once, elements are budgeted by the bytes in use and the bytes of keys and
    values taken likewise, so corrupt input costs at most linear time and memory. _bolt.c does
    the same, step for step."""

    def __init__(self, fd: int, pread: Pread, meta: _Meta) -> None:
        self.fd, self.pread, self.ps, self.hwm = fd, pread, meta.page_size, meta.hwm
        self.seen = bytearray(meta.hwm)  # pgids already read, overflow pages included
        used = meta.hwm * meta.page_size
        self.elements = used // _LEAF.size  # each real element has 16 bytes of its own
        self.copied = used  # and each real key and value its own bytes

    def bucket(self, node: _Node, root: int, seq: int, inline: _Inline | None, depth: int) -> Any:
        """One bucket as `node` says: a dict (text keys), a Row's tuple, KEYS' frozenset, or
        _FULL's (sequence, root, values, buckets) with bytes keys."""
        kind = node if isinstance(node, int) else node[0]
        names, other = (node[1], node[2]) if isinstance(node, tuple) else ({}, None)
        out: dict[Any, Any] = {}
        row: list[Any] = [None] * len(names) if kind == _ROW else []
        values: dict[bytes, bytes] = {}
        keys: list[str] = []
        last = b""
        for buf, flags, k0, k1, v1 in self._leaves(root, inline, depth):
            self.copied -= k1 - k0
            if self.copied < 0:
                raise Corrupt("keys and values larger than the file")
            key = buf[k0:k1]
            if key <= last:  # bbolt keys are non-empty, unique and sorted (node.go put)
                raise Corrupt(f"key {key[:60]!r} out of order after {last[:60]!r}")
            last = key
            if flags not in (0, BUCKET_LEAF):
                raise Corrupt(f"leaf element flags {flags:#x}")
            if kind == KEYS:
                keys.append(_text(key))
                continue
            if kind == _FULL:
                slot: Any = key
                sub: _Node | None = _FULL
            elif key in names:
                slot, sub = names[key]
            elif other is not None:
                slot, sub = _text(key), other
            else:
                continue
            sub_kind = sub if isinstance(sub, int) else sub[0]
            if flags == BUCKET_LEAF:  # bucket.go openBucket
                if sub_kind not in _BUCKET_KINDS:
                    continue
                if v1 - k1 < _INBUCKET.size:
                    raise Corrupt(f"bucket {key[:60]!r}: value of {v1 - k1} bytes")
                sub_root, sub_seq = _INBUCKET.unpack_from(buf, k1)
                if sub_kind == _BUCKET and not sub[1] and sub[2] is None:  # type: ignore[index]
                    got: Any = {}  # its name is all the shape asks: its pages are not read
                else:
                    # root 0: an inline bucket, whose leaf page follows the header in the value
                    span = (buf, k1 + _INBUCKET.size, v1) if sub_root == 0 else None
                    got = self.bucket(sub, sub_root, sub_seq, span, depth + 1)
            elif kind == _FULL or sub_kind in _VALUE_KINDS:
                self.copied -= v1 - k1
                if self.copied < 0:
                    raise Corrupt("keys and values larger than the file")
                if kind == _FULL:
                    values[key] = buf[k1:v1]
                    continue
                got = _decode(sub_kind, buf[k1:v1])
            else:
                continue
            if kind == _ROW:
                row[slot] = got
            else:
                out[slot] = got
        if kind == KEYS:
            return frozenset(keys)
        if kind == _ROW:
            return tuple(row)
        if kind == _FULL:
            return (seq, root, values, out)
        return out

    def _leaves(
        self, pgid: int, inline: _Inline | None, depth: int, whole: bool = False
    ) -> Iterator[tuple[bytes, int, int, int, int]]:
        """(buffer, flags, key start, key end = value start, value end) of the leaf elements
        under a page, in key order. A branch's children are read a whole page at once: they
        are a big bucket's nodes, which bbolt fills to half a page at least (node.go split);
        a bucket's root page is often a small bucket's only page."""
        if depth > MAX_DEPTH:
            raise Corrupt(f"deeper than {MAX_DEPTH}")
        if inline:
            buf, start, end = inline
        else:
            buf, end = self._page(pgid, whole)
            start = 0
        if end - start < _PAGE.size:
            raise Corrupt(f"page of {end - start} bytes")
        _, flags, count, _ = _PAGE.unpack_from(buf, start)
        if flags not in ((LEAF,) if inline else (BRANCH, LEAF)):
            raise Corrupt(f"page {pgid}: flags {flags:#x}")
        self.elements -= count
        first = start + _PAGE.size
        if self.elements < 0 or first + count * _LEAF.size > end:
            raise Corrupt(f"page {pgid}: {count} elements do not fit")
        elements = memoryview(buf)[first : first + count * _LEAF.size]
        e = first  # positions count from the element
        if flags == BRANCH:
            for pos, ksize, child in _BRANCH.iter_unpack(elements):
                if e + pos + ksize > end:
                    raise Corrupt(f"page {pgid}: branch key out of the page")
                yield from self._leaves(child, None, depth + 1, whole=True)
                e += _BRANCH.size
        else:
            for eflags, pos, ksize, vsize in _LEAF.iter_unpack(elements):
                k0 = e + pos
                if k0 + ksize + vsize > end:
                    raise Corrupt(f"page {pgid}: leaf element out of the page")
                yield buf, eflags, k0, k0 + ksize, k0 + ksize + vsize
                e += _LEAF.size

    def _page(self, pgid: int, whole: bool) -> tuple[bytes, int]:
        """Page `pgid` with its overflow pages, checked and marked seen: its bytes as far as
        its elements reach, and the length of its span. Read in up to three steps, as _bolt.c
        does: _HEAD bytes (a whole page if `whole`), then the rest of the element array, then
        the rest of the keys and values: most of meta.db's pages are one small bucket each, in
        a fraction of a page."""
        if not 2 <= pgid < self.hwm:
            raise Corrupt(f"pgid {pgid} outside 2..{self.hwm - 1}")
        if self.seen[pgid]:
            raise Corrupt(f"page {pgid} reached twice")
        at = pgid * self.ps
        buf = _pread_exact(self.fd, self.pread, self.ps if whole else _HEAD, at)
        pid, flags, count, overflow = _PAGE.unpack_from(buf)
        n = 1 + overflow
        if pid != pgid or pgid + n > self.hwm:
            raise Corrupt(f"page {pgid}: header says id {pid}, overflow {overflow}")
        if self.seen.find(1, pgid, pgid + n) != -1:
            raise Corrupt(f"page {pgid} reached twice")
        self.seen[pgid : pgid + n] = b"\x01" * n
        span = n * self.ps
        if flags in (BRANCH, LEAF):  # else _leaves refuses it from the header alone
            array = _PAGE.size + count * _LEAF.size
            buf = self._more(buf, min(array, span), at)
            if flags == LEAF and array <= span:
                e, reach = _PAGE.size, 0
                for _, pos, ksize, vsize in _LEAF.iter_unpack(memoryview(buf)[_PAGE.size : array]):
                    reach = max(reach, e + pos + ksize + vsize)
                    e += _LEAF.size
                buf = self._more(buf, min(reach, span), at)  # past the span: _leaves refuses it
        return buf, span

    def _more(self, buf: bytes, want: int, at: int) -> bytes:
        if want <= len(buf):
            return buf
        return buf + _pread_exact(self.fd, self.pread, want - len(buf), at + len(buf))


def _pread_exact(fd: int, pread: Pread, size: int, offset: int) -> bytes:
    data = _pread(fd, pread, size, offset)
    if len(data) != size:  # the file shrank under us: retried as a torn read
        raise Corrupt(f"short read: {len(data)} of {size} bytes at {offset}")
    return data


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _decode(kind: int, raw: bytes) -> Any:
    if kind == TEXT:
        return _text(raw)
    if kind == BYTES:
        return raw
    if not raw:
        return None
    try:
        return (uvarint if kind == UVARINT else varint)(raw)[0]
    except Corrupt:
        return None


try:
    from exporter.sources import _bolt as _native
except ImportError:  # built without a C compiler (setup.py's extension is optional)
    _native = None
if os.environ.get("DSE_BOLT") == "python":  # to compare, or to rule the C walk out
    _native = None
if _native is not None:
    _native.init(Corrupt)
BOLT_IMPL = "c" if _native is not None else "python"
