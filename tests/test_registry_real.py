"""The registry sampler on a real docker-registry 2.8 tree (tests/harness/registry_seed.py),
against the registry's own `garbage-collect --dry-run [-m]`, the blob files themselves and
what the test pushed; and the tree is unchanged by the exporter's reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from exporter import registry_gc as gc
from exporter.sources.registry import RegistryReader
from tests.harness.exporter import ExporterProcess, sampled_after, value
from tests.harness.registry_seed import UPLOAD_BYTES, RegistryState
from tests.harness.registry_tree import tree_listing

P = "docker_storage_registry_store_"


def test_our_gc_sets_are_the_registrys_own(registry_state: RegistryState) -> None:
    """In both modes, blob for blob: default as the registry's GC (2.8 and 3.x agree); with -m,
    2.8 also deletes the untagged platform manifests' configs and layers, which 3.x keeps."""
    s = registry_state
    assert s.gc_default and s.gc_untagged > s.gc_default  # the seed made work for both modes
    assert s.gc_untagged - s.gc_default == s.untagged_only | s.child_only  # as the seed meant
    tree = RegistryReader(str(s.root)).read()
    assert dict(tree.errors) == {}
    assert gc.sweep(tree, gc.marked(tree, False)) == s.gc_default
    assert gc.sweep(tree, gc.marked(tree, True, recursive=False)) == s.gc_untagged
    v3 = gc.sweep(tree, gc.marked(tree, True))
    assert s.child_only and s.child_only <= s.gc_untagged
    assert v3 == s.gc_untagged - s.child_only


def test_metrics_equal_the_oracle(registry_state: RegistryState, registry_exporter: ExporterProcess) -> None:
    s, m = registry_state, registry_exporter.scrape()
    assert "docker_storage_registry_store_blobs" in m  # one root: no root label below
    assert all("root" not in labels for labels, _ in m[P + "blobs"])
    assert value(m, P + "reclaimable_bytes", mode="default") == s.size(s.gc_default)
    v2_extra = value(m, P + "index_child_only_bytes")
    assert v2_extra == s.size(s.child_only) > 0
    assert value(m, P + "reclaimable_bytes", mode="delete_untagged") == s.size(s.gc_untagged) - v2_extra
    every = s.all_blobs()
    assert sum(v for _, v in m[P + "blob_bytes"]) == sum(every.values())
    assert sum(v for _, v in m[P + "blobs"]) == len(every)
    # Only the blob uploaded without a manifest is young; GC would delete it too.
    assert value(m, P + "blobs", state="young") == 1
    assert value(m, P + "blob_bytes", state="young") == every[s.loose]
    assert s.loose in s.gc_default
    assert value(m, P + "blob_bytes", state="unreferenced") == s.size(s.gc_default - {s.loose})
    assert value(m, P + "blob_bytes", state="referenced") == sum(every.values()) - s.size(s.gc_default)
    # Per repository: the blobs its manifests reference (from the API at push time).
    assert value(m, P + "repositories") == len(s.repos) == 5
    for repo, held in s.repos.items():
        assert value(m, P + "repository_bytes", repository=repo) == s.size(held), repo
        others = set().union(*(h for r, h in s.repos.items() if r != repo))
        assert value(m, P + "repository_unique_bytes", repository=repo) == s.size(held - others), repo
        assert value(m, P + "repository_tags", repository=repo) == s.tags[repo], repo
        tagged, untagged = s.manifests[repo]
        assert value(m, P + "manifests", repository=repo, tagged="true") == tagged, repo
        assert value(m, P + "manifests", repository=repo, tagged="false") == untagged, repo
    assert value(m, P + "repository_unique_bytes", repository="team/base") == 0  # all shared
    # The unfinished upload, with the bytes PATCHed.
    assert value(m, P + "uploads", stale="false") == 1 and value(m, P + "uploads", stale="true") == 0
    assert value(m, P + "upload_bytes", stale="false") == UPLOAD_BYTES
    oldest = value(m, P + "upload_oldest_start_timestamp_seconds")
    assert oldest is not None and s.upload_started[0] <= oldest <= s.upload_started[1]
    assert all(v == 0 for _, v in m[P + "dangling_links"])
    assert all(v == 0 for _, v in m[P + "read_errors"])
    st = os.statvfs(s.root)
    assert value(m, P + "filesystem_size_bytes") == st.f_blocks * st.f_frsize
    avail = value(m, P + "filesystem_avail_bytes")
    assert avail is not None and abs(avail - st.f_bavail * st.f_frsize) < 64 * 2**20  # others write


def test_the_tree_is_unchanged_by_the_exporter(
    registry_state: RegistryState, registry_exporter: ExporterProcess
) -> None:
    t = __import__("time").time()
    registry_exporter.wait_until(sampled_after(t, "registry"), timeout=30, what="another registry sample")
    assert tree_listing(registry_state.root) == registry_state.listing


def test_report_says_the_same(registry_state: RegistryState, registry_exporter: ExporterProcess) -> None:
    s = registry_state
    host = registry_exporter.cmd[registry_exporter.cmd.index("--docker.host") + 1]
    base = [sys.executable, "-m", "exporter", "report", "--docker.host", host,
            "--registry.root", str(s.root), "--sampler.scan.interval", "0"]  # fmt: skip
    out = subprocess.run([*base, "--json"], capture_output=True, text=True, timeout=120, check=True).stdout
    [root] = json.loads(out)["registry"]
    assert root["reclaimable_bytes"]["default"] == s.size(s.gc_default)
    assert {r["name"]: r["bytes"] for r in root["repositories"]} == {r: s.size(h) for r, h in s.repos.items()}
    text = subprocess.run(base, capture_output=True, text=True, timeout=120, check=True).stdout
    assert "Registry storage" in text and "garbage-collect --delete-untagged" in text
    assert "1 recent" in text and "multi/arch" in text
    assert tree_listing(s.root) == s.listing
