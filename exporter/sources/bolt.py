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

import os
from collections.abc import ItemsView, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias

from exporter.gcpause import cyclic_gc_paused
from exporter.sources.bolt_format import (
    _BUCKET,
    _FULL,
    _ROW,
    _VALUE_KINDS,
    BYTES,
    KEYS,
    TEXT,
    UVARINT,
    VARINT,
    BoltError,
    Corrupt,
    Inconsistent,
    Pread,
    Unreadable,
    _b,
    _Meta,
    _metas,
    _Node,
    _open,
    _text,
    uvarint,
    varint,
)
from exporter.sources.bolt_walk import _PyWalk
from exporter.sources.witness import unwitnessed

MAX_BYTES = 256 << 20  # the files are tens of MB at most (moby/buildkit#6977: 24 MB)
TRIES = 3
__all__ = [  # what callers use; the format's names (bolt_format) among them
    "ANY",
    "BOLT_IMPL",
    "BYTES",
    "KEYS",
    "TEXT",
    "UVARINT",
    "VARINT",
    "BoltError",
    "Bucket",
    "Corrupt",
    "Inconsistent",
    "Pread",
    "Row",
    "Selection",
    "Shape",
    "Snapshot",
    "Unreadable",
    "read_db",
    "select",
    "txid",
    "uvarint",
    "varint",
]  # fmt: skip


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


def _read(path: str | os.PathLike[str], pread: Pread, max_bytes: int, node: _Node) -> tuple[int, int, Any]:
    unwitnessed()  # a file's pages, not a stamp: a store read that needs them is no stand-in
    fd = _open(path)
    try:
        with cyclic_gc_paused():
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


try:
    from exporter.sources import _bolt as _native
except ImportError:  # built without a C compiler (setup.py's extension is optional)
    _native = None
if os.environ.get("DSE_BOLT") == "python":  # to compare, or to rule the C walk out
    _native = None
if _native is not None:
    _native.init(Corrupt)
BOLT_IMPL = "c" if _native is not None else "python"
