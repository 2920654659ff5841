"""exporter.sources.rawfs: a store's small files read without following links, waiting on
fifos, or paying for a buffer the size of the limit; the cyclic GC's pause over a scan."""

from __future__ import annotations

import gc
import os
import tracemalloc
from pathlib import Path

import pytest

from exporter.gcpause import cyclic_gc_paused
from exporter.sources.rawfs import read_regular


def test_read_regular_reads_the_whole_file_and_one_byte_past_the_limit(tmp_path: Path) -> None:
    f = tmp_path / "manifest.json"
    f.write_bytes(b'{"a": 1}')
    assert read_regular(str(f), 1 << 20) == b'{"a": 1}'
    assert read_regular(str(f), 8) == b'{"a": 1}'  # exactly the limit: whole
    assert read_regular(str(f), 5) == b'{"a": '  # past it: limit + 1 bytes, "too big" to the caller
    (tmp_path / "empty").write_bytes(b"")
    assert read_regular(str(tmp_path / "empty"), 10) == b""
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_regular("manifest.json", 100, dir_fd=fd) == b'{"a": 1}'
    finally:
        os.close(fd)


def test_read_regular_allocates_for_the_file_not_the_limit(tmp_path: Path) -> None:
    """A buffered read(limit) allocates all of `limit` per file: for a thousand manifests
    under a 4 MiB limit, most of their reading."""
    f = tmp_path / "config.json"
    f.write_bytes(b"x" * 3000)
    tracemalloc.start()
    try:
        read_regular(str(f), 16 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 10


def test_read_regular_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.write_bytes(b"secret")
    os.symlink(target, tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")  # opened O_NONBLOCK: never waited on
    (tmp_path / "dir").mkdir()
    for name in ("link", "fifo", "dir", "missing"):
        with pytest.raises(OSError):
            read_regular(str(tmp_path / name), 100)


def test_gc_pause_leaves_no_young_pass_pending() -> None:
    """What a pause made goes to the oldest generation: leaving it starts no pass that walks
    every record the scan made (bench/containerd_store.py), and the collector is back on."""
    assert gc.isenabled()
    gc.collect()
    passes: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
            kept = [[i] for i in range(100_000)]  # tracked containers, as a scan's records
        assert gc.isenabled()
        oldest = gc.get_objects(generation=2)  # allocates: a young pass due would run here
    finally:
        gc.callbacks.remove(seen)
    assert passes == []
    assert any(o is kept[0] for o in oldest) and any(o is kept[-1] for o in oldest)
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # a full pass still finds what the pause let through


def test_gc_pause_nested_and_with_the_collector_off() -> None:
    with cyclic_gc_paused():
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
