"""bbolt's on-disk format, as the reader needs it: page and meta layouts, the checks on a
meta page, Go's varints, the errors, and the kinds a shape may ask for (exporter.sources.bolt).
Layout facts are from etcd-io/bbolt internal/common/{page,meta}.go, bucket.go and db.go;
native endian, so LE only (amd64, arm64)."""

from __future__ import annotations

import functools
import os
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

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


class BoltError(Exception):
    """The only exception this module raises."""


class Unreadable(BoltError):
    """Cannot be opened or read: missing, permission, a symlink, not a regular file, EIO."""


class Corrupt(BoltError):
    """No valid meta, or a page or element that breaks the format."""


class Inconsistent(BoltError):
    """The writer committed during every try: no consistent view was read."""


# What a shape gives for a plain value: its bytes as UTF-8 text (surrogateescape, so lossless),
# the bytes, or Go's binary.Uvarint / Varint of its first bytes (None when empty or bad).
TEXT, BYTES, UVARINT, VARINT = 1, 2, 3, 4
KEYS = 5  # for a bucket: the frozenset of all its keys (values' and nested buckets'), as text
_BUCKET, _FULL, _ROW = 0, 6, 7  # compiled: a bucket's shape; the whole subtree as read_db reads it; a Row
_VALUE_KINDS = (TEXT, BYTES, UVARINT, VARINT)
_BUCKET_KINDS = (_BUCKET, KEYS, _FULL, _ROW)
# compiled: a kind, or (_BUCKET or _ROW, {name: (its key in the result: text, or the Row's
# index; its node)}, the node for every other key or None)
_Node: TypeAlias = "int | tuple[int, dict[bytes, tuple[str | int, _Node]], _Node | None]"


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
    return _checked(bytes(buf[:_META_END]), index)


@functools.lru_cache(maxsize=16)
def _checked(buf: bytes, index: int) -> _Meta | None:
    """_meta of a page's head: a pure function of its bytes, so a rescan that finds the same
    meta pages (most do: the txid has not moved) does not sum their checksum in Python again."""
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
