"""The trixie Docker 26.1 engines of the harness (tests/harness/trixie.py): both flavours start,
hold the seeded state, keep their mounts out of the host's table, and the real exporter reads
them with --path.rootfs. An engine that cannot start fails these tests (fixture errors), never
skips them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FAST
from tests.harness.exporter import ExporterProcess, Samples, sampled_after, value
from tests.harness.trixie import API_VERSION, chrooted, mounts_under
from tests.harness.trixie_seed import LEAKED_BYTES, LOG_LINES, SeededTrixie, snapshot_ids
from tests.harness.truth import one_df_at_a_time

SNAPSHOTTER = "io.containerd.snapshotter.v1.overlayfs"
# The first test here may debootstrap the trixie rootfs (about 40 s, longer on a slow mirror).
pytestmark = pytest.mark.timeout(900)


def _info(t: SeededTrixie) -> tuple[dict, dict]:
    api = t.engine.api()
    try:
        return api.info(), api.version()
    finally:
        api.close()


def test_cstore_info(trixie_cstore: SeededTrixie) -> None:
    info, version = _info(trixie_cstore)
    assert info["Driver"] == "overlayfs"
    assert ["driver-type", "io.containerd.snapshotter.v1"] in info["DriverStatus"]
    assert version["ApiVersion"] == API_VERSION == "1.45"
    assert version["Version"].startswith("26.1")
    assert info["DockerRootDir"] == trixie_cstore.data_root_inside
    assert trixie_cstore.data_root == trixie_cstore.rootfs / trixie_cstore.data_root_inside.lstrip("/")
    assert trixie_cstore.data_root.is_dir()


def test_overlay2_info(trixie_overlay2: SeededTrixie) -> None:
    info, version = _info(trixie_overlay2)
    assert info["Driver"] == "overlay2"
    assert not any(k == "driver-type" for k, _ in info["DriverStatus"])
    assert version["ApiVersion"] == "1.45"
    assert info["DockerRootDir"] == trixie_overlay2.data_root_inside
    assert (trixie_overlay2.data_root / "image" / "overlay2" / "layerdb" / "sha256").is_dir()


@pytest.mark.parametrize("flavour", ["trixie_cstore", "trixie_overlay2"])
def test_private_namespace_and_own_containerd(flavour: str, request: pytest.FixtureRequest) -> None:
    """The engine's mounts live in its namespace only, and its containerd is its own."""
    t: SeededTrixie = request.getfixturevalue(flavour)
    assert mounts_under(t.rootfs) == []
    ours = [Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0") for p in chrooted(t.rootfs, t.name)]
    config = f"/run/{t.name}/containerd/containerd.toml".encode()  # under its exec root
    assert [c for c in ours if c[0].endswith(b"containerd")] == [[b"containerd", b"--config", config, b""]]
    assert t.engine.containerd_sock.is_socket()
    assert not (t.rootfs / "run" / "containerd" / "containerd.sock").exists()
    # The running containers' overlay rootfs are mounted in there, under R as here.
    findmnt = t.engine.in_namespace(["findmnt", "-rno", "TARGET,FSTYPE"])
    inside = subprocess.run(findmnt, capture_output=True, text=True, check=True).stdout.splitlines()
    overlays = [mp for mp, fstype in (line.split() for line in inside) if fstype == "overlay"]
    assert len([mp for mp in overlays if mp.startswith(f"{t.data_root}/")]) >= 2, inside


@pytest.mark.parametrize("flavour", ["trixie_cstore", "trixie_overlay2"])
def test_system_df_lists_the_seed(flavour: str, request: pytest.FixtureRequest) -> None:
    t: SeededTrixie = request.getfixturevalue(flavour)
    s = t.seed
    api = t.engine.api()
    try:
        df = one_df_at_a_time(api.df)
    finally:
        api.close()
    images = {i["Id"]: i for i in df["Images"]}
    assert set(s.images.values()) | {s.dangling} <= set(images)
    assert images[s.dangling]["RepoTags"] in ([], None, ["<none>:<none>"])
    base = images[s.images["dse-base:latest"]]
    for tag in s.shared_base:
        assert images[s.images[tag]]["SharedSize"] >= base["Size"] * 0.6, tag  # the base layer, at least
    assert s.layers[s.multi_layer] == 3
    a, b = (images[s.images[tag]] for tag in s.loaded)
    assert a["SharedSize"] > 0 and a["SharedSize"] == b["SharedSize"]
    assert df["LayersSize"] > 0

    ctrs = {c["Id"]: c for c in df["Containers"]}
    for name, cid in s.containers.items():
        assert ctrs[cid]["State"] == s.states[name], name
    # overlay2 counts apparent bytes of the upper dir; containerd's Usage counts allocated
    # blocks (dirs included): both at least the bytes written, and not much more.
    rw = ctrs[s.containers[s.rw_container]].get("SizeRw") or 0
    assert s.rw_bytes <= rw < s.rw_bytes + 64 * 1024
    vols = {v["Name"]: v for v in df["Volumes"]}
    for name, size in {**s.volumes_used, **s.volumes_unused}.items():
        assert vols[name]["UsageData"]["Size"] == size, name
    assert vols["dse-vol-used"]["UsageData"]["RefCount"] == 1
    assert vols["dse-vol-unused"]["UsageData"]["RefCount"] == 0
    assert s.build_cache and df["BuildCache"]

    # The json-file log: LOG_LINES lines of a 4-digit number, each a JSON object of ~75 bytes.
    assert s.log_path.stat().st_size == s.log_bytes
    assert LOG_LINES * 60 < s.log_bytes < LOG_LINES * 100

    # Both CLIs read it: trixie's own (1.45) and the host's Debian 20.10 (1.41).
    texts = [one_df_at_a_time(lambda d=d: d("system", "df", "-v")) for d in (t.docker, t.engine.host_docker)]
    for text in texts:
        for needle in ("dse-app", "dse-running", "dse-vol-unused", "Build cache usage"):
            assert needle in text, (needle, text)


def test_cstore_containerd_root(trixie_cstore: SeededTrixie) -> None:
    root = trixie_cstore.containerd_root
    assert root == trixie_cstore.data_root / "containerd" / "daemon"
    assert (root / "io.containerd.metadata.v1.bolt" / "meta.db").is_file()
    overlay = root / SNAPSHOTTER
    assert (overlay / "metadata.db").is_file()
    assert (overlay / "snapshots").is_dir()
    blobs = root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    assert len(list(blobs.iterdir())) >= 10
    ids, _ = snapshot_ids(overlay / "metadata.db")
    assert ids and all(str(n) in {p.name for p in (overlay / "snapshots").iterdir()} for n in ids)

    leaked = trixie_cstore.ensure_leaked()
    assert leaked is not None and leaked.parent == overlay / "snapshots"
    assert int(leaked.name) not in ids
    assert (leaked / "fs" / "leaked.bin").stat().st_size == LEAKED_BYTES == trixie_cstore.seed.leaked_bytes


def _exporter(t: SeededTrixie, tmp_path: Path) -> tuple[ExporterProcess, Samples]:
    started = time.time()
    exp = ExporterProcess(t.docker_host, tmp_path / "exporter.log", [*FAST, "--path.rootfs", str(t.rootfs)])
    exp.start()
    try:
        samples = exp.wait_until(
            sampled_after(started, "engine", "filesystem", "scan"), timeout=60, what=f"samples of {t.name}"
        )
    except BaseException:
        exp.stop()
        raise
    return exp, samples


def test_exporter_on_cstore(trixie_cstore: SeededTrixie, tmp_path: Path) -> None:
    exp, s = _exporter(trixie_cstore, tmp_path)
    try:
        assert value(s, "docker_storage_engine_up") == 1
        info = {"image_store": "containerd", "storage_driver": "overlayfs", "api_version": "1.45"}
        assert value(s, "docker_storage_engine_info", root_dir=trixie_cstore.data_root_inside, **info) == 1
        assert value(s, "docker_storage_root_disk_bytes", dir="containerd") is not None
    finally:
        exp.stop()


def test_exporter_on_overlay2(trixie_overlay2: SeededTrixie, tmp_path: Path) -> None:
    exp, s = _exporter(trixie_overlay2, tmp_path)
    try:
        assert value(s, "docker_storage_engine_up") == 1
        info = {"image_store": "graphdriver", "storage_driver": "overlay2", "api_version": "1.45"}
        assert value(s, "docker_storage_engine_info", **info) == 1
        assert value(s, "docker_storage_layer_attribution_available") == 1
        assert (value(s, "docker_storage_root_disk_bytes", dir="overlay2") or 0) > 0
    finally:
        exp.stop()
