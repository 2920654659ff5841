#!/usr/bin/env python3
"""Generate the Grafana dashboards of docker-storage-exporter.

    python grafana/generate.py            # write grafana/dashboards/{host,fleet}.json
    python grafana/generate.py --check    # exit 1 when a committed file differs from a fresh build

The JSON is plain Grafana dashboard JSON (schemaVersion 39, what Grafana 10 and 11 import). Edit this
file, never the JSON: CI runs `--check` (tests/test_dashboards.py) and fails on a difference.

Conventions (issue 4): a `datasource` variable and every panel and target pointing at
`${datasource}`; `job` and `instance` variables from `docker_storage_exporter_build_info`; every
host query filtered by job and instance, every fleet query by job; only families listed in
docs/metrics.md.

Shared with the alert rules (grafana/alerts/docker-storage.rules.yml): the predicted time until
a filesystem is full or out of inodes and the reclaimable bytes per host come from its recording
rules (`docker_storage:filesystem_hours_until_full`, `…_inodes_hours_until_out`,
`docker_storage:reclaimable_bytes:sum`), so a panel and an alert can never disagree on the
formula. The rules ship with the dashboards (Helm chart, compose demo); without them these panels
stay empty and say so in their descriptions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as a script, grafana/ is sys.path[0] already; loaded by path (tests/test_dashboards.py) it
# is not, and the dashboards' package lives beside this file.
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from dashboards_lib.dashboard import (  # noqa: E402
    FIELD_LINK,
    FLEET_UID,
    HOST_UID,
    JOB_VAR,
    TABLE_LINK,
    dashboard,
    datasource_variable,
    query_variable,
)
from dashboards_lib.panels import (  # noqa: E402
    BAD_WHEN_POSITIVE,
    FREE_STEPS,
    MAP_OK,
    MAP_RO,
    MAP_UP,
    MAP_YES,
    TTF_STEPS,
    bargauge,
    by_name,
    by_ref,
    gauge,
    row,
    stat,
    table,
    timeseries,
)
from dashboards_lib.queries import (  # noqa: E402
    FLEET,
    HOST,
    TOP,
    WINDOW,
    Selector,
    along,
    free_ratio,
    inodes_free_ratio,
    seconds_until,
    targets,
    top,
)

OUT_DIR = HERE / "dashboards"


# --- the host dashboard --------------------------------------------------------------------------


def host_panels() -> list[dict]:
    s = HOST
    avail = s("docker_storage_filesystem_avail_bytes")
    files_free = s("docker_storage_filesystem_files_free")
    until_full = seconds_until(s, "docker_storage:filesystem_hours_until_full")
    until_out = seconds_until(s, "docker_storage:filesystem_inodes_hours_until_out")
    fs_legend = "{{mountpoint}}"
    orphan = s("docker_storage_driver_disk_bytes", 'owner="orphan"')
    img = top(s, "docker_storage_image_size_bytes", "image_id")
    layer = top(s, "docker_storage_layer_disk_bytes", "diff_id")
    vol = top(s, "docker_storage_volume_disk_bytes", "volume")
    last_success = s("docker_storage_sampler_last_success_timestamp_seconds")
    failures = s("docker_storage_sampler_failures_total")
    collector_errors = s("docker_storage_collector_errors_total")
    return [
        row("Filesystem holding the Docker root"),
        gauge(
            "Free space",
            "Available bytes / size of each filesystem holding a Docker area (statvfs; available to "
            "non-root users). Orange below 15 % (kubelet imagefs eviction), red below 10 %.",
            targets((free_ratio(s), fs_legend), instant=True),
            "percentunit",
            steps=FREE_STEPS,
        ),
        stat(
            "Available",
            "Bytes available to non-root users on each filesystem holding a Docker area.",
            targets((avail, fs_legend), instant=True),
            "bytes",
            h=6,
        ),
        stat(
            "Predicted time until full",
            f"Available bytes divided by the rate free space shrank over the last {WINDOW} (least-squares "
            "slope; the recording rule docker_storage:filesystem_hours_until_full, in seconds). "
            "Empty (Not filling) while free space is stable or growing, or without the rules loaded.",
            targets((until_full, fs_legend), instant=True),
            "s",
            steps=TTF_STEPS,
            no_value="Not filling",
            h=6,
        ),
        gauge(
            "Free inodes",
            "Free inodes / inodes of each filesystem holding a Docker area; overlay2 burns inodes.",
            targets((inodes_free_ratio(s), fs_legend), instant=True),
            "percentunit",
            steps=FREE_STEPS,
        ),
        stat(
            "Predicted time until out of inodes",
            f"Free inodes divided by the rate they shrank over the last {WINDOW} (the recording rule "
            "docker_storage:filesystem_inodes_hours_until_out, in seconds). Empty (Not filling) while "
            "free inodes are stable or growing, or without the rules loaded.",
            targets((until_out, fs_legend), instant=True),
            "s",
            steps=TTF_STEPS,
            no_value="Not filling",
            h=6,
        ),
        stat(
            "Mount",
            "Whether the filesystem is mounted read-only (its own super-block options). Docker cannot "
            "write anything on a read-only filesystem.",
            targets((s("docker_storage_filesystem_readonly"), fs_legend), instant=True),
            "short",
            value_map=MAP_RO,
            h=6,
        ),
        timeseries(
            "Available and size",
            "Available bytes and size of each filesystem holding a Docker area, over time.",
            targets(
                (avail, "available {{mountpoint}}"),
                (s("docker_storage_filesystem_size_bytes"), "size {{mountpoint}}"),
            ),
            "bytes",
        ),
        timeseries(
            "Free inodes and inodes",
            "Free inodes and inodes of each filesystem holding a Docker area, over time.",
            targets(
                (files_free, "free {{mountpoint}}"),
                (s("docker_storage_filesystem_files"), "inodes {{mountpoint}}"),
            ),
            "short",
        ),
        row("Where the space went"),
        timeseries(
            "Used and reclaimable by object",
            "docker system df SIZE (solid) and RECLAIMABLE (dashed) per object, in Docker's apparent bytes; "
            "volumes and writable layers as allocated bytes on disk from the scan; container logs (json-file "
            "and local drivers) and orphaned storage-driver dirs (owned by nothing, leaked) too.",
            targets(
                (f"sum by (object) ({s('docker_storage_used_bytes')})", "{{object}} used"),
                (f"sum by (object) ({s('docker_storage_reclaimable_bytes')})", "{{object}} reclaimable"),
                (f"sum({s('docker_storage_volumes_disk_bytes')})", "volumes on disk"),
                (f"sum({s('docker_storage_container_rw_bytes')})", "writable layers on disk"),
                (f"sum({s('docker_storage_container_log_bytes')})", "container logs"),
                (f"sum({orphan})", "orphaned dirs"),
            ),
            "bytes",
            w=16,
            h=9,
            overrides=[by_ref("B", custom__lineStyle={"fill": "dash", "dash": [10, 10]})],
        ),
        bargauge(
            "Reclaimable now",
            "What pruning would free, per object (docker system df RECLAIMABLE): images `docker image prune "
            "-a`, containers `docker container prune`, volumes `docker volume prune -a`, build cache `docker "
            "builder prune`. Orphaned dirs need the report and a manual clean-up.",
            targets(
                (f"sum by (object) ({s('docker_storage_reclaimable_bytes')})", "{{object}}"),
                (f"sum({orphan})", "orphaned dirs"),
                instant=True,
            ),
            "bytes",
            w=8,
            h=9,
        ),
        table(
            "Docker root directories",
            "Allocated bytes (du -s -x) and inodes under each top-level directory of the Docker root: "
            "overlay2/, image/, containers/, volumes/, buildkit/… (from the scan).",
            targets(s("docker_storage_root_disk_bytes"), s("docker_storage_root_files"), table=True),
            {"A": ("Bytes", "bytes"), "B": ("Inodes", "short")},
            "Bytes",
            w=8,
            h=9,
        ),
        timeseries(
            "Storage driver dir by owner",
            "Allocated bytes of the storage driver's dir (overlay2/) attributed to image layers, container "
            "writable layers, init layers, BuildKit snapshots, links, and orphan (owned by nothing). "
            "Stacked: the owners are exclusive.",
            targets((f"sum by (owner) ({s('docker_storage_driver_disk_bytes')})", "{{owner}}")),
            "bytes",
            w=10,
            h=9,
            stack=True,
        ),
        bargauge(
            "Storage driver dir by owner now",
            "Allocated bytes of the storage driver's dir by owner, now; `orphan` is leaked space.",
            targets((f"sum by (owner) ({s('docker_storage_driver_disk_bytes')})", "{{owner}}"), instant=True),
            "bytes",
            w=6,
            h=9,
        ),
        row("Biggest objects"),
        table(
            "Top images",
            f"The {TOP} biggest images by Docker's SIZE (shared layers included), their UNIQUE SIZE (what "
            "removing the image frees), containers created from them and age. Folded images excluded.",
            targets(
                img,
                along(s("docker_storage_image_unique_bytes"), img, "instance", "image_id"),
                along(s("docker_storage_image_containers"), img, "instance", "image_id"),
                along(
                    f"time() - {s('docker_storage_image_created_timestamp_seconds')}",
                    img,
                    "instance",
                    "image_id",
                ),
                table=True,
            ),
            {
                "A": ("Size", "bytes"),
                "B": ("Unique", "bytes"),
                "C": ("Containers", "short"),
                "D": ("Age", "s"),
            },
            "Size",
            w=14,
            h=10,
        ),
        table(
            "Top layers",
            f"The {TOP} biggest image layers by allocated bytes of their overlay2 dir, with the size Docker "
            "recorded at pull or build and how many images share each.",
            targets(
                layer,
                along(s("docker_storage_layer_size_bytes"), layer, "instance", "diff_id"),
                along(s("docker_storage_layer_images"), layer, "instance", "diff_id"),
                table=True,
            ),
            {"A": ("On disk", "bytes"), "B": ("Recorded size", "bytes"), "C": ("Images", "short")},
            "On disk",
            w=10,
            h=10,
        ),
        table(
            "Top volumes",
            f"The {TOP} biggest volumes by allocated bytes, with inodes and the containers that mount them "
            "(0: `docker volume prune -a` would remove it).",
            targets(
                vol,
                along(s("docker_storage_volume_files"), vol, "instance", "volume"),
                along(s("docker_storage_volume_containers"), vol, "instance", "volume"),
                table=True,
            ),
            {"A": ("Bytes", "bytes"), "B": ("Inodes", "short"), "C": ("Containers", "short")},
            "Bytes",
            w=8,
            h=9,
        ),
        bargauge(
            "Top container logs",
            f"The {TOP} containers with the biggest logs (json-file with rotated files, local driver). Cap "
            "them with the log-opts max-size and max-file.",
            targets(
                (top(s, "docker_storage_container_log_bytes", "container"), "{{container}} ({{image}})"),
                instant=True,
            ),
            "bytes",
            w=8,
            h=9,
        ),
        bargauge(
            "Top writable layers",
            f"The {TOP} containers with the biggest writable layer (overlay2/<mount-id>/diff): what they "
            "wrote outside volumes.",
            targets(
                (top(s, "docker_storage_container_rw_bytes", "container"), "{{container}} ({{image}})"),
                instant=True,
            ),
            "bytes",
            w=8,
            h=9,
        ),
        row("Counts"),
        timeseries(
            "Images by state",
            "Images by exclusive state: in_use (a container uses it), unused (tagged, no container), "
            "dangling (untagged: `docker image prune`), intermediate (classic builder steps).",
            targets((f"sum by (state) ({s('docker_storage_images')})", "{{state}}")),
            "short",
            w=8,
            stack=True,
        ),
        table(
            "Images by registry",
            "Images by the registry of their first tag (docker.io, ghcr.io, a private host, none for "
            "untagged) and the sum of their unique bytes.",
            targets(
                s("docker_storage_registry_images"), s("docker_storage_registry_unique_bytes"), table=True
            ),
            {"A": ("Images", "short"), "B": ("Unique bytes", "bytes")},
            "Images",
            w=8,
        ),
        timeseries(
            "Containers by state",
            "Containers by state (created, running, paused, restarting, removing, exited, dead).",
            targets((f"sum by (state) ({s('docker_storage_containers')})", "{{state}}")),
            "short",
            w=8,
            stack=True,
        ),
        timeseries(
            "Volumes by state",
            "Volumes in use (mounted by a container in any state) and unused, with their allocated bytes "
            "(dashed, right axis).",
            targets(
                (f"sum by (state) ({s('docker_storage_volumes')})", "{{state}}"),
                (f"sum by (state) ({s('docker_storage_volumes_disk_bytes')})", "{{state}} bytes"),
            ),
            "short",
            w=8,
            overrides=[
                by_ref(
                    "B",
                    unit="bytes",
                    custom__axisPlacement="right",
                    custom__lineStyle={"fill": "dash", "dash": [10, 10]},
                )
            ],
        ),
        stat(
            "Build cache",
            "BuildKit cache SIZE as `docker system df` counts it (records not shared with images) and its "
            "records. `docker builder prune` frees it.",
            targets(
                (s("docker_storage_build_cache_bytes"), "bytes"),
                (s("docker_storage_build_cache_records"), "records"),
                instant=True,
            ),
            "bytes",
            w=4,
            h=8,
            overrides=[by_ref("B", unit="short")],
        ),
        stat(
            "Layers",
            "Layers in layerdb, the sum of the sizes Docker recorded for them (apparent bytes) and the "
            "allocated bytes of their dirs by our walk.",
            targets(
                (s("docker_storage_layers"), "layers"),
                (s("docker_storage_layers_size_bytes"), "recorded"),
                (s("docker_storage_layers_disk_bytes"), "on disk"),
                instant=True,
            ),
            "short",
            w=4,
            h=8,
            overrides=[by_ref("B", unit="bytes"), by_ref("C", unit="bytes")],
        ),
        stat(
            "Orphaned dirs",
            "Storage-driver dirs owned by no layer, container or build-cache snapshot, and their allocated "
            "bytes. The exporter's `report` lists their paths; nothing in Docker removes them.",
            targets((s("docker_storage_orphan_dirs"), "dirs"), (orphan, "bytes"), instant=True),
            "short",
            w=4,
            h=8,
            steps=BAD_WHEN_POSITIVE,
            overrides=[by_ref("B", unit="bytes")],
        ),
        stat(
            "Gaps in the figures",
            "Entries the last scan could not read (permission denied: their bytes are missing) and objects "
            "each sampler's last run left out (logged by the exporter).",
            targets(
                (s("docker_storage_scan_unreadable_entries"), "unreadable entries"),
                (s("docker_storage_sampler_skipped_items"), "skipped by {{sampler}}"),
                instant=True,
            ),
            "short",
            w=4,
            h=8,
            steps=BAD_WHEN_POSITIVE,
        ),
        row("Exporter health"),
        stat(
            "Engine up",
            "1 if the exporter's last Docker Engine API sample succeeded.",
            targets(s("docker_storage_engine_up"), instant=True),
            "short",
            w=3,
            value_map=MAP_UP,
        ),
        stat(
            "Layer attribution",
            "1 if layers and storage-driver dirs can be attributed (overlay2 with the graphdriver image "
            "store). When 0 the layer, driver and writable-layer panels stay empty, by design.",
            targets(s("docker_storage_layer_attribution_available"), instant=True),
            "short",
            w=3,
            value_map=MAP_YES,
        ),
        stat(
            "Sampler success",
            "1 if each sampler's last run succeeded; a failing sampler keeps serving its last good data.",
            targets((s("docker_storage_sampler_success"), "{{sampler}}"), instant=True),
            "short",
            w=6,
            value_map=MAP_OK,
        ),
        stat(
            "Sampler available",
            "0 if a sampler cannot work in this setup (the scan, when the Docker root is not visible to the "
            "exporter); the reason is in the exporter's log and on its / page.",
            targets((s("docker_storage_sampler_available"), "{{sampler}}"), instant=True),
            "short",
            w=6,
            value_map=MAP_YES,
        ),
        stat(
            "Sampler failures",
            "Failed sampler runs, and the exporter's own failures while building a scrape, in the "
            "dashboard's time range.",
            targets(
                (f"sum by (sampler) (increase({failures}[$__range]))", "{{sampler}}"),
                (f"sum(increase({collector_errors}[$__range]))", "collector errors"),
                instant=True,
            ),
            "short",
            w=6,
            steps=BAD_WHEN_POSITIVE,
        ),
        table(
            "Engine",
            "The engine the exporter samples: engine, version, API version, storage driver, image store "
            "and Docker root.",
            targets(s("docker_storage_engine_info"), table=True),
            {},
            "engine",
            w=24,
            h=4,
            hide=("job", "instance", "Value"),
        ),
        timeseries(
            "Time since last success",
            "Age of each sampler's last successful run; it should stay near the sampler's interval.",
            targets((f"time() - {last_success}", "{{sampler}}")),
            "s",
            w=8,
        ),
        timeseries(
            "Sampler duration",
            "Wall time of each sampler's last run (the scan walks the Docker root under a time budget).",
            targets((s("docker_storage_sampler_duration_seconds"), "{{sampler}}")),
            "s",
            w=8,
        ),
        timeseries(
            "Folded series",
            "Items per family folded into one `__other__` series by the --metrics.top-n cap; tables above "
            "show the biggest items only.",
            targets((s("docker_storage_series_folded"), "{{family}}")),
            "short",
            w=8,
        ),
    ]


def host_dashboard() -> dict:
    instance = query_variable(
        "instance",
        "Host",
        'label_values(docker_storage_exporter_build_info{job=~"$job"}, instance)',
        multi=False,
    )
    return dashboard(
        HOST_UID,
        "Docker storage / Host",
        "Where one Docker host's disk went and when it will be full (docker-storage-exporter).",
        [datasource_variable(), JOB_VAR, instance],
        host_panels(),
        "Docker storage / Fleet",
    )


# --- the fleet dashboard -------------------------------------------------------------------------


def failing_samplers(sel: Selector) -> str:
    """Samplers whose last run failed, leaving out those unavailable by setup (a scan that cannot
    see the Docker root), as the DockerStorageScanFailing alert does."""
    success = sel("docker_storage_sampler_success")
    available = sel("docker_storage_sampler_available")
    return f"({success} == 0) and on (job, instance, sampler) ({available} == 1)"


def per_host(expr: str, agg: str = "sum") -> str:
    return f"{agg} by (job, instance) ({expr})"


def fleet_panels() -> list[dict]:
    s = FLEET
    avail = s("docker_storage_filesystem_avail_bytes")
    orphan = s("docker_storage_driver_disk_bytes", 'owner="orphan"')
    dangling = s("docker_storage_images", 'state="dangling"')
    filling = per_host(seconds_until(s, "docker_storage:filesystem_hours_until_full"), "min")
    instance_link = [by_name("instance", links=[TABLE_LINK])]
    return [
        stat(
            "Hosts",
            "Exporters reporting (docker_storage_exporter_build_info).",
            targets(f"count({s('docker_storage_exporter_build_info')})", instant=True),
            "short",
        ),
        stat(
            "Exporters down",
            "Scrape targets of the selected jobs that Prometheus cannot scrape (up == 0).",
            targets(f"count({s('up')} == 0) or vector(0)", instant=True),
            "short",
            steps=BAD_WHEN_POSITIVE,
        ),
        stat(
            "Engines down",
            "Exporters whose last Docker Engine API sample failed.",
            targets(f"count({s('docker_storage_engine_up')} == 0) or vector(0)", instant=True),
            "short",
            steps=BAD_WHEN_POSITIVE,
        ),
        stat(
            "Failing samplers",
            "Samplers whose last run failed, over all hosts (a sampler unavailable by setup, such as a scan "
            "that cannot see the Docker root, is left out, as in the alerts).",
            targets(f"count({failing_samplers(s)}) or vector(0)", instant=True),
            "short",
            steps=BAD_WHEN_POSITIVE,
        ),
        stat(
            "Reclaimable",
            "docker system df RECLAIMABLE summed over objects and hosts.",
            targets(f"sum({s('docker_storage_reclaimable_bytes')})", instant=True),
            "bytes",
        ),
        stat(
            "Orphaned",
            "Allocated bytes of storage-driver dirs owned by nothing, summed over hosts.",
            targets(f"sum({orphan})", instant=True),
            "bytes",
        ),
        table(
            "Hosts filling up first",
            f"Hosts whose Docker filesystem shrank over the last {WINDOW}, soonest full first: available "
            "bytes divided by the shrink rate (docker_storage:filesystem_hours_until_full in seconds). "
            "Hosts that are not filling are not listed. Click a host for its dashboard.",
            targets(
                f"sort({filling})",
                along(per_host(free_ratio(s), "min"), filling, "job", "instance"),
                table=True,
            ),
            {"A": ("Time until full", "s"), "B": ("Free", "percentunit")},
            "Time until full",
            desc=False,
            hide=("Time",),
            overrides=instance_link,
        ),
        table(
            "Hosts by free space",
            "Every host's Docker filesystem, least free first: free percent, available bytes and free "
            "inodes percent (the fullest filesystem of each host). Click a host for its dashboard.",
            targets(
                f"sort({per_host(free_ratio(s), 'min')})",
                per_host(avail, "min"),
                per_host(inodes_free_ratio(s), "min"),
                table=True,
            ),
            {"A": ("Free", "percentunit"), "B": ("Available", "bytes"), "C": ("Free inodes", "percentunit")},
            "Free",
            desc=False,
            hide=("Time",),
            overrides=instance_link,
        ),
        timeseries(
            "Free space per host",
            "Free percent of the fullest Docker filesystem of each host over time.",
            targets((per_host(free_ratio(s), "min"), "{{instance}}")),
            "percentunit",
            w=24,
            links=[FIELD_LINK],
        ),
        bargauge(
            "Reclaimable per host",
            "docker system df RECLAIMABLE summed over images, containers, volumes and build cache, per host.",
            targets(
                (f"sort_desc({s('docker_storage:reclaimable_bytes:sum')})", "{{instance}}"), instant=True
            ),
            "bytes",
            links=[FIELD_LINK],
        ),
        bargauge(
            "Dangling images per host",
            "Untagged images no container uses (`docker image prune` removes them), per host.",
            targets((f"sort_desc({per_host(dangling)})", "{{instance}}"), instant=True),
            "short",
            links=[FIELD_LINK],
        ),
        bargauge(
            "Build cache per host",
            "BuildKit cache SIZE as docker system df counts it, per host (`docker builder prune`).",
            targets(
                (f"sort_desc({per_host(s('docker_storage_build_cache_bytes'))})", "{{instance}}"),
                instant=True,
            ),
            "bytes",
            links=[FIELD_LINK],
        ),
        bargauge(
            "Orphaned bytes per host",
            "Allocated bytes of storage-driver dirs owned by no layer, container or build-cache snapshot "
            "(leaked), per host; the exporter's `report` lists their paths.",
            targets((f"sort_desc({per_host(orphan)})", "{{instance}}"), instant=True),
            "bytes",
            links=[FIELD_LINK],
        ),
        timeseries(
            "Reclaimable per host over time",
            "docker system df RECLAIMABLE per host over time.",
            targets((s("docker_storage:reclaimable_bytes:sum"), "{{instance}}")),
            "bytes",
            w=16,
            links=[FIELD_LINK],
        ),
        table(
            "Exporter health per host",
            "Per host: Prometheus scrape up, engine up, samplers failing now, the oldest sampler success age "
            "and whether layers can be attributed. Click a host for its dashboard.",
            targets(
                per_host(s("up"), "max"),
                per_host(s("docker_storage_engine_up"), "max"),
                # 0 for hosts where nothing fails, so every host has a row.
                f"count by (job, instance) ({failing_samplers(s)}) or "
                f"0 * count by (job, instance) ({s('docker_storage_sampler_success')})",
                per_host(f"time() - {s('docker_storage_sampler_last_success_timestamp_seconds')}", "max"),
                per_host(s("docker_storage_layer_attribution_available"), "max"),
                table=True,
            ),
            {
                "A": ("Scrape up", "short"),
                "B": ("Engine up", "short"),
                "C": ("Failing samplers", "short"),
                "D": ("Oldest success age", "s"),
                "E": ("Layer attribution", "short"),
            },
            "Failing samplers",
            w=24,
            hide=("Time",),
            overrides=instance_link,
        ),
        table(
            "Engines",
            "Engine, version, API version, storage driver and image store of each host.",
            targets(s("docker_storage_engine_info"), table=True),
            {},
            "instance",
            desc=False,
            w=24,
            hide=("Value",),
            overrides=instance_link,
        ),
    ]


def fleet_dashboard() -> dict:
    return dashboard(
        FLEET_UID,
        "Docker storage / Fleet",
        "Which Docker hosts will fill first and where space can be reclaimed (docker-storage-exporter).",
        [datasource_variable(), JOB_VAR],
        fleet_panels(),
        "Docker storage / Host",
    )


# --- output --------------------------------------------------------------------------------------


def build() -> dict[str, dict]:
    """File name → dashboard."""
    return {"host.json": host_dashboard(), "fleet.json": fleet_dashboard()}


def render(dash: dict) -> str:
    return json.dumps(dash, indent=2, sort_keys=True) + "\n"


def check(out_dir: Path = OUT_DIR, dashboards: dict[str, dict] | None = None) -> list[str]:
    """One message per file that is missing or differs from a fresh generation."""
    problems = []
    for name, dash in (dashboards or build()).items():
        path = out_dir / name
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        if not path.is_file():
            problems.append(f"{shown} is missing: run python grafana/generate.py")
        elif path.read_text() != render(dash):
            problems.append(f"{shown} differs from a fresh generation: run python grafana/generate.py")
    return problems


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dash in build().items():
        path = out_dir / name
        path.write_text(render(dash))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when the committed JSON is not up to date")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="dashboards directory (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
