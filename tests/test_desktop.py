"""Docker Desktop's disk image with the real exporter and the private engine (issue 15).

A fake HOME holds a 64 GiB sparse Docker.raw with 2 GiB written (conftest.desktop_home), at
Desktop for Linux's place: `report` and the families must say 64 GiB apparent and 2 GiB on the
host disk, beside the engine's own figures. With no image, nothing about Desktop appears."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import DESKTOP_IMAGE, FAST
from tests.harness.exporter import ExporterProcess, sampled_after, value

GiB = 1 << 30


def report(engine, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_STORAGE_EXPORTER_")}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "exporter", "report", "--docker.host", engine.host, *args],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip


def on_disk(path: Path) -> int:
    """What `du` says the file holds: the oracle for allocated bytes."""
    out = subprocess.run(["du", "--block-size=1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def test_report_says_64_gib_apparent_and_2_gib_on_the_host_beside_the_engine(engine, seeded, desktop_home):
    image = desktop_home / DESKTOP_IMAGE
    held = on_disk(image)
    assert 2 * GiB <= held < 2 * GiB + (1 << 20)  # the fixture: 2 GiB written, a few metadata blocks

    res = report(engine, desktop_home, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    d = data["desktop"]
    (i,) = d["images"]
    assert (i["path"], i["format"], i["platform"], i["origin"]) == (str(image), "raw", "linux", "default")
    assert i["apparent_bytes"] == 64 * GiB
    assert i["allocated_bytes"] == held
    assert d["host_bytes"] == held
    # Beside the engine's own figures: the same numbers the report's other sections carry.
    inside = d["docker_data"]
    assert inside["images"] == data["images_total"]["used"] > 0
    assert inside["build_cache"] == data["build_cache"]["bytes"]
    assert inside["volumes"] == sum(v["data"]["apparent_bytes"] for v in data["volumes"]) > 0
    assert inside["containers"] is not None and inside["unmeasured"] == []  # this engine's root is visible
    assert inside["total"] == sum(inside[k] for k in ("images", "build_cache", "containers", "volumes"))
    assert [s["command"] for s in d["reclaim"] if s["command"]] == [
        "docker system prune",
        "docker run --privileged --pid=host docker/desktop-reclaim-space",
    ]
    assert {"name": "desktop", "success": True}.items() <= next(
        s for s in data["samplers"] if s["name"] == "desktop"
    ).items()

    res = report(engine, desktop_home)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    section = text[text.index("Docker Desktop's disk image on this host") :]
    row = next(line for line in section.splitlines() if line.startswith(str(image)))
    assert "64.00GiB" in row and "68.72GB" in row  # apparent: the limit, in both units
    assert "2.00GiB" in row and "2.147GB" in row  # on the host disk
    assert "Docker's own data in it (docker system df): images " in section
    assert "docker/desktop-reclaim-space" in section
    assert text.index("What each prune would reclaim") < text.index("Docker Desktop's disk image")


def test_the_families_say_the_same_beside_the_engines(desktop_exporter, desktop_home):
    image = desktop_home / DESKTOP_IMAGE
    s = desktop_exporter.scrape()
    p = str(image)
    assert value(s, "docker_storage_desktop_disk_image_apparent_bytes", path=p) == 64 * GiB
    assert value(s, "docker_storage_desktop_disk_image_allocated_bytes", path=p) == on_disk(image)
    assert value(s, "docker_storage_desktop_disk_image_info", path=p, format="raw", platform="linux") == 1
    fs = os.statvfs(image.parent)
    assert (
        value(s, "docker_storage_desktop_disk_image_filesystem_size_bytes", path=p)
        == fs.f_blocks * fs.f_frsize
    )
    assert value(s, "docker_storage_sampler_success", sampler="desktop") == 1
    assert value(s, "docker_storage_sampler_skipped_items", sampler="desktop") == 0
    # The engine's figures in the same scrape.
    assert value(s, "docker_storage_used_bytes", object="images") > 0
    assert value(s, "docker_storage_used_bytes", object="volumes") is not None


def test_no_desktop_image_nothing_about_desktop_anywhere(engine, seeded, tmp_path):
    home = tmp_path / "home"
    (home / ".docker/desktop").mkdir(parents=True)  # Desktop's dir without its disk image
    res = report(engine, home, "--json")
    assert res.returncode == 0, res.stderr
    assert "desktop" not in res.stdout.lower()
    res = report(engine, home)
    assert res.returncode == 0, res.stderr
    assert "desktop" not in res.stdout.lower()

    started = time.time()
    env = {**os.environ, "HOME": str(home)}
    exp = ExporterProcess(engine.host, tmp_path / "log", [*FAST, "--sampler.desktop.interval", "1s"], env=env)
    exp.start()
    try:
        exp.wait_until(sampled_after(started, "engine", "scan"), timeout=60, what="samples")
        time.sleep(1.5)  # the desktop sampler has run at least once more
        assert "desktop" not in exp.scrape_text().lower()
        assert "desktop" not in exp.get("/")[2].decode().lower()
    finally:
        exp.stop()


def test_a_named_image_that_vanishes_is_counted_and_logged_and_the_exporter_goes_on(engine, seeded, tmp_path):
    image = tmp_path / "Docker.raw"
    with open(image, "wb") as f:
        f.truncate(8 * GiB)
        f.write(b"x" * (1 << 20))
    started = time.time()
    exp = ExporterProcess(
        engine.host,
        tmp_path / "log",
        [*FAST, "--sampler.desktop.interval", "1s", f"--desktop.disk-image={image}"],
        env={**os.environ, "HOME": str(tmp_path)},
    ).start()
    try:
        s = exp.wait_until(sampled_after(started, "desktop"), timeout=30, what="desktop sample")
        assert value(s, "docker_storage_desktop_disk_image_apparent_bytes", path=str(image)) == 8 * GiB
        image.unlink()
        s = exp.wait_until(
            lambda s: (value(s, "docker_storage_sampler_failures_total", sampler="desktop") or 0) >= 2,
            timeout=30,
            what="desktop failures",
        )
        assert value(s, "docker_storage_sampler_success", sampler="desktop") == 0
        # the last good figures stay, with their timestamp, as for every sampler
        assert value(s, "docker_storage_desktop_disk_image_apparent_bytes", path=str(image)) == 8 * GiB
        assert value(s, "docker_storage_engine_up") == 1
        lines = [json.loads(x) for x in exp.tail(200_000).splitlines() if x.startswith("{")]
        failed = [x for x in lines if x.get("event") == "sample failed" and x.get("sampler") == "desktop"]
        assert failed and failed[0]["error"] == f"--desktop.disk-image {image}: No such file or directory"
    finally:
        assert exp.stop() == 0
