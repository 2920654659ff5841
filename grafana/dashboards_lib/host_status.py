"""The host dashboard's rows on state: object counts, and the exporter's own health."""

from __future__ import annotations

from .panels import BAD_WHEN_POSITIVE, MAP_OK, MAP_UP, MAP_YES, by_ref, row, stat, table, timeseries
from .queries import HOST, orphaned, targets


def counts_row() -> list[dict]:
    """Images, containers and volumes by state, build cache, layers, orphans and gaps in the figures."""
    s = HOST
    orphan = orphaned(s)
    return [
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
    ]


def exporter_health_row() -> list[dict]:
    """Whether the engine and each sampler work, and how long and how fresh their runs are."""
    s = HOST
    last_success = s("docker_storage_sampler_last_success_timestamp_seconds")
    failures = s("docker_storage_sampler_failures_total")
    collector_errors = s("docker_storage_collector_errors_total")
    return [
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
