"""A self-hosted registry's filesystem storage (the registry sampler's snapshot): blobs by
state, what garbage collection would free, per-repository bytes, uploads, dangling links.
Every family gains a `root` label when more than one --registry.root is given."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from exporter.collector.families import Family, folded, gauge
from exporter.collector.folding import OTHER, fold
from exporter.collector.labels import shown
from exporter.registry_model import (
    BLOB_STATES,
    DANGLING_KINDS,
    GC_MODES,
    RegistryRoot,
    RegistrySnapshot,
    RepositoryUsage,
)
from exporter.sources.registry_format import ERROR_KINDS

P = "registry_store_"
BLOBS = gauge(
    P + "blobs",
    "Blobs in the registry's storage by state: referenced (garbage-collect keeps them), "
    "unreferenced (it deletes them), young (unreferenced, stored less than 1 h ago: maybe a "
    "push in flight). The states sum to every blob.",
    ["state"],
)
BLOB_BYTES = gauge(
    P + "blob_bytes",
    "Bytes (st_size of the data files) of the registry's blobs by state; sums to all blob data.",
    ["state"],
)
RECLAIMABLE = gauge(
    P + "reclaimable_bytes",
    "Bytes of the blobs `registry garbage-collect --dry-run` lists as eligible for deletion "
    "(mode default) and with `--delete-untagged` (mode delete_untagged), as Distribution 3.x marks.",
    ["mode"],
)
INDEX_CHILD_ONLY = gauge(
    P + "index_child_only_bytes",
    "Bytes only untagged child manifests of a tagged index hold (their configs and layers): "
    "Distribution 2.x's `garbage-collect -m` deletes these too, breaking those multi-platform "
    "images (distribution#3004); 3.x keeps them.",
)
REPO_LABELS = ("repository",)
REPO_BYTES = gauge(
    P + "repository_bytes",
    "Bytes of the blobs the repository's manifests reference (manifests, configs, layers, each once).",
    REPO_LABELS,
)
REPO_UNIQUE = gauge(
    P + "repository_unique_bytes",
    "Bytes of the blobs only this repository references: what deleting it and running GC frees.",
    REPO_LABELS,
)
REPO_TAGS = gauge(P + "repository_tags", "Tags of the repository.", REPO_LABELS)
MANIFESTS = gauge(
    P + "manifests",
    "Manifest revisions of the repository, by whether a tag names them (tagged=false: what "
    "`garbage-collect --delete-untagged` removes unless a tagged index names them).",
    ["repository", "tagged"],
)
REPOSITORIES = gauge(P + "repositories", "Repositories in the registry's storage.")
UPLOADS = gauge(
    P + "uploads",
    "Unfinished blob uploads (_uploads) by stale: older than 168 h, the registry's default "
    "upload purge age. garbage-collect never removes them; the running registry's purger does.",
    ["stale"],
)
UPLOAD_BYTES = gauge(P + "upload_bytes", "Bytes received by unfinished uploads, by stale.", ["stale"])
UPLOAD_OLDEST = gauge(
    P + "upload_oldest_start_timestamp_seconds",
    "Start time (startedat) of the oldest unfinished upload; absent when there is none.",
)
DANGLING = gauge(
    P + "dangling_links",
    "Links whose blob is missing, by kind: layer (_layers), revision (_manifests/revisions), "
    "tag (a tag's current link).",
    ["kind"],
)
FS_SIZE = gauge(P + "filesystem_size_bytes", "Size of the filesystem holding the registry root (statvfs).")
FS_AVAIL = gauge(
    P + "filesystem_avail_bytes",
    "Bytes available to unprivileged users on the filesystem holding the registry root (statvfs).",
)
READ_ERRORS = gauge(
    P + "read_errors",
    "Items the last pass could not read or use, by kind: root (not a registry, or unreadable), "
    "listing, link (missing or garbage), manifest (unreadable, not JSON, unknown schema), blob "
    "(a blob dir without data), upload (no startedat), repository_name (one Distribution "
    "rejects). Each is logged once; the rest is still measured.",
    ["kind"],
)
PER_REPO = (REPO_BYTES, REPO_UNIQUE, REPO_TAGS, MANIFESTS)


def _new(family: Family, multi: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        family.name, family.doc, labels=(["root"] if multi else []) + list(family.labels)
    )


def _other(folded_repos: list[RepositoryUsage]) -> RepositoryUsage:
    return RepositoryUsage(
        OTHER,
        sum(r.bytes for r in folded_repos),
        sum(r.unique_bytes for r in folded_repos),
        sum(r.tags for r in folded_repos),
        sum(r.manifests_tagged for r in folded_repos),
        sum(r.manifests_untagged for r in folded_repos),
    )


def registry(snap: RegistrySnapshot, top_n: int, hide: bool) -> Iterator[Metric]:
    multi = len(snap.roots) > 1
    fams = {f.name: _new(f, multi) for f in (
        BLOBS, BLOB_BYTES, RECLAIMABLE, INDEX_CHILD_ONLY, *PER_REPO, REPOSITORIES, UPLOADS,
        UPLOAD_BYTES, UPLOAD_OLDEST, DANGLING, FS_SIZE, FS_AVAIL, READ_ERRORS,
    )}  # fmt: skip
    folded_total = 0
    for root in snap.roots:
        folded_total += _root(root, fams, multi, top_n, hide)
    yield from (f for f in fams.values() if f.samples)
    yield folded((fams[f.name] for f in PER_REPO), folded_total)


def _root(r: RegistryRoot, fams: dict[str, GaugeMetricFamily], multi: bool, top_n: int, hide: bool) -> int:
    def add(family: Family, labels: Sequence[str], value: float) -> None:
        fams[family.name].add_metric(([r.path] if multi else []) + list(labels), value)

    for kind in ERROR_KINDS:
        add(READ_ERRORS, [kind], r.errors.get(kind, 0))
    if r.error:
        return 0  # nothing else is known of this root; the others are still served
    for state in BLOB_STATES:
        add(BLOBS, [state], r.blobs.get(state, 0))
        add(BLOB_BYTES, [state], r.blob_bytes.get(state, 0))
    for mode in GC_MODES:
        add(RECLAIMABLE, [mode], r.reclaimable.get(mode, 0))
    add(INDEX_CHILD_ONLY, [], r.index_child_only_bytes)
    add(REPOSITORIES, [], len(r.repositories))
    f = fold(r.repositories, top_n, _other)
    for repo in [*f.kept, *([f.other] if f.other is not None else [])]:
        name = repo.name if repo.name == OTHER else shown(repo.name, hide)
        add(REPO_BYTES, [name], repo.bytes)
        add(REPO_UNIQUE, [name], repo.unique_bytes)
        add(REPO_TAGS, [name], repo.tags)
        add(MANIFESTS, [name, "true"], repo.manifests_tagged)
        add(MANIFESTS, [name, "false"], repo.manifests_untagged)
    for stale, uploads in (("false", r.fresh_uploads), ("true", r.stale_uploads)):
        add(UPLOADS, [stale], uploads.count)
        add(UPLOAD_BYTES, [stale], uploads.bytes)
    if r.oldest_upload_started is not None:
        add(UPLOAD_OLDEST, [], r.oldest_upload_started)
    for kind in DANGLING_KINDS:
        add(DANGLING, [kind], r.dangling.get(kind, 0))
    if r.filesystem_size is not None and r.filesystem_avail is not None:
        add(FS_SIZE, [], r.filesystem_size)
        add(FS_AVAIL, [], r.filesystem_avail)
    return f.folded
