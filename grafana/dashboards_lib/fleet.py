"""The fleet dashboard: which Docker hosts will fill first and where space can be reclaimed."""

from __future__ import annotations

from .dashboard import FIELD_LINK, FLEET_UID, JOB_VAR, TABLE_LINK, dashboard, datasource_variable
from .panels import BAD_WHEN_POSITIVE, bargauge, by_name, stat, table, timeseries
from .queries import (
    FLEET,
    WINDOW,
    Selector,
    along,
    free_ratio,
    inodes_free_ratio,
    orphaned,
    registry_free_ratio,
    seconds_until,
    targets,
)


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
    orphan = orphaned(s)
    dangling = s("docker_storage_images", 'state="dangling"')
    filling = per_host(seconds_until(s, "docker_storage:filesystem_hours_until_full"), "min")
    instance_link = [by_name("instance", links=[TABLE_LINK])]
    gc_default = s("docker_storage_registry_store_reclaimable_bytes", 'mode="default"')
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
        bargauge(
            "Registry GC would free per host",
            "Bytes `registry garbage-collect` would delete from the self-hosted registries each host's "
            "exporter reads (--registry.root), summed over its roots. Hosts without a registry root are "
            "not listed.",
            targets((f"sort_desc({per_host(gc_default)})", "{{instance}}"), instant=True),
            "bytes",
            links=[FIELD_LINK],
        ),
        table(
            "Self-hosted registries",
            "Per host with --registry.root, most reclaimable first: all blob data, what `garbage-collect` "
            "and `garbage-collect --delete-untagged` would free, bytes of stale uploads (older than 168 h; "
            "the registry's purger removes them), the registry's free space (its fullest filesystem) and "
            "read errors. Click a host for its dashboard and the registry row.",
            targets(
                f"sort_desc({per_host(gc_default)})",
                per_host(s("docker_storage_registry_store_blob_bytes")),
                per_host(s("docker_storage_registry_store_reclaimable_bytes", 'mode="delete_untagged"')),
                per_host(s("docker_storage_registry_store_upload_bytes", 'stale="true"')),
                per_host(registry_free_ratio(s), "min"),
                per_host(s("docker_storage_registry_store_read_errors")),
                table=True,
            ),
            {
                "A": ("GC frees", "bytes"),
                "B": ("Blob data", "bytes"),
                "C": ("GC -m frees", "bytes"),
                "D": ("Stale uploads", "bytes"),
                "E": ("Free", "percentunit"),
                "F": ("Read errors", "short"),
            },
            "GC frees",
            w=24,
            hide=("Time",),
            overrides=instance_link,
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
