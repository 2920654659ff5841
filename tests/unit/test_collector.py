"""exporter.collector.StorageCollector fed by a real Store holding synthetic snapshots."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import __version__
from exporter.collector import OTHER, StorageCollector
from exporter.collector.engine import fold_images
from exporter.collector.families import DEFINED, gauge
from exporter.collector.folding import Fold
from exporter.collector.scan import add_layers, fold_containers, fold_layers, fold_volumes, layer_sums
from exporter.model import (
    BuildCache,
    BuildCacheSnapshot,
    Container,
    ContainerScan,
    DesktopDiskImage,
    DesktopSnapshot,
    DiskUsage,
    EngineInfo,
    EngineSnapshot,
    Filesystem,
    FilesystemSnapshot,
    Image,
    ImageScan,
    LayerScan,
    OrphanDir,
    SamplerStatus,
    ScanSnapshot,
    Volume,
    VolumeScan,
)
from exporter.registry_model import RegistryRoot, RegistrySnapshot, RepositoryUsage, Uploads
from exporter.samplers import Store
from exporter.sources.bolt import BOLT_IMPL
from exporter.sources.du import WALK_IMPL, Usage

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

INFO = EngineInfo(
    engine="docker",
    version="20.10.24+dfsg1",
    api_version="1.41",
    storage_driver="overlay2",
    image_store="graphdriver",
    root_dir="/var/lib/docker",
)


def sha(c: str) -> str:
    return "sha256:" + c * 64


def image(
    c: str,
    size: int,
    tags: tuple[str, ...] = (),
    unique: int | None = 0,
    containers: int = 0,
    state: str = "unused",
    registry: str = "docker.io",
    created: float = 1_700_000_000.0,
) -> Image:
    return Image(
        id=sha(c),
        tags=tags,
        parent_id="",
        created=created,
        size=size,
        unique_size=unique,
        containers=containers,
        state=state,
        registry=registry if tags else "none",
    )


FIVE_IMAGES = (
    image("a", 500, ("ghcr.io/acme/api:2.1",), unique=300, containers=2, state="in_use", registry="ghcr.io"),
    image("b", 400, ("debian:bookworm", "debian:12"), unique=None),
    image("c", 300, (), unique=30, state="dangling", created=1_600_000_000.0),
    image(
        "d",
        200,
        ("localhost:5000/tool:dev",),
        unique=20,
        containers=1,
        state="in_use",
        registry="localhost:5000",
    ),
    image("e", 100, (), unique=10, state="intermediate", created=1_650_000_000.0),
)


def engine_snapshot(images: tuple[Image, ...] = FIVE_IMAGES, **kw) -> EngineSnapshot:
    return EngineSnapshot(
        info=kw.pop("info", INFO),
        images=images,
        containers=kw.pop(
            "containers",
            (
                Container("1" * 64, "api", sha("a"), "ghcr.io/acme/api:2.1", "running", ("pgdata",)),
                Container("2" * 64, "api-old", sha("a"), "ghcr.io/acme/api:2.1", "exited", ("pgdata",)),
                Container("3" * 64, "tool", sha("d"), "localhost:5000/tool:dev", "paused", ()),
            ),
        ),
        volumes=kw.pop(
            "volumes",
            (
                Volume("pgdata", "local", "/var/lib/docker/volumes/pgdata/_data", 2),
                Volume("cache", "local", "/var/lib/docker/volumes/cache/_data", 0),
                Volume("tmp", "local", "/var/lib/docker/volumes/tmp/_data", 0),
            ),
        ),
        image_usage=kw.pop("image_usage", DiskUsage(used=1200, reclaimable=880)),
        skipped=kw.pop("skipped", 1),
    )


def full_store(images: tuple[Image, ...] = FIVE_IMAGES) -> Store:
    store = Store()
    store.publish(
        SamplerStatus("engine", success=True, duration_seconds=0.25, last_success=1_700_000_500.0, runs=3),
        engine_snapshot(images),
    )
    store.publish(
        SamplerStatus(
            "filesystem", success=True, duration_seconds=0.001, last_success=1_700_000_501.0, runs=9
        ),
        FilesystemSnapshot(
            (Filesystem("/var/lib/docker", "/", 100 * 2**30, 40 * 2**30, 6_000_000, 5_000_000, False),)
        ),
    )
    store.publish(
        SamplerStatus(
            "build_cache",
            success=False,
            duration_seconds=1.5,
            last_success=None,
            runs=2,
            failures=2,
            last_error="RuntimeError: boom",
        ),
        BuildCacheSnapshot(BuildCache(records=5, in_use=1, bytes=37_000, reclaimable=30_000)),
    )
    store.publish(SamplerStatus("scan", enabled=False))
    return store


def usage(disk: int, apparent: int | None = None, files: int = 1) -> Usage:
    return Usage(disk, disk if apparent is None else apparent, files, 0, False)


def scan_snapshot() -> ScanSnapshot:
    """A scan with attribution: four layers (two chains share one diff), four containers (one
    without a writable layer), three volumes and an orphan, each list biggest first."""
    return ScanSnapshot(
        root_dir="/var/lib/docker",
        driver="overlay2",
        attribution=True,
        attribution_reason="",
        root_dirs={"overlay2": usage(60_000, files=70), "volumes": usage(110_000, files=50)},
        owners={
            "image": usage(45_056, files=59),
            "container": usage(14_336, files=9),
            "init": usage(4096, files=3),
            "build_cache": usage(0, files=0),
            "links": usage(4096, files=8),
            "orphan": usage(8192, files=2),
        },
        layers=(
            LayerScan(sha("1"), sha("a"), "c1", 1000, usage(900), usage(12_288, files=30), 3),
            LayerScan(sha("2"), sha("a"), "c2", 1000, usage(900), usage(8192, files=20), 1),
            LayerScan(sha("3"), sha("b"), "c3", 500, usage(400), usage(20_480, files=7), 2),
            LayerScan(sha("4"), sha("c"), "c4", 200, usage(100), usage(4096, files=2), 1),
        ),
        containers=(
            ContainerScan(
                "1" * 64, "api", "ghcr.io/acme/api:2.1", "running", usage(8192, 5000), usage(40_960), 5000
            ),
            ContainerScan(
                "2" * 64, "api-old", "ghcr.io/acme/api:2.1", "exited", usage(4096, 3000), usage(4096), 3000
            ),
            ContainerScan(
                "3" * 64, "tool", "localhost:5000/tool:dev", "paused", usage(2048, 100), usage(0), 100
            ),
            ContainerScan("4" * 64, "gone", "debian:12", "dead", None, usage(512)),
        ),
        volumes=(
            VolumeScan("pgdata", "local", 2, usage(90_000, 88_000, 40), usage(94_096, 88_000, 41)),
            VolumeScan("cache", "local", 0, usage(7000, 6000, 4), usage(11_096, 6000, 5)),
            VolumeScan("tmp", "local", 0, usage(10, 1), usage(4106, 1, 2)),
        ),
        orphans=(OrphanDir("dead", "/var/lib/docker/overlay2/dead", usage(8192, files=2)),),
        walks={"layer": 4, "container": 4, "volume": 3},
        cached_layers=4,
        skipped=1,
        errors=2,
        content={"layer": usage(1_000_000, files=4), "config": usage(8192, files=2), "partial": usage(0)},
        images=(
            ImageScan("sha256:" + "a" * 64, usage(900_000, files=5), usage(2_000_000, files=40)),
            ImageScan("sha256:" + "9" * 64, usage(100, files=1), usage(4096, files=1)),
        ),
        read_errors={"meta.db": 0, "metadata.db": 3},
    )


def registry_snapshot() -> RegistrySnapshot:
    """One registry root with every figure (two repositories, so that a top-n of 1 folds)."""
    root = RegistryRoot(
        path="/var/lib/registry",
        blobs={"referenced": 10, "unreferenced": 2, "young": 1},
        blob_bytes={"referenced": 10_000, "unreferenced": 2_000, "young": 100},
        reclaimable={"default": 2_100, "delete_untagged": 3_000},
        reclaimable_blobs={"default": 3, "delete_untagged": 5},
        index_child_only_bytes=500,
        repositories=(
            RepositoryUsage("acme/app", 8_000, 5_000, 2, 2, 1),
            RepositoryUsage("lib", 3_000, 0, 1, 1, 0),
        ),
        fresh_uploads=Uploads(1, 300),
        stale_uploads=Uploads(2, 7_000),
        oldest_upload_started=1_699_000_000.0,
        dangling={"layer": 1, "revision": 0, "tag": 0},
        errors={},
        filesystem_size=10**9,
        filesystem_avail=10**8,
    )
    return RegistrySnapshot(roots=(root,), taken=1_700_000_500.0)


def scan_store(scan: ScanSnapshot | None = None) -> Store:
    """full_store() with a scan and a registry: every source, every family."""
    store = full_store()
    store.publish(
        SamplerStatus("scan", success=True, duration_seconds=2.0, last_success=1_700_000_502.0, runs=1),
        scan or scan_snapshot(),
    )
    store.publish(
        SamplerStatus("registry", success=True, duration_seconds=0.1, last_success=1_700_000_500.0, runs=1),
        registry_snapshot(),
    )
    return store


def exposition(collector: StorageCollector) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry).decode("utf-8")


def families(collector: StorageCollector) -> dict:
    return {f.name: f for f in text_string_to_metric_families(exposition(collector))}


def samples(fams: dict, name: str, sample_name: str | None = None) -> dict[tuple, float]:
    """{sorted label items: value} of one family's samples named `sample_name` (default: family)."""
    sample_name = sample_name or name
    return {tuple(sorted(s.labels.items())): s.value for s in fams[name].samples if s.name == sample_name}


