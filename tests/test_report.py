"""`docker-storage-exporter report` on the seeded engine shows every object, for a person
and as JSON, with the same numbers the metrics carry."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.harness.seed import RW_BYTES, UNUSED_VOLUME_BYTES


def report(engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", "--docker.host", engine.host, *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture()
def orphan(engine):
    leaked = engine.data_root / "overlay2" / ("ab" * 32)
    (leaked / "diff").mkdir(parents=True)
    (leaked / "diff" / "junk").write_bytes(os.urandom(100_000))
    yield leaked
    shutil.rmtree(leaked)


def test_report_json_has_every_object(engine, seeded, orphan):
    res = report(engine, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["engine"]["root_dir"] == str(engine.data_root)
    assert {i["state"] for i in data["images"]} == {"in_use", "unused", "dangling", "intermediate"}
    assert set(data["root_dirs"]) == set(os.listdir(engine.data_root))
    assert data["layers"] and all(x["disk"]["disk_bytes"] > 0 for x in data["layers"])
    names = {c["name"]: c for c in data["containers"]}
    assert set(seeded.containers) <= set(names)
    assert names["dse-running"]["rw"]["apparent_bytes"] >= RW_BYTES
    vols = {v["name"]: v for v in data["volumes"]}
    assert vols["dse-vol-unused"]["data"]["apparent_bytes"] == UNUSED_VOLUME_BYTES
    assert data["build_cache"]["records"] > 0
    (o,) = data["orphans"]
    assert o["path"] == str(orphan) and o["disk_bytes"] >= 100_000
    commands = {r["command"].split(" (")[0] for r in data["reclaim"]}
    assert {"docker image prune", "docker image prune -a", "docker container prune",
            "docker volume prune", "docker builder prune"} <= commands  # fmt: skip
    assert data["filesystems"][0]["path"] == str(engine.data_root)
    assert all(s["success"] for s in data["samplers"])


def test_report_text_for_a_person(engine, seeded, orphan):
    res = report(engine)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for heading in ("Docker root", "Images (biggest first)", "Biggest layers", "Containers",
                    "Volumes", "Build cache", "Orphaned storage-driver dirs",
                    "What each prune would reclaim"):  # fmt: skip
        assert heading in out, heading
    assert str(orphan) in out and "dse-running" in out and "dse-vol-unused" in out
    assert "free of" in out  # the filesystem's free space
    assert res.stderr == ""  # no progress noise when not on a terminal


def test_report_engine_unreachable_exits_1_with_a_reason(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "exporter", "report", "--docker.host", f"unix://{tmp_path}/none.sock"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    assert "engine not reached" in res.stderr and "No such file" in res.stderr


def test_report_shows_progress_on_a_terminal(engine, seeded):
    """On a TTY the long steps show a ticking status line (on stderr, erased afterwards)."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "report", "--docker.host", engine.host],
            stdout=subprocess.PIPE, stderr=slave, timeout=120,
        )  # fmt: skip
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0
    assert "asking the engine…" in err and "walking the Docker root…" in err
    assert "\x1b[K" in err  # the status line is cleared before the report
    assert "Docker root" in proc.stdout.decode()
