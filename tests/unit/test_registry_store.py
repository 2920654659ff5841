"""The registry storage reader, Distribution's GC marks, the sampler, the collector and the
report on registry trees written by a fixture builder: nested names, `_` dirs, indexes (and
an index of indexes), re-pushed tags, deleted manifests, uploads, and broken pieces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter import registry_gc as gc
from exporter import report
from exporter.collector import StorageCollector
from exporter.config import ConfigError, parse
from exporter.registry_model import RegistryRoot, RegistrySnapshot
from exporter.samplers import Store
from exporter.samplers.registry import RegistrySampler, summarise
from exporter.sources.registry import RegistryReader
from exporter.sources.registry_format import parse_manifest
from tests.harness.registry_tree import DOCKER_LIST, OCI_MANIFEST, TreeBuilder, tree_listing

NOW = time.time()
OLD = NOW - 3 * 86400  # well outside the young window


class Fixture:
    """A registry tree whose GC verdicts are known by construction (see each name)."""

    def __init__(self, root: Path) -> None:
        t = self.t = TreeBuilder(root)
        b = t.blob
        self.shared = os.urandom(3000)  # a layer in two repositories
        # acme/app: v1 pushed, then v1 re-pushed: the first manifest is untagged.
        self.app_old = t.image("acme/app", [self.shared, b"old-layer" * 100], b'{"c":"old"}', "v1", mtime=OLD)
        self.app_old_only = {t.blob(b"old-layer" * 100), t.blob(b'{"c":"old"}')}
        self.app_new = t.image("acme/app", [self.shared, b"new-layer" * 50], b'{"c":"new"}', "v1", mtime=OLD)
        t.tag("acme/app", "latest", self.app_new)
        # lib (a repository) and lib/base (one nested in it): base's manifest was deleted
        # (DELETE by digest removes the revision link and the tags, the blobs stay).
        self.lib = t.image("lib", [self.shared], b'{"c":"lib"}', "1", OCI_MANIFEST, mtime=OLD)
        gone = t.image("lib/base", [b"base-layer" * 70], b'{"c":"base"}', None, mtime=OLD)
        self.deleted = {gone, t.blob(b"base-layer" * 70), t.blob(b'{"c":"base"}')}
        rev = t.repo("lib/base") / "_manifests" / "revisions" / "sha256" / gone.split(":")[1] / "link"
        rev.unlink()
        rev.parent.rmdir()
        # multi: two untagged platform manifests named by a tagged index (a manifest list).
        self.children = [
            t.image("multi", [f"arch{i}-layer".encode() * 40], f'{{"arch":{i}}}'.encode(), mtime=OLD)
            for i in range(2)
        ]
        self.child_blobs = {t.blob(f"arch{i}-layer".encode() * 40) for i in range(2)} | {
            t.blob(f'{{"arch":{i}}}'.encode()) for i in range(2)
        }
        self.index = t.index("multi", self.children, "latest", DOCKER_LIST, mtime=OLD)
        # nest: an index of an index, the inner one and its image untagged.
        leaf = self.leaf = t.image("nest", [b"leaf-layer" * 10], b'{"c":"leaf"}', mtime=OLD)
        inner = t.index("nest", [leaf], mtime=OLD)
        self.nest_top = t.index("nest", [inner], "v1", mtime=OLD)
        self.nest_leaf_blobs = {t.blob(b"leaf-layer" * 10), t.blob(b'{"c":"leaf"}')}
        # A `_` dir is never a repository, even with a repository's layout inside.
        hidden = t.image("_hidden/x", [b"hidden" * 10], b'{"c":"hidden"}', "t", mtime=OLD)
        self.hidden = {hidden, t.blob(b"hidden" * 10), t.blob(b'{"c":"hidden"}')}
        # Blobs nothing references: one old, one just pushed (young).
        self.orphan = b(b"orphan" * 500, OLD)
        self.young = b(b"young" * 100, NOW - 60)
        # Uploads: one stale (8 days), one recent.
        t.upload("acme/app", "u-stale", b"x" * 700, NOW - 8 * 86400)
        t.upload("acme/app", "u-fresh", b"y" * 300, NOW - 3600)

    def size(self, digests: set[str]) -> int:
        return sum(self.t.sizes[d] for d in digests)


@pytest.fixture
def fx(tmp_path: Path) -> Fixture:
    return Fixture(tmp_path / "reg")


def test_repositories_nest_and_underscore_dirs_are_not_repositories(fx: Fixture) -> None:
    tree = RegistryReader(str(fx.t.root)).read()
    assert [r.name for r in tree.repositories] == ["acme/app", "lib", "lib/base", "multi", "nest"]
    assert dict(tree.errors) == {}


def test_gc_marks_as_distribution_does_in_both_modes(fx: Fixture) -> None:
    tree = RegistryReader(str(fx.t.root)).read()
    default = gc.sweep(tree, gc.marked(tree, delete_untagged=False))
    assert default == fx.deleted | {fx.orphan, fx.young} | fx.hidden
    untagged = gc.sweep(tree, gc.marked(tree, delete_untagged=True))
    # -m drops the re-pushed tag's old manifest and what only it held; the index children
    # (untagged, but named by a tagged index) and the nested index's leaf stay (3.x marks).
    assert untagged == default | {fx.app_old} | fx.app_old_only
    # Distribution 2.x does not follow an index's children: their configs and layers go too.
    flat = gc.sweep(tree, gc.marked(tree, delete_untagged=True, recursive=False))
    assert flat - untagged == fx.child_blobs | fx.nest_leaf_blobs | {fx.leaf}


def test_summary_figures(fx: Fixture) -> None:
    tree = RegistryReader(str(fx.t.root)).read()
    r = summarise(str(fx.t.root), tree, NOW)
    blob_dirs = [dp for dp, _, files in os.walk(fx.t.v2 / "blobs") if "data" in files]
    every = sum(os.lstat(os.path.join(dp, "data")).st_size for dp in blob_dirs)
    assert sum(r.blob_bytes.values()) == every == sum(fx.t.sizes.values())
    assert sum(r.blobs.values()) == len(fx.t.sizes)
    assert r.blobs["young"] == 1 and r.blob_bytes["young"] == len(b"young" * 100)
    default = gc.sweep(tree, gc.marked(tree, False))
    assert r.reclaimable["default"] == fx.size(default)
    assert r.blob_bytes["unreferenced"] + r.blob_bytes["young"] == r.reclaimable["default"]
    assert r.reclaimable["delete_untagged"] == fx.size(default | {fx.app_old} | fx.app_old_only)
    flat = gc.sweep(tree, gc.marked(tree, True, recursive=False))
    assert r.index_child_only_bytes == fx.size(flat) - r.reclaimable["delete_untagged"] > 0
    repos = {u.name: u for u in r.repositories}
    shared = len(fx.shared)
    app = repos["acme/app"]
    app_blobs = (
        {fx.app_old, fx.app_new}
        | fx.app_old_only
        | {fx.t.blob(fx.shared), fx.t.blob(b"new-layer" * 50), fx.t.blob(b'{"c":"new"}')}
    )
    assert app.bytes == fx.size(app_blobs)
    assert app.unique_bytes == app.bytes - shared  # the shared layer is lib's too
    assert (app.tags, app.manifests_tagged, app.manifests_untagged) == (2, 1, 1)
    assert repos["lib/base"].bytes == 0 and repos["lib/base"].manifests_untagged == 0
    assert repos["multi"].manifests_tagged == 1 and repos["multi"].manifests_untagged == 2
    assert repos["multi"].bytes == fx.size({fx.index, *fx.children} | fx.child_blobs)
    assert (r.fresh_uploads.count, r.fresh_uploads.bytes) == (1, 300)
    assert (r.stale_uploads.count, r.stale_uploads.bytes) == (1, 700)
    assert r.oldest_upload_started == pytest.approx(NOW - 8 * 86400, abs=1)
    assert dict(r.dangling) == {"layer": 0, "revision": 0, "tag": 0}
    assert r.filesystem_size and r.filesystem_avail is not None


def test_bad_input_is_counted_and_the_rest_still_measured(fx: Fixture) -> None:
    t = fx.t
    # A truncated manifest, a non-JSON one, garbage in a revision, tag and layer link.
    trunc = t.blob(b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "lay')
    t.revision("bad/trunc", trunc)
    t.tag("bad/trunc", "t", trunc)
    junk = t.blob(b"\x00\xffnot json")
    t.revision("bad/junk", junk)
    t.revision("bad/garbage", t.blob(b"some blob"), content=b"\x00garbage\xff")
    t.tag("acme/app", "broken", fx.app_new, content="sha256:nothex")
    t.link(t.repo("acme/app") / "_layers" / "sha256" / ("ab" * 32) / "link", "garbage")
    # A blob dir without data; a name in blobs/ that is no digest.
    (t.v2 / "blobs" / "sha256" / "cd" / ("cd" * 32)).mkdir(parents=True)
    (t.v2 / "blobs" / "sha256" / "cd" / "not-a-digest").mkdir()
    # A repository name with bytes that are not UTF-8, and one Distribution rejects.
    t.image(b"odd/n\xffme", [b"odd-layer"], b'{"c":"odd"}', "t", mtime=OLD)
    t.image("Upper/Case", [b"upper-layer"], b'{"c":"upper"}', "t", mtime=OLD)
    # Dangling links: a layer link and a tag naming blobs that are not there.
    missing = "sha256:" + "ee" * 32
    t.layer_link("acme/app", missing)
    t.tag("lib", "gone", missing)
    t.revision("lib", missing)
    # An upload without startedat.
    t.upload("lib", "u-nostart", b"z" * 5, None)

    tree = RegistryReader(str(t.root)).read()
    r = summarise(str(t.root), tree, NOW)
    assert dict(tree.errors) == {
        "manifest": 2,  # trunc, junk
        "link": 3,  # bad/garbage's revision, acme/app's broken tag, the garbage layer link
        "blob": 2,  # no data, not a digest
        "repository_name": 2,  # n\xffme, Upper
        "upload": 1,
    }
    assert dict(r.dangling) == {"layer": 1, "revision": 1, "tag": 1}
    names = {u.name for u in r.repositories}
    assert {"bad/trunc", "bad/junk", "bad/garbage", os.fsdecode(b"odd/n\xffme"), "Upper/Case"} <= names
    # A manifest that cannot be parsed is still kept by GC (its own blob is marked).
    assert trunc in gc.marked(tree, False) and junk in gc.marked(tree, False)
    # Everything else is as before: the sums still hold.
    assert sum(r.blob_bytes.values()) == sum(t.sizes.values())
    assert r.fresh_uploads.count == 2  # the one without startedat is dated by its dir
    # The collector serves it all, odd names made encodable, and promtool-clean names.
    store = Store()
    store.publish(_status(), RegistrySnapshot(roots=(r,), taken=NOW))
    text = scrape(store)
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    repos = {s.labels["repository"] for s in fams["docker_storage_registry_store_repository_bytes"].samples}
    assert any(n.startswith("odd/n\ufffd") and n.endswith("me") for n in repos)
    errs = {s.labels["kind"]: s.value for s in fams["docker_storage_registry_store_read_errors"].samples}
    assert errs["manifest"] == 2 and errs["root"] == 0


def test_a_root_that_is_not_a_registry(tmp_path: Path, fx: Fixture) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "hello.txt").write_text("not a registry")
    store = Store()
    # Alone: the sample fails, saying what to pass; nothing crashes.
    s = RegistrySampler(store, [str(junk)])
    assert s.run() is False
    status = store.status("registry")
    assert status is not None and "docker/registry/v2" in status.last_error
    assert "rootdirectory" in status.last_error
    # Beside a good root: counted for it, and the good root's families are all there.
    s = RegistrySampler(store, [str(junk), str(fx.t.root), str(tmp_path / "vanished")])
    os.mkdir(tmp_path / "vanished")
    os.rmdir(tmp_path / "vanished")
    assert s.run() is True
    snap = store.latest(RegistrySnapshot)
    assert snap is not None and "cannot be listed" in snap.roots[2].error
    fams = {f.name: f for f in text_string_to_metric_families(scrape(store))}
    roots = {
        (x.labels["root"], x.labels["kind"]): x.value
        for x in fams["docker_storage_registry_store_read_errors"].samples
    }
    assert roots[(str(junk), "root")] == 1
    assert roots[(str(tmp_path / "vanished"), "root")] == 1
    assert roots[(str(fx.t.root), "root")] == 0
    blobs = fams["docker_storage_registry_store_blob_bytes"].samples
    assert {x.labels["root"] for x in blobs} == {str(fx.t.root)}
    assert sum(x.value for x in blobs) == sum(fx.t.sizes.values())


def test_an_empty_root_is_an_empty_registry(tmp_path: Path) -> None:
    empty = tmp_path / "fresh"
    empty.mkdir()
    store = Store()
    assert RegistrySampler(store, [str(empty)]).run() is True
    snap = store.latest(RegistrySnapshot)
    assert snap is not None and snap.roots[0].blobs == {"referenced": 0, "unreferenced": 0, "young": 0}


def test_rescans_read_only_what_changed(fx: Fixture) -> None:
    reader = RegistryReader(str(fx.t.root))
    first = reader.read()
    tags = sum(len(r.tags) for r in first.repositories)
    assert first.manifests_read == len(first.manifests) > 0
    again = reader.read()
    # Steady state: no manifest opened, only the tags' current links (they move).
    assert again.manifests_read == 0 and again.links_read == tags
    assert again.blobs == first.blobs and again.manifests == first.manifests
    # A push: only its manifest and links are read; a GC'd blob is gone from the figures.
    new = fx.t.image("acme/app", [b"v2-layer"], b'{"c":"v2"}', "v2")
    hexname = fx.orphan.split(":")[1]
    os.remove(fx.t.v2 / "blobs" / "sha256" / hexname[:2] / hexname / "data")
    os.rmdir(fx.t.v2 / "blobs" / "sha256" / hexname[:2] / hexname)
    third = reader.read()
    assert third.manifests_read == 1 and new in third.manifests
    assert third.links_read == tags + 1 + 1 + 2  # the tags (one more), the revision, layer + config
    assert fx.orphan not in third.blobs


def test_the_scan_changes_nothing_in_the_tree(fx: Fixture) -> None:
    before = tree_listing(fx.t.root)
    atimes = {p: os.lstat(p).st_atime_ns for p in before if os.path.isfile(p)}
    store = Store()
    RegistrySampler(store, [str(fx.t.root)]).run()
    RegistrySampler(store, [str(fx.t.root)]).run()
    assert tree_listing(fx.t.root) == before
    assert {p: os.lstat(p).st_atime_ns for p in atimes} == atimes  # files opened O_NOATIME


def test_manifest_parsing() -> None:
    child = {"digest": "sha256:" + "a" * 64}
    listed = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [child]}
    bare = {"schemaVersion": 2, "manifests": [child]}  # an OCI index may leave mediaType out
    assert parse_manifest(json.dumps(listed).encode()) == parse_manifest(json.dumps(bare).encode())
    assert parse_manifest(json.dumps(bare).encode()).references == (child["digest"],)
    assert parse_manifest(b'{"schemaVersion":2,"mediaType":"application/x-unknown"}') is None
    assert parse_manifest(b"[1,2]") is None
    schema1 = {"schemaVersion": 1, "fsLayers": [{"blobSum": "sha256:" + "b" * 64}]}
    s1 = parse_manifest(json.dumps(schema1).encode())
    assert s1 is not None and s1.references == ("sha256:" + "b" * 64,)


def _status():  # type: ignore[no-untyped-def]
    from exporter.model import SamplerStatus

    return SamplerStatus(name="registry", success=True)


def scrape(store: Store, top_n: int = 50, hide: bool = False) -> str:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StorageCollector(store, top_n, hide_names=hide))
    return generate_latest(reg).decode()


def test_collector_caps_repositories_and_hides_names(fx: Fixture) -> None:
    store = Store()
    RegistrySampler(store, [str(fx.t.root)]).run()
    fams = {f.name: f for f in text_string_to_metric_families(scrape(store, top_n=2, hide=True))}
    repo_bytes = fams["docker_storage_registry_store_repository_bytes"].samples
    assert all("root" not in s.labels for s in repo_bytes)  # one root: no root label
    names = [s.labels["repository"] for s in repo_bytes]
    assert len(names) == 3 and names[-1] == "__other__"
    assert "acme/app" not in names and all(len(n) == 12 for n in names[:2])
    snap = store.latest(RegistrySnapshot)
    assert snap is not None
    assert sum(s.value for s in repo_bytes) == sum(u.bytes for u in snap.roots[0].repositories)
    manifests = fams["docker_storage_registry_store_manifests"].samples
    assert sum(s.value for s in manifests) == sum(
        u.manifests_tagged + u.manifests_untagged for u in snap.roots[0].repositories
    )
    folded = {s.labels["family"]: s.value for s in fams["docker_storage_series_folded"].samples}
    assert folded["docker_storage_registry_store_repository_bytes"] == 3
    assert fams["docker_storage_registry_store_repositories"].samples[0].value == 5


def test_report_has_a_registry_section(fx: Fixture) -> None:
    store = Store()
    RegistrySampler(store, [str(fx.t.root)]).run()
    data = report.collect(store)
    [root] = data["registry"]
    assert root["reclaimable_bytes"]["default"] > 0
    assert {r["name"] for r in root["repositories"]} >= {"acme/app", "multi"}
    text = report.render(data)
    assert "Registry storage" in text and "acme/app" in text
    assert "--dry-run" in text and "read-only" in text
    assert "1 stale (> 168 h) 700B" in text
    json.dumps(data)  # --json prints it


def test_config_flags(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    c = parse(["--registry.root", str(a), "--registry.root", str(b)], {})
    assert c.registry_roots == (str(a), str(b)) and c.registry_interval == 300
    assert parse([], {"DOCKER_STORAGE_EXPORTER_REGISTRY_ROOT": f"{a},{b}"}).registry_roots == (str(a), str(b))
    assert parse([], {}).registry_roots == ()
    assert parse(["--sampler.registry.interval", "0"], {}).registry_interval == 0
    for argv, words in [
        (["--registry.root", "relative/dir"], "absolute path"),
        (["--registry.root", str(tmp_path / "nope")], "existing directory"),
        (["--registry.root", str(a), "--registry.root", str(a) + "/"], "once"),
        (["--sampler.registry.interval", "soon"], "duration"),
    ]:
        with pytest.raises(ConfigError) as e:
            parse(argv, {})
        assert words in str(e.value) and "\n" not in str(e.value)


def test_an_unchanged_tree_reuses_its_marks_and_a_change_redoes_them(fx: Fixture) -> None:
    clock = [NOW]
    store = Store()
    sampler = RegistrySampler(store, [str(fx.t.root)], clock=lambda: clock[0])

    def root() -> RegistryRoot:
        assert sampler.run()
        snap = store.latest(RegistrySnapshot)
        assert snap is not None
        return snap.roots[0]

    first = root()
    clock[0] += 7200  # nothing changed on disk; the young blob has aged
    aged = root()
    assert aged.repositories is first.repositories  # the marks were reused
    assert (aged.blobs["young"], aged.blobs["unreferenced"]) == (0, first.blobs["unreferenced"] + 1)
    assert aged.reclaimable == first.reclaimable
    # v1 moved back to the old manifest: the new one is untagged now (latest still names it),
    # and the old one's blobs are kept by -m.
    fx.t.tag("acme/app", "v1", fx.app_old)
    moved = root()
    assert moved.repositories is not first.repositories
    assert moved.reclaimable["delete_untagged"] == first.reclaimable["delete_untagged"] - fx.size(
        {fx.app_old} | fx.app_old_only
    )


def test_a_deleted_revision_is_looked_at_again_and_a_repush_seen(fx: Fixture) -> None:
    reader = RegistryReader(str(fx.t.root))
    link = fx.t.repo("acme/app") / "_manifests" / "revisions" / "sha256" / fx.app_old.split(":")[1] / "link"
    link.unlink()  # DELETE by digest: the link goes, its dir stays
    first = reader.read()
    tags = sum(len(r.tags) for r in first.repositories)
    app = next(r for r in first.repositories if r.name == "acme/app")
    assert fx.app_old not in app.revisions and dict(first.errors) == {}
    again = reader.read()
    assert again.links_read == tags + 1  # the tags, and the one name without a link
    assert again.unchanged
    fx.t.revision("acme/app", fx.app_old)  # the same image pushed again
    third = reader.read()
    assert fx.app_old in next(r for r in third.repositories if r.name == "acme/app").revisions
    assert not third.unchanged


@pytest.mark.parametrize(
    "args",
    [
        ["--registry.root", "/nonexistent/registry/root"],
        ["--registry.root", "relative"],
        ["--sampler.registry.interval=-1s"],
    ],
)
def test_cli_bad_registry_flag_exits_2_with_one_line(args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_STORAGE_EXPORTER_")}
    res = subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and args[0].split("=")[0] in lines[0] and "use " in lines[0], res.stderr


def _age_tree(root: Path, seconds: float) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*filenames, *dirnames, "."]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            os.utime(p, (st.st_atime - seconds, st.st_mtime - seconds), follow_symlinks=False)


def test_a_settled_tree_is_read_from_its_stamps_and_every_change_is_seen(fx: Fixture) -> None:
    _age_tree(fx.t.root, 3600)
    reader = RegistryReader(str(fx.t.root))
    first = reader.read()
    steady = reader.read()
    assert steady.links_read == 0 and steady.manifests_read == 0 and steady.unchanged
    assert steady.blobs == first.blobs
    app = lambda tree: next(r for r in tree.repositories if r.name == "acme/app")  # noqa: E731
    # A manifest DELETEd by digest: its link goes, its dir (and the dir above) stay put.
    revs = fx.t.repo("acme/app") / "_manifests" / "revisions" / "sha256"
    (revs / fx.app_old.split(":")[1] / "link").unlink()
    os.utime(revs, (0, os.lstat(revs).st_mtime))  # nothing about the listing changed
    deleted = reader.read()
    assert fx.app_old not in app(deleted).revisions and not deleted.unchanged
    # A tag moved: its current link rewritten in place.
    fx.t.link(fx.t.repo("acme/app") / "_manifests" / "tags" / "latest" / "current" / "link", fx.app_old)
    moved = reader.read()
    assert ("latest", fx.app_old) in app(moved).tags
    # A blob garbage-collected: its dir removed from the prefix dir.
    hexname = fx.orphan.split(":")[1]
    os.remove(fx.t.v2 / "blobs" / "sha256" / hexname[:2] / hexname / "data")
    os.rmdir(fx.t.v2 / "blobs" / "sha256" / hexname[:2] / hexname)
    swept = reader.read()
    assert fx.orphan not in swept.blobs and len(swept.blobs) == len(first.blobs) - 1