def image_series(fams: dict, name: str) -> dict[str, float]:
    return {s.labels["image_id"]: s.value for s in fams[name].samples}


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )


# --- families ---------------------------------------------------------------------------


EXPECTED_FAMILIES = {
    "docker_storage_exporter_build_info",
    "docker_storage_engine_requests",
    "docker_storage_collector_errors",
    "docker_storage_sampler_success",
    "docker_storage_sampler_duration_seconds",
    "docker_storage_sampler_last_success_timestamp_seconds",
    "docker_storage_sampler_failures",
    "docker_storage_sampler_runs",
    "docker_storage_engine_up",
    "docker_storage_engine_info",
    "docker_storage_sampler_skipped_items",
    "docker_storage_images",
    "docker_storage_image_size_bytes",
    "docker_storage_image_unique_bytes",
    "docker_storage_image_containers",
    "docker_storage_image_created_timestamp_seconds",
    "docker_storage_image_tag_info",
    "docker_storage_registry_images",
    "docker_storage_registry_unique_bytes",
    "docker_storage_series_folded",
    "docker_storage_used_bytes",
    "docker_storage_reclaimable_bytes",
    "docker_storage_containers",
    "docker_storage_volumes",
    "docker_storage_filesystem_size_bytes",
    "docker_storage_filesystem_avail_bytes",
    "docker_storage_filesystem_files",
    "docker_storage_filesystem_files_free",
    "docker_storage_filesystem_readonly",
    "docker_storage_build_cache_records",
    "docker_storage_build_cache_bytes",
}


