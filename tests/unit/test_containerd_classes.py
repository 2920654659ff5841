"""The containerd reader's classes for each `snapshots/<N>` dir, on hand-made records of the
two bolt files (the shapes containerd-store.md gives from containerd's and moby's source) and
a content store holding real manifest and config JSON. The whole reader on a real engine is
tests/test_containerd_store.py's."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from types import MappingProxyType

import pytest

from exporter.model import EngineInfo
from exporter.sources.containerd_meta import (
    ACTIVE,
    COMMITTED,
    VIEW,
    Lease,
    Metadata,
    Namespace,
    NamespacedSnapshot,
    SnapshotRecord,
    Snapshots,
)
from exporter.sources.layout import chain_ids
from exporter.stores.containerd import ContainerdReader, _Parsed
from exporter.stores.inventory import MetaDir, Owner, StoreOptions

CID = "c" * 64  # a container's ID: its writable layer's key


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class State:
    """Snapshot records, namespaced records and blobs, built together."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "io.containerd.content.v1.content" / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)
        self.area = root / "io.containerd.snapshotter.v1.overlayfs" / "snapshots"
        self.area.mkdir(parents=True)
        self.records: dict[int, SnapshotRecord] = {}
        self.ns: dict[str, dict[str, NamespacedSnapshot]] = {}
        self.images: dict[str, str] = {}
        self.leases: dict[str, Lease] = {}

    def blob(self, doc: object) -> str:
        raw = json.dumps(doc).encode()
        d = digest(raw)
        (self.blobs / d[7:]).write_bytes(raw)
        return d

    def snapshot(
        self, n: int, ns: str, key: str, kind: int, parent: str = "", size: int | None = 8192
    ) -> str:
        backend = f"{ns}/{n + 100}/{key}"
        parent_backend = self.ns.get(ns, {}).get(parent)
        committed = kind == COMMITTED
        parent_name = parent_backend.backend if parent_backend else ""
        self.records[n] = SnapshotRecord(
            n, backend, kind, parent_name, size if committed else None, 2 if committed else None
        )
        self.ns.setdefault(ns, {})[key] = NamespacedSnapshot(key, backend)
        (self.area / str(n) / "fs").mkdir(parents=True)
        return backend

    def image(self, name: str, diff_ids: list[str]) -> tuple[str, ...]:
        config = self.blob({"rootfs": {"type": "layers", "diff_ids": diff_ids}})
        layers = [{"digest": digest(d.encode()), "size": 1} for d in diff_ids]
        manifest = self.blob({"schemaVersion": 2, "config": {"digest": config}, "layers": layers})
        index = self.blob(
            {"schemaVersion": 2, "manifests": [{"digest": manifest}, {"digest": digest(b"arm64")}]}
        )
        self.images[name] = index
        return chain_ids(diff_ids)

    def parsed(self) -> _Parsed:
        namespaces = {
            name: Namespace(
                name,
                MappingProxyType(self.images if name == "moby" else {}),
                MappingProxyType(snaps),
                frozenset(),
                MappingProxyType(self.leases if name == "moby" else {}),
                frozenset(),
                frozenset(),
            )
            for name, snaps in self.ns.items()
        }
        by_id = MappingProxyType(dict(self.records))
        return _Parsed(
            Metadata(1, 3, MappingProxyType(namespaces)),
            Snapshots(1, by_id, MappingProxyType({r.backend: r for r in by_id.values()})),
        )


def classes(state: State) -> tuple[dict[str, Owner | str], dict[str, str]]:
    reader = ContainerdReader(StoreOptions())
    listing = tuple(sorted(os.listdir(state.area)))
    c = reader._classify(state.parsed(), "moby", str(state.root), listing, {CID})
    owners: dict[str, Owner | str] = {d.name: d.owner for d in c.area_dirs if d.owner is not None}
    owners.update({x.store_id: "layer" for x in c.layers})
    return owners, dict(c.writable)


