"""The scan in other setups: another storage driver (vfs), the exporter in a container's
view of the host (--path.rootfs), and a Docker root it cannot see."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.conftest import FAST, TEST_ROOT
from tests.harness.engine import PrivateEngine
from tests.harness.exporter import ExporterProcess, sampled_after, value
from tests.harness.seed import busybox_tar
from tests.harness.truth import du, fs_mountpoint

P = "docker_storage_"
LAYER_FAMILIES = ["layers", "layers_size_bytes", "layers_disk_bytes", "layer_size_bytes",
                  "layer_disk_bytes", "layer_files", "layer_images", "driver_disk_bytes",
                  "driver_files", "orphan_dirs", "container_rw_bytes"]  # fmt: skip


@pytest.fixture()
def vfs_engine():
    eng = PrivateEngine(TEST_ROOT / "vfs", storage_driver="vfs")
    eng.start()
    yield eng
    eng.stop()


def test_vfs_driver_reports_dirs_volumes_logs_but_no_layer_attribution(vfs_engine, tmp_path):
    eng = vfs_engine
    eng.docker("import", "-", "dse-vfs:1", input=busybox_tar())
    eng.docker("volume", "create", "dse-vfs-vol")
    eng.docker("run", "--name", "dse-vfs-c", "--network", "none", "-v", "dse-vfs-vol:/data",
               "dse-vfs:1", "sh", "-c", "head -c 40000 /dev/urandom > /data/z; echo logged")  # fmt: skip
    exp = ExporterProcess(eng.host, tmp_path / "log", FAST).start()
    try:
        s = exp.wait_until(sampled_after(time.time(), "scan", "filesystem"), timeout=60, what="scan")
    finally:
        exp.stop()
    ((info, _),) = s[P + "engine_info"]
    assert info["storage_driver"] == "vfs"
    assert value(s, P + "layer_attribution_available") == 0
    for fam in LAYER_FAMILIES:
        assert P + fam not in s, fam  # unavailable, never zeros
    assert value(s, P + "used_bytes", object="containers") is None
    root = eng.data_root
    assert value(s, P + "root_disk_bytes", dir="vfs") == du(root / "vfs")[0]
    assert (
        value(s, P + "volume_disk_bytes", volume="dse-vfs-vol", driver="local")
        == du(root / "volumes" / "dse-vfs-vol")[0]
    )
    cid = eng.docker("inspect", "--format", "{{.Id}}", "dse-vfs-c").strip()
    log = root / "containers" / cid / f"{cid}-json.log"
    assert (
        value(s, P + "container_log_bytes", container="dse-vfs-c", image="dse-vfs:1")
        == os.lstat(log).st_blocks * 512
        > 0
    )
    assert value(s, P + "filesystem_size_bytes", path=str(root), mountpoint=fs_mountpoint(root)) is not None
    assert value(s, P + "sampler_success", sampler="scan") == 1


@pytest.fixture()
def host_root_view():
    """The host's / bind-mounted read-only elsewhere, as `docker run -v /:/host:ro` gives it."""
    view = TEST_ROOT / "hostroot"
    view.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", "/", str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=True)


def test_path_rootfs_maps_host_paths(engine, seeded, exporter, host_root_view, tmp_path):
    exp = ExporterProcess(engine.host, tmp_path / "log", [*FAST, "--path.rootfs", str(host_root_view)])
    exp.start()
    try:
        s = exp.wait_until(sampled_after(time.time(), "scan", "filesystem"), timeout=60, what="scan")
    finally:
        exp.stop()
    direct = exporter.wait_until(sampled_after(time.time(), "scan"), timeout=30, what="scan")
    # Host paths in labels, the same figures as the exporter that sees / directly.
    ((fs_labels, _),) = [x for x in s[P + "filesystem_size_bytes"] if x[0]["path"] == str(engine.data_root)]
    assert fs_labels["mountpoint"] == fs_mountpoint(engine.data_root)
    assert value(s, P + "filesystem_readonly", **fs_labels) == 0  # a read-only bind is not a read-only disk
    # Figures of what does not change on an idle engine; containerd/ and network/ hold
    # databases dockerd may write between the two scans.
    for fam in ("volume_disk_bytes", "layer_disk_bytes", "container_rw_bytes"):
        assert sorted(s[P + fam], key=repr) == sorted(direct[P + fam], key=repr), fam
    for name in ("overlay2", "image", "volumes"):
        assert value(s, P + "root_disk_bytes", dir=name) == value(direct, P + "root_disk_bytes", dir=name)
    assert value(s, P + "driver_disk_bytes", owner="image") == value(
        direct, P + "driver_disk_bytes", owner="image"
    )


def test_docker_root_not_visible_says_so_once_and_engine_metrics_go_on(engine, seeded, tmp_path):
    empty = tmp_path / "not-the-host"
    empty.mkdir()
    exp = ExporterProcess(engine.host, tmp_path / "log", [*FAST, "--path.rootfs", str(empty)]).start()
    try:
        s = exp.wait_until(
            lambda s: (value(s, P + "sampler_runs_total", sampler="scan") or 0) >= 3,
            timeout=30,
            what="3 scans",
        )
    finally:
        exp.stop()
    assert value(s, P + "sampler_available", sampler="scan") == 0
    assert value(s, P + "sampler_success", sampler="scan") == 0
    assert value(s, P + "engine_up") == 1 and value(s, P + "images", state="in_use") == 3
    assert P + "root_disk_bytes" not in s
    lines = [json.loads(x) for x in exp.log.read_text().splitlines() if x.startswith("{")]
    said = [x for x in lines if x.get("event") == "scan unavailable"]
    assert len(said) == 1 and "--path.rootfs" in said[0]["reason"]