def test_families_present_with_help() -> None:
    fams = families(StorageCollector(full_store(), top_n=50))
    assert EXPECTED_FAMILIES <= set(fams)
    for name, fam in fams.items():
        assert fam.documentation.strip(), name


def test_every_metric_is_prefixed() -> None:
    collector = StorageCollector(full_store())
    assert all(m.name.startswith("docker_storage_") for m in collector.collect())
    for line in exposition(collector).splitlines():
        name = line.split(" ", 3)[2] if line.startswith("#") else line.split("{")[0].split(" ")[0]
        if name.startswith(("process_", "python_")):
            continue
        assert name.startswith("docker_storage_"), line


def test_values_of_the_simple_families() -> None:
    fams = families(StorageCollector(full_store(), top_n=50))
    build = {(("bolt_walk", BOLT_IMPL), ("version", __version__), ("walk", WALK_IMPL)): 1}
    assert samples(fams, "docker_storage_exporter_build_info") == build
    assert samples(fams, "docker_storage_engine_up") == {(): 1}
    assert samples(fams, "docker_storage_engine_info") == {
        tuple(
            sorted(
                {
                    "engine": "docker",
                    "version": "20.10.24+dfsg1",
                    "api_version": "1.41",
                    "storage_driver": "overlay2",
                    "image_store": "graphdriver",
                    "root_dir": "/var/lib/docker",
                }.items()
            )
        ): 1
    }
    assert samples(fams, "docker_storage_images") == {
        (("state", "in_use"),): 2,
        (("state", "unused"),): 1,
        (("state", "dangling"),): 1,
        (("state", "intermediate"),): 1,
    }
    assert samples(fams, "docker_storage_containers")[(("state", "running"),)] == 1
    assert samples(fams, "docker_storage_containers")[(("state", "paused"),)] == 1
    assert samples(fams, "docker_storage_containers")[(("state", "dead"),)] == 0
    assert samples(fams, "docker_storage_volumes") == {(("state", "in_use"),): 1, (("state", "unused"),): 2}
    assert samples(fams, "docker_storage_used_bytes") == {
        (("object", "images"),): 1200,
        (("object", "build_cache"),): 37_000,
    }
    assert samples(fams, "docker_storage_reclaimable_bytes") == {
        (("object", "images"),): 880,
        (("object", "build_cache"),): 30_000,
    }
    assert samples(fams, "docker_storage_build_cache_records") == {(): 5}
    assert samples(fams, "docker_storage_filesystem_avail_bytes") == {
        (("mountpoint", "/"), ("path", "/var/lib/docker")): 40 * 2**30
    }
    assert samples(fams, "docker_storage_registry_images") == {
        (("registry", "ghcr.io"),): 1,
        (("registry", "docker.io"),): 1,
        (("registry", "none"),): 2,
        (("registry", "localhost:5000"),): 1,
    }


