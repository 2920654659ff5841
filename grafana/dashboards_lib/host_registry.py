"""The host dashboard's row on a self-hosted registry's storage (the registry sampler, on with
--registry.root): what its blobs hold, what garbage collection would free, the repositories,
unfinished uploads, the registry's filesystem and the sampler's health.

A host without --registry.root has none of these families, so the row is collapsed (host.py):
closed it shows nothing, opened every panel says what it lacks. The registry families carry a
`root` label only with more than one root; per_root() names a single one `registry`."""

from __future__ import annotations

from .panels import (
    BAD_WHEN_POSITIVE,
    FREE_STEPS,
    MAP_OK,
    TTF_STEPS,
    bargauge,
    by_ref,
    gauge,
    row,
    stat,
    table,
    timeseries,
)
from .queries import HOST, TOP, WINDOW, along, per_root, registry_free_ratio, seconds_until, targets, top

P = "docker_storage_registry_store_"
NO_ROOT = "No --registry.root"
STALE_AGE = 168 * 3600  # the registry's default uploadpurging age: older uploads are stale
DASHED = {"fill": "dash", "dash": [10, 10]}


def registry_row() -> list[dict]:
    s = HOST
    blob_bytes = s(P + "blob_bytes")
    reclaimable = s(P + "reclaimable_bytes")
    child_only = s(P + "index_child_only_bytes")
    avail = s(P + "filesystem_avail_bytes")
    until_full = seconds_until(s, "docker_storage:registry_filesystem_hours_until_full")
    # Matched along by root too: the same repository name may be in two roots.
    repo = top(s, P + "repository_bytes", "repository")
    registry_sampler = 'sampler="registry"'
    gc_default = s(P + "reclaimable_bytes", 'mode="default"')
    gc_untagged = s(P + "reclaimable_bytes", 'mode="delete_untagged"')
    last_success = s("docker_storage_sampler_last_success_timestamp_seconds", registry_sampler)
    tagged = s(P + "manifests", 'tagged="true"')
    untagged = s(P + "manifests", 'tagged="false"')
    root_legend = "{{root}}"
    return [
        row("Self-hosted registry storage (--registry.root)"),
        stat(
            "Registry contents",
            "What the registry's filesystem storage holds: all blob data (st_size of every "
            "blobs/…/data), its blobs and repositories. Empty without --registry.root.",
            targets(
                (f"sum({blob_bytes})", "blob data"),
                (f"sum({s(P + 'blobs')})", "blobs"),
                (f"sum({s(P + 'repositories')})", "repositories"),
                instant=True,
            ),
            "bytes",
            h=6,
            overrides=[by_ref("B", unit="short"), by_ref("C", unit="short")],
            no_value=NO_ROOT,
        ),
        stat(
            "Garbage collection would free",
            "Bytes of exactly the blobs `registry garbage-collect --dry-run` lists as eligible for "
            "deletion, and with `--delete-untagged` (-m). Distribution 2.x's -m also deletes the untagged "
            "platform manifests of tagged indexes and what only they hold (index children), breaking those "
            "multi-platform images. Run it with the registry read-only or stopped: see the runbook.",
            targets(
                (f"sum({gc_default})", "garbage-collect"),
                (f"sum({gc_untagged})", "--delete-untagged"),
                (f"sum({child_only})", "index children (2.x -m)"),
                instant=True,
            ),
            "bytes",
            w=5,
            h=6,
            no_value=NO_ROOT,
        ),
        gauge(
            "Registry free space",
            "Available bytes / size of the filesystem holding each registry root (statvfs; available to "
            "non-root users). A full registry filesystem fails every push. Orange below 15 %, red below "
            "10 %.",
            targets((per_root(registry_free_ratio(s)), root_legend), instant=True),
            "percentunit",
            steps=FREE_STEPS,
        ),
        stat(
            "Registry available",
            "Bytes available to non-root users on the filesystem holding each registry root.",
            targets((per_root(avail), root_legend), instant=True),
            "bytes",
            w=3,
            h=6,
            no_value=NO_ROOT,
        ),
        stat(
            "Registry time until full",
            f"Available bytes of the registry's filesystem divided by the rate they shrank over the last "
            f"{WINDOW} (the recording rule docker_storage:registry_filesystem_hours_until_full, in seconds). "
            "Empty (Not filling) while free space is stable or growing, or without the rules loaded.",
            targets((per_root(until_full), root_legend), instant=True),
            "s",
            steps=TTF_STEPS,
            no_value="Not filling",
            h=6,
        ),
        stat(
            "Registry sampler",
            "Whether the registry sampler's last run succeeded (it fails only when no root can be read; "
            "one unreadable root of several shows under read errors, kind root). A failing sampler keeps "
            "serving its last good figures.",
            targets(s("docker_storage_sampler_success", registry_sampler), instant=True),
            "short",
            h=6,
            value_map=MAP_OK,
            no_value=NO_ROOT,
        ),
        timeseries(
            "Registry blob bytes by state",
            "Blob data by state: referenced (garbage-collect keeps it), unreferenced (it deletes it), young "
            "(unreferenced but stored less than 1 h ago: maybe a push whose manifest has not come yet). "
            "Stacked: the states sum to all blob data.",
            targets((f"sum by (state) ({blob_bytes})", "{{state}}")),
            "bytes",
            stack=True,
        ),
        timeseries(
            "Registry reclaimable by garbage collection",
            "What `garbage-collect` (default) and `garbage-collect --delete-untagged` (delete_untagged) "
            "would free, over time; dashed: what only untagged children of tagged indexes hold, which "
            "Distribution 2.x's -m deletes on top.",
            targets(
                (f"sum by (mode) ({reclaimable})", "{{mode}}"),
                (f"sum({child_only})", "index children only (2.x -m)"),
            ),
            "bytes",
            overrides=[by_ref("B", custom__lineStyle=DASHED)],
        ),
        table(
            "Top registry repositories",
            f"The {TOP} repositories whose manifests reference the most bytes (each blob once per "
            "repository; a blob shared by repositories counts in each), the bytes no other repository "
            "references (what deleting the repository and running GC frees), tags and manifest revisions "
            "(untagged: what --delete-untagged removes unless a tagged index names them). Folded "
            "repositories excluded.",
            targets(
                repo,
                along(s(P + "repository_unique_bytes"), repo, "instance", "root", "repository"),
                along(s(P + "repository_tags"), repo, "instance", "root", "repository"),
                along(f"sum without (tagged) ({tagged})", repo, "instance", "root", "repository"),
                along(f"sum without (tagged) ({untagged})", repo, "instance", "root", "repository"),
                table=True,
            ),
            {
                "A": ("Bytes", "bytes"),
                "B": ("Unique", "bytes"),
                "C": ("Tags", "short"),
                "D": ("Tagged manifests", "short"),
                "E": ("Untagged manifests", "short"),
            },
            "Bytes",
            w=14,
            h=10,
        ),
        bargauge(
            "Top registry repositories by unique bytes",
            f"The {TOP} repositories holding the most bytes no other repository references.",
            targets((top(s, P + "repository_unique_bytes", "repository"), "{{repository}}"), instant=True),
            "bytes",
            w=10,
            h=10,
        ),
        timeseries(
            "Unfinished uploads",
            "Blob uploads started and never finished (_uploads), by stale (older than 168 h, the registry's "
            "default purge age), and the bytes they received (dashed, right axis). garbage-collect never "
            "removes them; the running registry's upload purger does.",
            targets(
                (f"sum by (stale) ({s(P + 'uploads')})", "uploads (stale={{stale}})"),
                (f"sum by (stale) ({s(P + 'upload_bytes')})", "bytes (stale={{stale}})"),
            ),
            "short",
            w=8,
            overrides=[by_ref("B", unit="bytes", custom__axisPlacement="right", custom__lineStyle=DASHED)],
        ),
        stat(
            "Oldest unfinished upload",
            "Age of the oldest unfinished upload of each root (its startedat). Red from 168 h, the "
            "registry's default upload purge age: the purger (every 24 h) should take it.",
            targets(
                (per_root(f"time() - {s(P + 'upload_oldest_start_timestamp_seconds')}"), root_legend),
                instant=True,
            ),
            "s",
            h=8,
            steps=[("green", None), ("red", STALE_AGE)],
            no_value="No upload",
        ),
        stat(
            "Dangling links",
            "Links whose blob is missing, by kind: layer (_layers), revision (_manifests/revisions: GC "
            "skips them), tag (a tag's current link: pulling that tag fails).",
            targets((f"sum by (kind) ({s(P + 'dangling_links')})", "{{kind}}"), instant=True),
            "short",
            h=8,
            steps=BAD_WHEN_POSITIVE,
            no_value=NO_ROOT,
        ),
        stat(
            "Registry read errors",
            "Items the registry sampler's last pass could not read or use, by kind (root: not a registry "
            "or unreadable; listing, link, manifest, blob, upload, repository_name). Each bad path is in "
            "the exporter's log; the rest is still measured.",
            targets((f"sum by (kind) ({s(P + 'read_errors')})", "{{kind}}"), instant=True),
            "short",
            w=8,
            h=8,
            steps=BAD_WHEN_POSITIVE,
            no_value=NO_ROOT,
        ),
        timeseries(
            "Registry filesystem available and size",
            "Available bytes and size of the filesystem holding each registry root, over time.",
            targets(
                (per_root(avail), "available {{root}}"),
                (per_root(s(P + "filesystem_size_bytes")), "size {{root}}"),
            ),
            "bytes",
        ),
        timeseries(
            "Registry sampler runs",
            "Age of the registry sampler's last success (it should stay near --sampler.registry.interval, "
            "5m by default) and the wall time of its last run (a steady rescan lists dirs and reads tag "
            "links only; the first read stats every blob).",
            targets(
                (f"time() - {last_success}", "since last success"),
                (s("docker_storage_sampler_duration_seconds", registry_sampler), "duration"),
            ),
            "s",
            overrides=[by_ref("B", custom__lineStyle=DASHED)],
        ),
    ]