def test_every_dir_gets_the_class_its_records_give(tmp_path: Path) -> None:
    s = State(tmp_path)
    base, top = s.image("app:1", [digest(b"base"), digest(b"top")])
    s.snapshot(1, "moby", base, COMMITTED)
    s.snapshot(2, "moby", "build-init", COMMITTED, parent=base)  # a classic build's init, below top
    s.snapshot(3, "moby", top, COMMITTED, parent="build-init")
    s.snapshot(4, "moby", f"{CID}-init", COMMITTED, parent=top)
    s.snapshot(5, "moby", CID, ACTIVE, parent=f"{CID}-init")
    s.snapshot(6, "moby", f"extract-123 {digest(b'x')}", ACTIVE)
    s.snapshot(7, "moby", "k" * 25, ACTIVE)  # BuildKit's
    s.leases["k" * 25] = Lease(
        "k" * 25, MappingProxyType({"containerd.io/gc.flat": "x"}), frozenset({"k" * 25}), frozenset()
    )
    s.snapshot(8, "k8s.io", base, COMMITTED)  # the same layer, another namespace's copy
    s.snapshot(9, "moby", digest(b"gone"), COMMITTED)  # a layer no image holds any more
    s.snapshot(10, "moby", "diff-view", VIEW)
    del s.ns["moby"]["diff-view"]  # its namespace record gone: nothing names it
    (tmp_path / "io.containerd.snapshotter.v1.overlayfs" / "snapshots" / "11").mkdir()  # no record
    young = s.area / "new-42"
    young.mkdir()
    old = s.area / "new-7"
    old.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    owners, writable = classes(s)
    assert owners == {
        "1": "layer",
        "2": Owner.IMAGE,  # below an image's layer: the image's, as Docker sizes it
        "3": "layer",
        "4": Owner.INIT,
        "5": Owner.CONTAINER,
        "6": Owner.UNPACKING,
        "7": Owner.BUILD_CACHE,
        "8": Owner.OTHER_NAMESPACE,
        "9": Owner.UNREFERENCED,
        "10": Owner.UNREFERENCED,
        "11": Owner.ORPHAN,
        "new-42": Owner.UNPACKING,
        "new-7": Owner.ORPHAN,
    }
    assert writable == {CID: "5"}


def test_image_layers_come_from_the_unpacked_platform_only(tmp_path: Path) -> None:
    s = State(tmp_path)
    base, _ = s.image("app:1", [digest(b"base"), digest(b"top")])
    s.snapshot(1, "moby", base, COMMITTED)  # unpacked up to base only: top is not a snapshot
    reader = ContainerdReader(StoreOptions())
    c = reader._classify(s.parsed(), "moby", str(tmp_path), ("1",), set())
    assert c.layers == ()  # an image whose top is not unpacked holds no layer here
    assert dict(c.image_layers) == {s.images["app:1"]: ()}
    (one,) = c.area_dirs
    assert one.owner is Owner.UNREFERENCED