def test_sampler_health() -> None:
    fams = families(StorageCollector(full_store()))
    assert samples(fams, "docker_storage_sampler_success") == {
        (("sampler", "build_cache"),): 0,
        (("sampler", "engine"),): 1,
        (("sampler", "filesystem"),): 1,
    }  # the disabled "scan" sampler is not listed
    last = samples(fams, "docker_storage_sampler_last_success_timestamp_seconds")
    assert last == {(("sampler", "engine"),): 1_700_000_500.0, (("sampler", "filesystem"),): 1_700_000_501.0}
    fails = samples(fams, "docker_storage_sampler_failures", "docker_storage_sampler_failures_total")
    assert fails[(("sampler", "build_cache"),)] == 2


def test_engine_down_keeps_last_snapshot_and_says_so() -> None:
    store = full_store()
    store.publish(SamplerStatus("engine", success=False, runs=4, failures=1, last_success=1_700_000_500.0))
    fams = families(StorageCollector(store))
    assert samples(fams, "docker_storage_engine_up") == {(): 0}
    assert "docker_storage_image_size_bytes" in fams  # last good data still served


def test_empty_store() -> None:
    fams = families(StorageCollector(Store()))
    assert samples(fams, "docker_storage_engine_up") == {(): 0}
    assert "docker_storage_images" not in fams
    assert promtool_check(exposition(StorageCollector(Store()))).returncode == 0


# --- top-n folding ----------------------------------------------------------------------


def test_top_n_folds_the_rest_into_other() -> None:
    fams = families(StorageCollector(full_store(), top_n=2))
    size = image_series(fams, "docker_storage_image_size_bytes")
    assert size == {"a" * 12: 500, "b" * 12: 400, OTHER: 300 + 200 + 100}
    other = next(s for s in fams["docker_storage_image_size_bytes"].samples if s.labels["image_id"] == OTHER)
    assert other.labels == {"image_id": OTHER, "repository": OTHER, "tag": OTHER}
    assert image_series(fams, "docker_storage_image_containers") == {"a" * 12: 2, "b" * 12: 0, OTHER: 1}
    assert image_series(fams, "docker_storage_image_created_timestamp_seconds")[OTHER] == 1_600_000_000.0
    folded = samples(fams, "docker_storage_series_folded")
    assert folded[(("family", "docker_storage_image_size_bytes"),)] == 3
    assert set(folded.values()) == {3}
    # Kept images' tags only.
    tag_ids = {s.labels["image_id"] for s in fams["docker_storage_image_tag_info"].samples}
    assert tag_ids == {"a" * 12, "b" * 12}


