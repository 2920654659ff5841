"""The bbolt tree walk in Python: what `_bolt.c` does, step for step, where no compiler built
it (exporter.sources.bolt chooses)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeAlias

from exporter.sources.bolt_format import (
    _BRANCH,
    _BUCKET,
    _BUCKET_KINDS,
    _FULL,
    _HEAD,
    _INBUCKET,
    _LEAF,
    _PAGE,
    _ROW,
    _VALUE_KINDS,
    BRANCH,
    BUCKET_LEAF,
    KEYS,
    LEAF,
    MAX_DEPTH,
    Corrupt,
    Pread,
    _decode,
    _Meta,
    _Node,
    _pread_exact,
    _text,
)

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