def test_an_image_s_documents_are_read_once_and_again_when_one_it_lacked_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image's documents are content-addressed: read once, and again only when one it
    names that was not there arrives (another platform's manifest, then its config, pulled
    later); a fresh store reads them as the kept ones say."""
    from exporter.stores import content

    s = State(tmp_path)
    amd = [digest(b"base"), digest(b"top")]
    arm = [digest(b"arm-base")]
    arm_config = json.dumps({"rootfs": {"type": "layers", "diff_ids": arm}}).encode()
    arm_manifest = json.dumps(
        {"schemaVersion": 2, "config": {"digest": digest(arm_config)}, "layers": [{"digest": digest(b"l")}]}
    ).encode()
    config = s.blob({"rootfs": {"type": "layers", "diff_ids": amd}})
    manifest = s.blob(
        {"schemaVersion": 2, "config": {"digest": config}, "layers": [{"digest": digest(b"m")}]}
    )
    index = s.images["multi"] = s.blob(
        {"manifests": [{"digest": manifest}, {"digest": digest(arm_manifest)}]}
    )
    for n, key in enumerate((*chain_ids(amd), *chain_ids(arm)), 1):
        s.snapshot(n, "moby", key, COMMITTED)
    ns = s.parsed().meta.namespaces["moby"]
    calls: list[str] = []
    real = content.image_docs
    monkeypatch.setattr(content, "image_docs", lambda c, t, fd=None: calls.append(t) or real(c, t, fd))

    docs = real(str(tmp_path), index)
    with content._blobs_dir(str(tmp_path)) as fd:  # each document opened by its name alone
        assert fd is not None and real(str(tmp_path), index, fd) == docs
    with content._blobs_dir(str(tmp_path / "nowhere")) as fd:
        assert fd is None
    (tmp_path / "outside").write_text("{}")  # a digest that is a path: never opened
    odd = "sha256:" + "../" * 21 + "x"
    assert real(str(tmp_path), odd) == content.ImageDocs((), (), frozenset())
    assert docs.manifests == (index, manifest) and docs.missing == {digest(arm_manifest)[7:]}
    assert [tuple(p) for p in docs.platforms] == [(config, (digest(b"m"),), tuple(amd), chain_ids(amd))]

    store = content.ContentStore()
    images, diffs, kinds, blobs = here = store.images(str(tmp_path), ns)
    assert calls == [index] and images == {index: chain_ids(amd)} and set(diffs) == set(chain_ids(amd))
    assert kinds == {index: "manifest", manifest: "manifest", config: "config", digest(b"m"): "layer"}
    assert blobs == {index: frozenset(kinds)}
    assert store.images(str(tmp_path), ns) == here and calls == [index]  # read once

    (s.blobs / digest(arm_manifest)[7:]).write_bytes(arm_manifest)  # the other platform arrives
    images, _, kinds, _ = store.images(str(tmp_path), ns)
    assert calls == [index] * 2 and images == {index: chain_ids(amd)}  # its config: not yet
    assert kinds[digest(arm_manifest)] == "manifest" and kinds[digest(arm_config)] == "config"
    assert content.ContentStore().images(str(tmp_path), ns)[2] == kinds and calls == [index] * 3
    (s.blobs / digest(arm_config)[7:]).write_bytes(arm_config)
    images, diffs, _, _ = store.images(str(tmp_path), ns)
    assert images == {index: (*chain_ids(amd), *chain_ids(arm))} and diffs[arm[0]] == arm[0]
    assert store.images(str(tmp_path), ns)[0] == images and calls == [index] * 4
    (s.blobs / "ff").write_bytes(b"unrelated")  # a blob the image does not name: not read again
    assert store.images(str(tmp_path), ns)[0] == images and calls == [index] * 4


def test_a_root_without_the_snapshotter_is_said_unattributed(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    info = EngineInfo("docker", "26.1", "1.45", "overlayfs", "containerd", str(tmp_path / "docker"))
    layout = ContainerdReader(StoreOptions(containerd_root=str(tmp_path / "nowhere"))).read(
        str(tmp_path / "docker"), info
    )
    assert not layout.attribution and "--containerd.root" in layout.attribution_reason
    assert str(tmp_path / "nowhere") in layout.attribution_reason


def test_the_blobs_stats_come_from_the_workers_on_a_first_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The content store's prefetch hands every blob to the workers (a walk of a file is its
    lstat); measure() then takes their figures and stats none itself but the store's dirs."""
    from exporter.sources import du
    from exporter.stores import content

    s = State(tmp_path)
    for i in range(40):
        s.blob({"n": i, "pad": "x" * (i * 200)})
    store = content.ContentStore()
    meta = Metadata(1, 3, MappingProxyType({}))
    calls: list[str] = []

    def counted(path: str) -> du.Usage:
        calls.append(path)
        return du.one_inode(path)

    monkeypatch.setattr(content, "one_inode", counted)
    with du.Walker(workers=2) as walker:
        started = walker.start([store.prefetch(str(tmp_path))], time.monotonic() + 60)
        assert started.jobs == 40
        kinds, _, blobs = store.measure(str(tmp_path), str(tmp_path), meta, {}, {}, started)
    assert len(blobs) == 40 and not [c for c in calls if "/blobs/sha256/" in c]
    assert {k.id.rsplit("/", 1)[1]: u for k, u in blobs.items()} == {
        n: du.one_inode(str(s.blobs / n)) for n in os.listdir(s.blobs)
    }
    assert set(kinds.values()) == {"unreferenced", "other"}  # no namespace records them
    fresh = content.ContentStore()  # no workers: each blob stat'ed here, the same figures
    assert fresh.measure(str(tmp_path), str(tmp_path), meta, {}, {})[2] == blobs
    assert len([c for c in calls if "/blobs/sha256/" in c]) == 40