def test_no_folding_when_under_the_cap() -> None:
    fams = families(StorageCollector(full_store(), top_n=50))
    assert OTHER not in image_series(fams, "docker_storage_image_size_bytes")
    assert len(fams["docker_storage_image_size_bytes"].samples) == 5
    assert set(samples(fams, "docker_storage_series_folded").values()) == {0}


def test_top_n_zero_folds_everything() -> None:
    fams = families(StorageCollector(full_store(), top_n=0))
    assert image_series(fams, "docker_storage_image_size_bytes") == {OTHER: 1500}


def test_image_labels_and_tags() -> None:
    fams = families(StorageCollector(full_store(), top_n=50))
    labels = {s.labels["image_id"]: s.labels for s in fams["docker_storage_image_size_bytes"].samples}
    assert labels["a" * 12] == {"image_id": "a" * 12, "repository": "ghcr.io/acme/api", "tag": "2.1"}
    assert labels["d" * 12] == {"image_id": "d" * 12, "repository": "localhost:5000/tool", "tag": "dev"}
    assert labels["c" * 12] == {"image_id": "c" * 12, "repository": "<none>", "tag": "<none>"}
    tags = {
        (s.labels["repository"], s.labels["tag"])
        for s in fams["docker_storage_image_tag_info"].samples
        if s.labels["image_id"] == "b" * 12
    }
    assert tags == {("debian", "bookworm"), ("debian", "12")}


def test_unique_bytes_absent_when_unknown() -> None:
    fams = families(StorageCollector(full_store(), top_n=50))
    unique = image_series(fams, "docker_storage_image_unique_bytes")
    assert "b" * 12 not in unique  # unique_size None
    assert unique["a" * 12] == 300
    assert "b" * 12 in image_series(fams, "docker_storage_image_size_bytes")


def test_other_unique_bytes_absent_when_a_folded_image_is_unknown() -> None:
    """__other__ must not report a smaller number when a folded image's unique size is unknown.

    image_unique_bytes' help says it is absent when a layer size could not be known; summing
    the unknown as 0 would silently under-report what removing those images frees.
    """
    images = (
        image("a", 500, ("a:1",), unique=300),
        image("b", 400, ("b:1",), unique=None),  # folded, unknown
        image("c", 300, ("c:1",), unique=30),  # folded, known
    )
    fams = families(StorageCollector(full_store(images), top_n=1))
    assert image_series(fams, "docker_storage_image_size_bytes")[OTHER] == 700
    assert OTHER not in image_series(fams, "docker_storage_image_unique_bytes")


def test_no_image_usage_means_no_images_used_bytes() -> None:
    store = Store()
    store.publish(SamplerStatus("engine", success=True), engine_snapshot(image_usage=None))
    fams = families(StorageCollector(store))
    assert "docker_storage_used_bytes" not in fams


# --- exposition validity ----------------------------------------------------------------


