"""exporter.sources.engine: the tolerant parse_* readers, on recorded and hand-made JSON."""

from __future__ import annotations

from collections import Counter

import pytest

from exporter.model import BuildCache, Volume
from exporter.sources.engine import (
    api_tuple,
    parse_build_cache,
    parse_containers,
    parse_engine_info,
    parse_volumes,
)

# --- engine info ------------------------------------------------------------------------


def test_engine_info_recorded_docker_2010(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    info = parse_engine_info(doc["version"], doc["info"])
    assert info.engine == "docker"
    assert info.version == "20.10.24+dfsg1"
    assert info.api_version == "1.41"
    assert info.storage_driver == "overlay2"
    assert info.image_store == "graphdriver"
    assert info.root_dir == doc["info"]["DockerRootDir"]


def test_engine_info_containerd_image_store(load_fixture) -> None:
    doc = load_fixture("api-1.52.json")
    info = parse_engine_info(doc["version"], doc["info"])
    assert (info.engine, info.api_version, info.image_store) == ("docker", "1.52", "containerd")
    assert info.storage_driver == "overlayfs"


def test_engine_info_podman_by_component_name() -> None:
    version = {
        "Platform": {"Name": "linux/amd64/ubuntu-24.04"},
        "Components": [{"Name": "Podman Engine", "Version": "4.9.3", "Details": {"APIVersion": "4.9.3"}}],
        "Version": "4.9.3",
        "ApiVersion": "1.41",
    }
    info = {"Driver": "overlay", "DockerRootDir": "/var/lib/containers/storage", "DriverStatus": None}
    parsed = parse_engine_info(version, info)
    assert parsed.engine == "podman"
    assert parsed.root_dir == "/var/lib/containers/storage"
    assert parsed.image_store == "graphdriver"


def test_engine_info_podman_by_platform_name() -> None:
    assert parse_engine_info({"Platform": {"Name": "Podman Engine"}}, {}).engine == "podman"


def test_engine_info_docker_desktop_is_docker() -> None:
    version = {"Platform": {"Name": "Docker Desktop 4.30.0 (149282)"}, "Components": [{"Name": "Engine"}]}
    assert parse_engine_info(version, {}).engine == "docker"


def test_engine_info_version_falls_back_to_server_version() -> None:
    assert parse_engine_info({}, {"ServerVersion": "24.0.7"}).version == "24.0.7"


@pytest.mark.parametrize(
    ("driver_status", "store"),
    [
        ([["driver-type", "io.containerd.snapshotter.v1"]], "containerd"),
        ([["Backing Filesystem", "extfs"], ["driver-type", "io.containerd.snapshotter.v1"]], "containerd"),
        ([["Backing Filesystem", "extfs"], ["Supports d_type", "true"]], "graphdriver"),
        ([["driver-type"]], "graphdriver"),
        ("garbage", "graphdriver"),
        (None, "graphdriver"),
        ([None, 3, ["driver-type", None]], "graphdriver"),
    ],
)
def test_engine_info_image_store(driver_status: object, store: str) -> None:
    assert parse_engine_info({}, {"DriverStatus": driver_status}).image_store == store


def test_engine_info_garbage_never_raises() -> None:
    info = parse_engine_info(None, ["not", "a", "dict"])
    assert (info.engine, info.version, info.storage_driver, info.root_dir) == ("docker", "", "", "")
    info = parse_engine_info({"Components": "x", "Platform": "y", "Version": 3}, {"Driver": None})
    assert info.engine == "docker"
    assert info.version == ""


def test_api_tuple() -> None:
    assert api_tuple("1.41") < api_tuple("1.42") < api_tuple("1.100")
    assert api_tuple("garbage") == (0,)


# --- containers -------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["1.41", "1.44", "1.51", "1.52"])
def test_parse_containers_fixtures(load_fixture, api: str) -> None:
    doc = load_fixture(f"api-{api}.json")
    containers, skipped = parse_containers(doc["containers"])
    assert skipped == 0
    assert len(containers) == len(doc["containers"])
    for c, rawc in zip(containers, doc["containers"], strict=True):
        assert c.id == rawc["Id"]
        assert c.image_id == rawc["ImageID"]
        assert c.name == rawc["Names"][0].lstrip("/")
        assert c.state == rawc["State"]


def test_parse_containers_recorded_141(load_fixture) -> None:
    (c,), _ = parse_containers(load_fixture("api-1.41.json")["containers"])
    assert (c.name, c.image, c.state, c.volumes) == ("epic_wozniak", "dse-app:v1", "created", ())


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("Up 3 hours", "running"),
        ("Up Less than a second", "running"),
        ("Up 3 hours (healthy)", "running"),
        ("Up 2 minutes (Paused)", "paused"),
        ("Exited (0) 2 days ago", "exited"),
        ("Exited (137) About a minute ago", "exited"),
        ("Restarting (1) 5 seconds ago", "restarting"),
        ("Removal In Progress", "removing"),
        ("Dead", "dead"),
        ("Created", "created"),
        ("", "created"),
    ],
)
def test_parse_containers_state_from_status(status: str, state: str) -> None:
    (c,), _ = parse_containers([{"Id": "c" * 64, "Status": status}])
    assert c.state == state