@pytest.mark.parametrize("where", ["containerd/daemon", "."], ids=["docker-s-own", "the-docker-root"])
def test_docker_s_own_containerd_dir_is_one_walk_but_for_its_two_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """Docker's own containerd root (<root>/containerd/daemon): the snapshots and the content
    store are measured apart, the rest of containerd/ is one walk that leaves them out; every
    root dir's figure is du's of it, and stays so as a dir is made beside the stores. The
    same with --containerd.root naming the Docker root itself (each store's top dir apart)."""
    from exporter.model import EngineSnapshot, SamplerStatus, ScanSnapshot
    from exporter.samplers import Store
    from exporter.scan import ScanSampler
    from exporter.sources.du import Walker
    from tests.harness.truth import du

    root = tmp_path / "docker"
    daemon = root / where
    state = State(daemon)
    state.snapshot(1, "moby", "sha256:" + "1" * 64, COMMITTED)
    fs = state.area / "1" / "fs"
    (fs / "bin").write_bytes(b"b" * 9000)
    # As containerd records a committed snapshot: its fs/ as du counts it (never walked).
    state.records[1] = dataclasses.replace(state.records[1], size=du(fs)[0], inodes=du(fs)[1])
    state.blob({"schemaVersion": 2})
    (daemon / "io.containerd.snapshotter.v1.overlayfs" / "metadata.db").write_bytes(b"m" * 32768)
    (daemon / "io.containerd.metadata.v1.bolt").mkdir()
    (daemon / "io.containerd.metadata.v1.bolt" / "meta.db").write_bytes(b"m" * 65536)
    (daemon / "tmpmounts").mkdir()
    (daemon / "io.containerd.runtime.v2.task" / "moby" / CID).mkdir(parents=True)
    (daemon / "io.containerd.runtime.v2.task" / "moby" / CID / "config.json").write_bytes(b"c" * 3000)
    (root / "containers").mkdir()
    (root / "volumes").mkdir()
    monkeypatch.setattr(ContainerdReader, "_read_bolt", lambda self, croot: state.parsed())
    info = EngineInfo(
        engine="docker", version="26.1.5", api_version="1.45", storage_driver="overlayfs",
        image_store="containerd", root_dir=str(root),
    )  # fmt: skip
    store = Store()
    store.publish(SamplerStatus(name="engine", success=True), EngineSnapshot(info, (), (), (), None))
    with Walker(workers=1) as walker:
        options = StoreOptions(containerd_root=str(root) if where == "." else "")
        sampler = ScanSampler(store, walker, options=options)
        for change in (None, "plugin", None):
            if change:
                (daemon / "io.containerd.snapshotter.v1.native" / "snapshots").mkdir(parents=True)
            assert sampler.run(), store.status("scan")
            snap = store.snapshot("scan")
            assert isinstance(snap, ScanSnapshot) and snap.attribution
            assert set(snap.root_dirs) == set(os.listdir(root))
            for name, got in snap.root_dirs.items():
                assert (got.disk_bytes, got.files) == du(root / name), (change, name)
            own = os.lstat(state.area).st_blocks * 512  # the snapshots dir's own inode
            assert sum(u.disk_bytes for u in snap.owners.values()) + own == du(state.area)[0]
    if where == ".":
        return
    layout = ContainerdReader().read(str(root), info)
    assert [m for m in layout.meta if m.rel.startswith("containerd")] == [
        MetaDir(
            "containerd",
            exclude=frozenset(
                {
                    "daemon/io.containerd.snapshotter.v1.overlayfs/snapshots",
                    "daemon/io.containerd.content.v1.content",
                }
            ),
        )
    ]