def test_promtool_check_metrics() -> None:
    text = exposition(StorageCollector(full_store(), top_n=2))
    proc = promtool_check(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr + text


NASTY = 'we"ird\\tag\nwith newline ünïcødé 🐳'

GARBAGE_IMAGES = (
    image("a", 10, (f'registry.example.com/{NASTY}:v"1',), registry=NASTY),
    image("b", 9, ("",)),
    image("c", 8, (":",)),
    image("d", 7, ("@",)),
    image("e", -5, ("x:y:z",), unique=-1, containers=-2, created=-1.0),
    Image(
        id="",
        tags=(),
        parent_id="",
        created=0.0,
        size=0,
        unique_size=None,
        containers=0,
        state="weird",
        registry="",
    ),
    Image(
        id="not-a-digest",
        tags=("a:1",),
        parent_id="",
        created=0.0,
        size=1,
        unique_size=0,
        containers=0,
        state="in_use",
        registry="docker.io",
    ),
)


def test_garbage_snapshot_renders_valid_exposition() -> None:
    store = full_store(GARBAGE_IMAGES)
    store.publish(
        SamplerStatus("filesystem", success=True),
        FilesystemSnapshot((Filesystem(f"/var/lib/{NASTY}", f"/mnt/{NASTY}", 1, 0, 0, 0, True),)),
    )
    store.publish(
        SamplerStatus("engine", success=True),
        engine_snapshot(
            GARBAGE_IMAGES,
            info=EngineInfo(NASTY, NASTY, "", "", "unknown", f"/var/lib/{NASTY}"),
            containers=(Container("x", NASTY, "", NASTY, "running", (NASTY,)),),
            volumes=(Volume(NASTY, NASTY, "", 1),),
        ),
    )
    collector = StorageCollector(store, top_n=4)
    text = exposition(collector)
    proc = promtool_check(text)
    assert proc.returncode == 0, proc.stdout + proc.stderr + text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # The label value survives the escaping round trip unchanged.
    info = fams["docker_storage_engine_info"].samples[0]
    assert info.labels["engine"] == NASTY
    repos = {s.labels["repository"] for s in fams["docker_storage_image_size_bytes"].samples}
    assert f"registry.example.com/{NASTY}" in repos
    assert samples(fams, "docker_storage_collector_errors", "docker_storage_collector_errors_total") == {
        (): 0
    }


def test_collect_survives_a_broken_snapshot() -> None:
    store = full_store()
    bad_tag_image = image("f", 1, (None,))  # type: ignore[arg-type]  # a tag that is not a string
    store.publish(SamplerStatus("engine", success=True), engine_snapshot((bad_tag_image,)))
    store.publish(SamplerStatus("filesystem", success=True), "not a snapshot")
    collector = StorageCollector(store)
    fams = list(collector.collect())  # must not raise
    names = {f.name for f in fams}
    assert "docker_storage_build_cache_bytes" in names  # other groups still served
    assert "docker_storage_engine_up" in names
    errors = next(f for f in fams if f.name == "docker_storage_collector_errors")
    assert errors.samples[0].value == 2  # the images group and the filesystem group
    text = exposition(collector)
    assert promtool_check(text).returncode == 0, text


def test_collect_survives_garbage_store_contents() -> None:
    store = Store()
    store.publish(SamplerStatus("engine", success=True), 42)
    store.publish(SamplerStatus("build_cache", success=True), {"records": 1})
    collector = StorageCollector(store)
    fams = {f.name: f for f in collector.collect()}  # must not raise
    # Groups that read no snapshot still come; each failing group is counted once.
    assert "docker_storage_exporter_build_info" in fams
    assert "docker_storage_sampler_success" in fams
    assert (
        fams["docker_storage_collector_errors"].samples[0].value == 4
    )  # engine, images, objects, build cache
    fams = {f.name: f for f in collector.collect()}
    assert fams["docker_storage_collector_errors"].samples[0].value == 8  # a counter: it accumulates


def test_derived_figures_follow_the_snapshot() -> None:
    """Folds and sums are kept per snapshot (a scrape must not cost O(images)), and a new
    snapshot is never served with the old one's figures."""
    import gc
    import weakref

    store = full_store()
    collector = StorageCollector(store, top_n=2)
    first = exposition(collector)
    assert exposition(collector) == first
    old = weakref.ref(store.snapshot("engine"))
    smaller = tuple(i for i in FIVE_IMAGES if i.id != sha("c"))
    store.publish(SamplerStatus("engine", success=True, runs=4), engine_snapshot(smaller))
    second = exposition(collector)
    fresh = exposition(StorageCollector(store, top_n=2))
    assert second == fresh != first
    gc.collect()
    assert old() is None  # the memo does not keep a replaced snapshot alive


def test_containers_used_and_reclaimable_are_the_engines_size_rw() -> None:
    """`docker system df` Containers: SIZE sums SizeRw (as the store counts it, which the
    scan says per container), RECLAIMABLE that of the containers a prune removes."""
    scan = scan_snapshot()
    fams = {f.name: f for f in StorageCollector(scan_store(scan)).collect()}
    used = {s.labels["object"]: s.value for s in fams["docker_storage_used_bytes"].samples}
    reclaimable = {s.labels["object"]: s.value for s in fams["docker_storage_reclaimable_bytes"].samples}
    assert used["containers"] == 5000 + 3000 + 100 and reclaimable["containers"] == 3000
    # A store that counts allocated bytes: the same containers, other SizeRw.
    allocated = tuple(
        dataclasses.replace(c, size_rw=c.rw.disk_bytes if c.rw else None) for c in scan.containers
    )
    fams = {
        f.name: f
        for f in StorageCollector(scan_store(dataclasses.replace(scan, containers=allocated))).collect()
    }
    used = {s.labels["object"]: s.value for s in fams["docker_storage_used_bytes"].samples}
    assert used["containers"] == 8192 + 4096 + 2048


def test_content_store_and_read_errors_are_served_as_the_scan_says() -> None:
    fams = {f.name: f for f in StorageCollector(scan_store()).collect()}
    disk = {s.labels["kind"]: s.value for s in fams["docker_storage_content_disk_bytes"].samples}
    files = {s.labels["kind"]: s.value for s in fams["docker_storage_content_files"].samples}
    assert disk == {"layer": 1_000_000, "config": 8192, "partial": 0}
    assert files == {"layer": 4, "config": 2, "partial": 1}
    errors = {s.labels["file"]: s.value for s in fams["docker_storage_store_read_errors"].samples}
    assert errors == {"meta.db": 0, "metadata.db": 3}
    # overlay2: no content store, no metadata files of that kind: the families are absent.
    bare = dataclasses.replace(scan_snapshot(), content={}, read_errors={})
    fams = {f.name for f in StorageCollector(scan_store(bare)).collect()}
    assert not {"docker_storage_content_disk_bytes", "docker_storage_store_read_errors"} & fams


def test_each_images_two_copies_labelled_as_the_engine_names_it() -> None:
    fams = {f.name: f for f in StorageCollector(scan_store(), top_n=1).collect()}
    content = {
        tuple(s.labels.values()): s.value for s in fams["docker_storage_image_content_disk_bytes"].samples
    }
    unpacked = {
        s.labels["image_id"]: s.value for s in fams["docker_storage_image_unpacked_disk_bytes"].samples
    }
    (kept,) = [k for k in content if k[0] != OTHER]
    assert kept[0] == "a" * 12 and content[kept] == 900_000  # the engine's tags for it
    assert unpacked == {"a" * 12: 2_000_000, OTHER: 4096}  # the other one (unknown to the engine) folded
    folded = {s.labels["family"]: s.value for s in fams["docker_storage_series_folded"].samples}
    assert folded["docker_storage_image_content_disk_bytes"] == 1


def test_scan_figures_follow_the_scan_snapshot() -> None:
    store = scan_store()
    collector = StorageCollector(store, top_n=1)
    first = exposition(collector)
    assert exposition(collector) == first
    scan = store.latest(ScanSnapshot)
    assert scan is not None
    store.publish(
        SamplerStatus("scan", success=True, runs=2), dataclasses.replace(scan, volumes=scan.volumes[:1])
    )
    assert exposition(collector) == exposition(StorageCollector(store, top_n=1)) != first


def test_a_label_that_is_not_text_fails_its_group_not_the_scrape() -> None:
    """collect() never raises: a label value the exposition cannot encode is caught inside
    its group, which is counted and left out; the other groups are still served."""
    bad = ContainerScan("9" * 64, None, "x", "running", usage(1), usage(1))  # type: ignore[arg-type]
    collector = StorageCollector(scan_store(dataclasses.replace(scan_snapshot(), containers=(bad,))))
    fams = {f.name: f for f in collector.collect()}  # must not raise
    assert fams["docker_storage_collector_errors"].samples[0].value == 1  # the scan group
    assert "docker_storage_container_rw_bytes" not in fams
    assert "docker_storage_images" in fams
    assert promtool_check(exposition(collector)).returncode == 0


# --- one definition per family ----------------------------------------------------------


def every_source_store() -> Store:
    """scan_store() and what only some hosts have: Docker Desktop's disk image."""
    store = scan_store()
    image = DesktopDiskImage(
        "/d/Docker.raw", "raw", "macos", "default", 64 << 30, 2 << 30, 500 << 30, 90 << 30
    )
    store.publish(SamplerStatus("desktop", success=True, runs=1), DesktopSnapshot((image,)))
    return store


def test_each_family_is_defined_once_and_served_as_defined() -> None:
    """Every family comes from one definition (a second one raises at import), and what a
    scrape serves matches it: one family per name, with its HELP, type and label names."""
    with pytest.raises(ValueError, match="defined twice"):
        gauge("used_bytes", "A second definition of a family several groups fill.")
    for hide in (False, True):
        collector = StorageCollector(
            every_source_store(), top_n=1, hide_names=hide, request_counts=lambda: {"/x": 1}
        )
        collected = list(collector.collect())
        names = [f.name for f in collected]
        assert len(names) == len(set(names))
        assert set(names) == set(DEFINED)  # this store serves every family
        for fam in collected:
            definition = DEFINED[fam.name]
            assert (fam.documentation, fam.type) == (definition.doc, definition.kind), fam.name
            for s in fam.samples:
                assert set(s.labels) == set(definition.labels), s
        helps = [line.split()[2] for line in exposition(collector).splitlines() if line.startswith("# HELP ")]
        assert len(helps) == len(set(helps))


# --- the fold records -------------------------------------------------------------------

TOP_NS = [-1, 0, 1, 2, 3, 100]


def assert_adds_up(
    fold: Fold[Any, Any],
    items: Sequence[Any],
    figures: Callable[[Any], Sequence[int]],
    summed: Callable[[Any], Sequence[int]] = tuple,
) -> None:
    """As Fold documents: kept and folded count the items, kept are the first ones, other is
    None exactly when nothing folded, and for the summed fields (`summed(other)`, matching
    `figures(item)`) kept's figures plus other's are the total of all."""
    assert len(fold.kept) + fold.folded == len(items)
    assert fold.kept == list(items[: len(fold.kept)])
    assert (fold.other is None) == (fold.folded == 0)
    width = len(figures(items[0]))
    total = [sum(figures(i)[k] for i in items) for k in range(width)]
    kept = [sum(figures(i)[k] for i in fold.kept) for k in range(width)]
    other = list(summed(fold.other)) if fold.other is not None else [0] * width
    assert [a + b for a, b in zip(kept, other, strict=True)] == total


@pytest.mark.parametrize("top_n", TOP_NS)
def test_fold_records_sum_as_documented(top_n: int) -> None:
    snap = scan_snapshot()
    layers = fold_layers(snap, top_n)
    by_diff = fold_layers(snap, -1).kept
    assert [key for key, _ in by_diff] == ["a" * 12, "b" * 12, "c" * 12]  # biggest on disk first
    assert_adds_up(layers, by_diff, lambda kv: kv[1])
    every_layer = add_layers(map(layer_sums, snap.layers))
    assert add_layers(sums for _, sums in by_diff) == every_layer  # one diff under two chains is summed
    assert_adds_up(
        fold_containers(snap, top_n),
        snap.containers,
        lambda c: (c.rw.disk_bytes if c.rw else 0, c.logs.disk_bytes),
    )
    assert_adds_up(
        fold_volumes(snap, top_n), snap.volumes, lambda v: (v.total.disk_bytes, v.total.files, v.containers)
    )
    images = fold_images(FIVE_IMAGES, top_n)
    # size and containers are sums; oldest is a minimum and unique unknown when any is.
    assert_adds_up(images, FIVE_IMAGES, lambda i: (i.size, i.containers), lambda o: (o.size, o.containers))
    if images.other is not None:
        rest = FIVE_IMAGES[len(images.kept) :]
        assert images.other.oldest == min(i.created for i in rest)
        assert (images.other.unique is None) == any(i.unique_size is None for i in rest)


def test_per_item_series_and_other_add_up_to_the_totals() -> None:
    fams = families(StorageCollector(scan_store(), top_n=1))

    def total(name: str) -> float:
        return sum(s.value for s in fams[name].samples)

    assert total("docker_storage_layer_size_bytes") == total("docker_storage_layers_size_bytes") == 2700
    assert total("docker_storage_layer_disk_bytes") == total("docker_storage_layers_disk_bytes")
    assert total("docker_storage_volume_disk_bytes") == total("docker_storage_volumes_disk_bytes")
    assert total("docker_storage_container_log_bytes") == 40_960 + 4096 + 0 + 512
    assert total("docker_storage_image_size_bytes") == sum(i.size for i in FIVE_IMAGES)
    folded = samples(fams, "docker_storage_series_folded")
    assert folded[(("family", "docker_storage_layer_size_bytes"),)] == 2  # three diff ids, one kept
    assert folded[(("family", "docker_storage_container_rw_bytes"),)] == 3
    assert folded[(("family", "docker_storage_volume_files"),)] == 2
    assert folded[(("family", "docker_storage_image_size_bytes"),)] == 4
