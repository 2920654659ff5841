"""The scan's figures against ground truth on the same paths: `du` for allocated bytes and
inodes, Docker's own recorded sizes and `/system/df` for apparent bytes.

Tolerance: none. The seeded engine is idle while these run (its one running container
sleeps), so the same tree gives the same figures; each test first waits for a scan that
started after it did.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from tests.harness.exporter import sampled_after, value
from tests.harness.seed import PAUSED_RW_BYTES, RW_BYTES, UNUSED_VOLUME_BYTES, USED_VOLUME_BYTES
from tests.harness.truth import cli_df_summary, du, human_size, system_df

P = "docker_storage_"


def fresh(exporter):
    return exporter.wait_until(sampled_after(time.time(), "scan"), timeout=30, what="a fresh scan")


def layerdb(root: Path) -> dict[str, dict[str, str]]:
    """diff ID -> {cache-id, size} read straight from disk."""
    base = root / "image" / "overlay2" / "layerdb" / "sha256"
    out = {}
    for d in base.iterdir():
        diff = (d / "diff").read_text().strip()
        out[diff] = {
            "cache_id": (d / "cache-id").read_text().strip(),
            "size": (d / "size").read_text().strip(),
        }
    return out


def test_root_dirs_equal_du(engine, exporter):
    root = engine.data_root
    names = sorted(os.listdir(root))
    # containerd/, network/ and buildkit/ hold databases dockerd may write at any moment: a
    # dir may change between our scan and du. Each dir must match exactly in one of three
    # tries, each a fresh scan followed at once by du.
    pending = set(names)
    for _ in range(3):
        s = fresh(exporter)
        got = {
            lbl["dir"]: (v, value(s, P + "root_files", dir=lbl["dir"])) for lbl, v in s[P + "root_disk_bytes"]
        }
        assert sorted(got) == names
        for name in sorted(pending):
            # We never enter live mounts (overlay2/*/merged, containers/*/mounts); -x does the
            # same for mounted ones, --exclude for the empty mount points.
            opts = {"overlay2": ("--exclude=merged",), "containers": ("--exclude=mounts",)}.get(name, ())
            if got[name] == du(root / name, *opts):
                pending.discard(name)
        if not pending:
            break
    assert not pending, {n: (got[n], du(root / n)) for n in pending}


def test_layers_equal_du_and_docker_recorded_size(engine, exporter):
    s = fresh(exporter)
    truth = layerdb(engine.data_root)
    assert value(s, P + "layers") == len(truth)
    assert value(s, P + "layers_size_bytes") == sum(int(t["size"]) for t in truth.values())
    total = 0
    for diff, t in truth.items():
        d12 = diff.split(":")[1][:12]
        disk, inodes = du(engine.data_root / "overlay2" / t["cache_id"])
        total += disk
        assert value(s, P + "layer_disk_bytes", diff_id=d12) == disk
        assert value(s, P + "layer_files", diff_id=d12) == inodes
        assert value(s, P + "layer_size_bytes", diff_id=d12) == int(t["size"])
    assert value(s, P + "layers_disk_bytes") == total


def test_layer_images(engine, exporter):
    s = fresh(exporter)
    # dse-base's only layer is in every image built FROM it: base, app (+2 intermediate),
    # old (+ the dangling one), bk.
    api = engine.api()
    try:
        base = api.inspect_image("dse-base:latest")["RootFS"]["Layers"][0]
    finally:
        api.close()
    assert value(s, P + "layer_images", diff_id=base.split(":")[1][:12]) == 7


def test_driver_owners_add_up_and_match_du(engine, exporter):
    s = fresh(exporter)
    root = engine.data_root
    owners = {lbl["owner"]: v for lbl, v in s[P + "driver_disk_bytes"]}
    assert set(owners) == {"image", "container", "init", "build_cache", "links", "orphan"}
    overlay_dir_itself = os.lstat(root / "overlay2").st_blocks * 512
    assert sum(owners.values()) + overlay_dir_itself == value(s, P + "root_disk_bytes", dir="overlay2")
    assert owners["image"] == value(s, P + "layers_disk_bytes")
    assert owners["build_cache"] > 0  # the seed's BuildKit build left snapshots
    assert owners["orphan"] == 0 and value(s, P + "orphan_dirs") == 0
    mounts = root / "image" / "overlay2" / "layerdb" / "mounts"
    ids = [(m / "mount-id").read_text().strip() for m in mounts.iterdir()]
    assert owners["container"] == sum(du(root / "overlay2" / i, "--exclude=merged")[0] for i in ids)
    assert owners["init"] == sum(du(root / "overlay2" / f"{i}-init")[0] for i in ids)


def test_containers_rw_and_logs(engine, exporter):
    s = fresh(exporter)
    root = engine.data_root
    api = engine.api()
    try:
        cid = api.inspect_container("dse-running")["Id"]
    finally:
        api.close()
    mount_id = (root / "image" / "overlay2" / "layerdb" / "mounts" / cid / "mount-id").read_text().strip()
    rw = value(s, P + "container_rw_bytes", container="dse-running", image="dse-app:v1")
    assert rw == du(root / "overlay2" / mount_id / "diff")[0]
    assert rw >= RW_BYTES
    log = root / "containers" / cid / f"{cid}-json.log"
    assert (
        value(s, P + "container_log_bytes", container="dse-running", image="dse-app:v1")
        == os.lstat(log).st_blocks * 512
    )
    # `docker system df`: containers SIZE is the writable layers' apparent bytes (SizeRw),
    # RECLAIMABLE those of containers that are not active; the seed's paused container is
    # active though not running. Compared with what the CLI itself prints.
    df = system_df(engine)
    used = value(s, P + "used_bytes", object="containers")
    reclaim = value(s, P + "reclaimable_bytes", object="containers")
    assert used == sum(c.get("SizeRw", 0) for c in df["Containers"]) >= RW_BYTES + PAUSED_RW_BYTES
    row = cli_df_summary(engine)["Containers"]
    assert row["Size"] == human_size(used)
    assert row["Reclaimable"] == f"{human_size(reclaim)} ({int(reclaim * 100 // used)}%)"
    paused = [c for c in df["Containers"] if c["State"] == "paused"]
    assert paused and reclaim <= used - paused[0]["SizeRw"]


def test_volumes_equal_du_and_system_df(engine, seeded, exporter):
    s = fresh(exporter)
    root = engine.data_root
    for name in (*seeded.volumes_used, *seeded.volumes_unused):
        disk, inodes = du(root / "volumes" / name)
        assert value(s, P + "volume_disk_bytes", volume=name, driver="local") == disk
        assert value(s, P + "volume_files", volume=name, driver="local") == inodes
    assert value(s, P + "volume_containers", volume="dse-vol-used", driver="local") == 1
    assert value(s, P + "volume_containers", volume="dse-vol-unused", driver="local") == 0
    assert value(s, P + "volumes_disk_bytes", state="unused") == du(root / "volumes" / "dse-vol-unused")[0]
    df = system_df(engine)
    sizes = {v["Name"]: v["UsageData"]["Size"] for v in df["Volumes"]}
    assert sizes == {"dse-vol-used": USED_VOLUME_BYTES, "dse-vol-unused": UNUSED_VOLUME_BYTES}
    assert value(s, P + "used_bytes", object="volumes") == sum(sizes.values())
    assert value(s, P + "reclaimable_bytes", object="volumes") == UNUSED_VOLUME_BYTES


def test_second_scan_walks_no_layer(exporter):
    s = fresh(exporter)
    assert value(s, P + "scan_walks", kind="layer") == 0
    assert value(s, P + "scan_cached_layers") == value(s, P + "layers")
    assert value(s, P + "scan_walks", kind="volume") > 0  # volumes are walked every time
    assert value(s, P + "scan_walks", kind="container") > 0


def test_orphan_dir_is_reported_with_its_bytes(engine, exporter):
    leaked = engine.data_root / "overlay2" / ("0f" * 32)
    (leaked / "diff").mkdir(parents=True)
    try:
        (leaked / "diff" / "big").write_bytes(os.urandom(250_000))
        s = fresh(exporter)
        assert value(s, P + "orphan_dirs") == 1
        assert value(s, P + "driver_disk_bytes", owner="orphan") == du(leaked)[0]
        assert value(s, P + "driver_files", owner="orphan") == du(leaked)[1]
    finally:
        subprocess.run(["rm", "-rf", str(leaked)], check=True)
    s = fresh(exporter)
    assert value(s, P + "orphan_dirs") == 0


def test_a_container_writing_its_log_is_seen_growing(engine, exporter):
    name = "dse-logger"
    engine.docker(
        "run", "-d", "--name", name, "--network", "none", "dse-base:latest", "sh", "-c",
        "i=0; while [ $i -lt 400 ]; do echo line-$i-0123456789abcdef0123456789abcdef; "
        "i=$((i+1)); sleep 0.05; done; sleep 3600",
    )  # fmt: skip
    try:
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(set(seen)) < 3:
            s = fresh(exporter)
            v = value(s, P + "container_log_bytes", container=name, image="dse-base:latest")
            if v is not None:
                seen.append(v)
        assert len(set(seen)) >= 3 and seen == sorted(seen), seen
    finally:
        engine.docker("rm", "-f", name)
