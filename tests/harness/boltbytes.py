"""Byte surgery on real bbolt files, for the reader's tests: read and rewrite the two meta
pages (re-summing them, or not), patch a page, move a file to another page size. Written from
etcd-io/bbolt's layout (internal/common/page.go, meta.go), apart from exporter/sources/bolt.py
so that a shared misreading would have to be made twice."""

from __future__ import annotations

import struct
from dataclasses import dataclass

PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
META_AT = 16  # the Meta struct follows the page header
# offsets inside Meta: magic 0, version 4, pageSize 8, flags 12, root 16, sequence 24,
# freelist 32, pgid 40, txid 48, checksum 56
FIELDS = {"magic": (0, "<I"), "version": (4, "<I"), "page_size": (8, "<I"), "root": (16, "<Q"),
          "pgid": (40, "<Q"), "txid": (48, "<Q"), "checksum": (56, "<Q")}  # fmt: skip


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) % (1 << 64)
    return h


@dataclass
class MetaPage:
    index: int
    offset: int
    page_size: int
    pgid: int
    txid: int
    valid: bool


def page_size(data: bytes) -> int:
    return struct.unpack_from("<I", data, META_AT + 8)[0]


def metas(data: bytes, ps: int | None = None) -> list[MetaPage]:
    ps = ps or page_size(data)
    out = []
    for index, offset in ((0, 0), (1, ps)):
        m = offset + META_AT
        size, pgid, txid, checksum = (
            struct.unpack_from(FIELDS[f][1], data, m + FIELDS[f][0])[0]
            for f in ("page_size", "pgid", "txid", "checksum")
        )
        out.append(MetaPage(index, offset, size, pgid, txid, checksum == fnv1a64(data[m : m + 56])))
    return out


def newest(data: bytes) -> MetaPage:
    return max((m for m in metas(data) if m.valid), key=lambda m: m.txid)


def set_meta(data: bytes, index: int, resum: bool = True, ps: int | None = None, **fields: int) -> bytes:
    """The file with meta page `index`'s fields set, its checksum recomputed if `resum`."""
    out = bytearray(data)
    m = (0 if index == 0 else (ps or page_size(data))) + META_AT
    for name, value in fields.items():
        off, fmt = FIELDS[name]
        struct.pack_into(fmt, out, m + off, value)
    if resum:
        struct.pack_into("<Q", out, m + 56, fnv1a64(bytes(out[m : m + 56])))
    return bytes(out)


def break_meta(data: bytes, index: int) -> bytes:
    """A torn meta: one checksum byte off, as a half-written page would be."""
    out = bytearray(data)
    out[(0 if index == 0 else page_size(data)) + META_AT + 56] ^= 0xFF
    return bytes(out)


def page_header(data: bytes, pgid: int, ps: int) -> tuple[int, int, int, int]:
    return PAGE_HEADER.unpack_from(data, pgid * ps)


def set_branch_child(data: bytes, pgid: int, ps: int, element: int, child: int) -> bytes:
    """Point element `element` of branch page `pgid` at page `child` (branchPageElement:
    pos u32, ksize u32, pgid u64)."""
    out = bytearray(data)
    struct.pack_into("<Q", out, pgid * ps + PAGE_HEADER.size + 16 * element + 8, child)
    return bytes(out)


def relayout(data: bytes, new_ps: int) -> bytes:
    """The same database with pages of `new_ps` bytes (a multiple of the old size): page N
    moves to N * new_ps, a span of 1 + overflow old pages shrinks to the new pages it fills;
    element positions are relative to the element, so they hold. The metas say the new size."""
    ps = page_size(data)
    n = len(data) // ps
    ratio = new_ps // ps
    out = bytearray(n * new_ps)
    for p in range(n):
        pid, flags, _, overflow = PAGE_HEADER.unpack_from(data, p * ps)
        span = 1 + overflow if pid == p and flags in (0x01, 0x02, 0x10) and p + 1 + overflow <= n else 1
        if span > ratio:
            raise ValueError(f"page {p} spans {span} pages, more than one new page")
        out[p * new_ps : p * new_ps + span * ps] = data[p * ps : (p + span) * ps]
        if span > 1:
            struct.pack_into("<I", out, p * new_ps + 12, 0)
    for index in (0, 1):
        resum = metas(data)[index].valid
        out = bytearray(set_meta(bytes(out), index, resum=resum, ps=new_ps, page_size=new_ps))
    return bytes(out)