def test_parse_containers_state_field_wins_and_is_lowercased() -> None:
    rows = [
        {"Id": "a" * 64, "State": "Running", "Status": "Exited (0) 1 hour ago"},
        {"Id": "b" * 64, "State": "stopped", "Status": "Exited (1) 1 hour ago"},  # podman's word
        {"Id": "c" * 64, "State": None, "Status": "Up 1 second"},
    ]
    containers, _ = parse_containers(rows)
    assert [c.state for c in containers] == ["running", "exited", "running"]


def test_parse_containers_volumes_from_named_volume_mounts() -> None:
    row = {
        "Id": "a" * 64,
        "State": "running",
        "Mounts": [
            {"Type": "volume", "Name": "pgdata", "Destination": "/data"},
            {"Type": "volume", "Name": "pgdata", "Destination": "/again"},
            {"Type": "volume", "Name": "3f" * 32, "Destination": "/anon"},
            {"Type": "bind", "Source": "/etc", "Destination": "/etc"},
            {"Type": "tmpfs", "Destination": "/tmp"},
            {"Type": "volume", "Name": None},
            "junk",
        ],
    }
    (c,), _ = parse_containers([row])
    assert c.volumes == tuple(sorted(("pgdata", "3f" * 32)))


def test_parse_containers_skips_and_counts_entries_without_id() -> None:
    rows = [
        {"Id": "a" * 64, "Names": None, "State": "exited"},
        {"Names": ["/noid"]},
        {"Id": ""},
        {"Id": 7},
        None,
        "x",
    ]
    containers, skipped = parse_containers(rows)
    assert skipped == 5
    assert [c.name for c in containers] == ["a" * 12]  # no Names: the short ID


@pytest.mark.parametrize("raw", [None, {}, "x", {"message": "boom"}])
def test_parse_containers_non_list(raw: object) -> None:
    assert parse_containers(raw) == ([], 0)


# --- volumes ----------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["1.44", "1.51", "1.52"])
def test_parse_volumes_counts_users(load_fixture, api: str) -> None:
    doc = load_fixture(f"api-{api}.json")
    containers, _ = parse_containers(doc["containers"])
    users: Counter[str] = Counter()
    for c in containers:
        users.update(c.volumes)
    volumes, skipped = parse_volumes(doc["volumes"], users)
    assert skipped == 0
    assert {v.name: v.containers for v in volumes} == doc["expected"]["volume_users"]


def test_parse_volumes_null_and_garbage() -> None:
    assert parse_volumes({"Volumes": None, "Warnings": None}, Counter()) == ([], 0)
    assert parse_volumes(None, Counter()) == ([], 0)
    raw = {"Volumes": [{"Name": "v", "Driver": None, "Mountpoint": 3}, {"Driver": "local"}, None]}
    volumes, skipped = parse_volumes(raw, Counter({"v": 4, "other": 1}))
    assert volumes == [Volume(name="v", driver="local", mountpoint="", containers=4)]
    assert skipped == 2


# --- build cache ------------------------------------------------------------------------


def test_parse_build_cache_recorded_141(load_fixture) -> None:
    doc = load_fixture("api-1.41.json")
    exp = doc["expected"]
    bc = parse_build_cache(doc["df"])
    assert bc == BuildCache(
        records=exp["build_cache_records"],
        in_use=0,
        bytes=exp["build_cache_bytes"],
        reclaimable=exp["build_cache_reclaimable"],
    )


@pytest.mark.parametrize("api", ["1.44", "1.51", "1.52"])
def test_parse_build_cache_fixture_shapes(load_fixture, api: str) -> None:
    doc = load_fixture(f"api-{api}.json")
    exp = doc["expected"]
    assert parse_build_cache(doc["df_build_cache"]) == BuildCache(
        records=exp["build_cache_records"],
        in_use=exp["build_cache_in_use"],
        bytes=exp["build_cache_bytes"],
        reclaimable=exp["build_cache_reclaimable"],
    )


def test_parse_build_cache_legacy_definitions() -> None:
    df = {
        "BuildCache": [
            {"ID": "s", "Shared": True, "InUse": True, "Size": 1000},  # shared: never counted
            {"ID": "a", "Shared": False, "InUse": False, "Size": 30},
            {"ID": "b", "Shared": False, "InUse": True, "Size": 7},
            {"ID": "c", "Size": -5},  # garbage size reads as 0
            {"ID": "d", "Size": "12"},
        ]
    }
    assert parse_build_cache(df) == BuildCache(records=5, in_use=2, bytes=49, reclaimable=42)


def test_parse_build_cache_152_shape_takes_engine_totals() -> None:
    df = {"BuildCacheUsage": {"TotalCount": 4, "ActiveCount": 1, "TotalSize": 900, "Reclaimable": 800}}
    assert parse_build_cache(df) == BuildCache(records=4, in_use=1, bytes=900, reclaimable=800)


@pytest.mark.parametrize("df", [None, {}, {"BuildCache": None}, {"BuildCache": "x"}, []])
def test_parse_build_cache_empty(df: object) -> None:
    assert parse_build_cache(df) == BuildCache(records=0, in_use=0, bytes=0, reclaimable=0)
