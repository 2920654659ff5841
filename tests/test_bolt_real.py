"""exporter.sources.bolt on the live files of running daemons, which hold them under an
exclusive flock the whole time: a private containerd (meta.db and the overlayfs snapshotter's
metadata.db, read while idle and while `ctr` writes) and the session's private dockerd
(volumes/metadata.db and buildkit/*.db). The reads must not block, must match what the
daemons themselves list, and must leave the daemons working."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.sources import bolt
from exporter.sources.bolt import Inconsistent, Snapshot, read_db, uvarint, varint
from tests.harness import containerd as hc
from tests.harness.engine import PrivateEngine, default_test_root

TEST_ROOT = Path(os.environ.get("DSE_TEST_ROOT") or default_test_root())
NS = "dse-bolt"


pytestmark = pytest.mark.usefixtures("bolt_walk")  # every test on both walks (tests/conftest.py)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hc.PrivateContainerd]:
    ctd = hc.PrivateContainerd(TEST_ROOT / "bolt-live")
    try:
        ctd.start()
        hc.populate(ctd, NS, tmp_path_factory.mktemp("bolt-live"))
        yield ctd
    finally:
        ctd.stop()


def exclusive_flock_holders(path: Path) -> set[int]:
    """Pids holding a FLOCK WRITE (LOCK_EX) on the file, from /proc/locks."""
    st = path.stat()
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        f = line.split()
        if f[1:4] == ["FLOCK", "ADVISORY", "WRITE"] and f[5] == dev:
            holders.add(int(f[4]))
    return holders


def read_bounded(path: Path, timeout: float = 10) -> Snapshot:
    """read_db in a thread: it must finish though the writer holds its lock."""
    box: list[Snapshot | BaseException] = []

    def run() -> None:
        try:
            box.append(read_db(path))
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"reading {path} blocked"
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def names(b: bolt.Bucket | None) -> set[str]:
    assert b is not None
    return {k.decode() for k in b.buckets}


def hc_names(meta: Snapshot) -> set[bytes]:
    """The backend names that meta.db's snapshot records point to."""
    records = meta.bucket("v1", NS, "snapshots", "overlayfs")
    return {r.get("name") for r in records.buckets.values()} if records else set()


def test_reads_while_containerd_holds_its_files(live: hc.PrivateContainerd) -> None:
    pid = live.proc.pid if live.proc else -1
    for db in (live.meta_db, live.snapshots_db):
        assert pid in exclusive_flock_holders(db)
    meta, snaps = read_bounded(live.meta_db), read_bounded(live.snapshots_db)
    ns = meta.bucket("v1", NS)
    assert ns is not None
    assert names(ns.bucket("images")) == set(hc.images(live, NS)) == {hc.TAG}
    assert names(ns.bucket("content", "blob")) == set(hc.content(live, NS))
    listed = hc.snapshots(live, NS)
    records = ns.bucket("snapshots", "overlayfs")
    assert names(records) == set(listed) and len(listed) == 4
    committed = 0
    for key, (size, unit, inodes) in hc.usage(live, NS).items():
        if listed[key][1] != "Committed":
            continue
        backend = snaps.bucket("v1", "snapshots", records.bucket(key).get("name"))
        assert abs(varint(backend.get("size"))[0] - size) <= 0.05 * unit
        assert varint(backend.get("inodes"))[0] == inodes
        committed += 1
    assert committed == 2
    # containerd goes on: it still holds its lock, answers, and commits a write we then see
    assert pid in exclusive_flock_holders(live.meta_db)
    live.ctr("content", "label", hc.config_digest(live, NS), "dse.test/after-read=yes", ns=NS)
    again = read_bounded(live.meta_db)
    assert again.txid > meta.txid
    labels = again.bucket("v1", NS, "content", "blob", hc.config_digest(live, NS), "labels")
    assert labels.get("dse.test/after-read") == b"yes"
    assert live.ctr("version", check=False) is not None


def test_containerd_records_from_the_live_files(live: hc.PrivateContainerd) -> None:
    """read_metadata and read_snapshots, which read only their shapes' buckets, on the files
    containerd holds: what ctr lists, and the same records as from read_db's whole tree."""
    from exporter.sources.containerd_meta import read_blob_labels, read_metadata, read_snapshots
    from tests.unit.test_bolt import records, reference_metadata, reference_snapshots

    for read, reference, db in (
        (read_metadata, reference_metadata, live.meta_db),
        (read_snapshots, reference_snapshots, live.snapshots_db),
    ):
        for _ in range(20):  # containerd's GC may commit in between
            got, want = read(db), reference(db)
            if got.txid == want.txid:
                break
        assert got.txid == want.txid and records(got) == records(want)
    ns = read_metadata(live.meta_db).namespaces[NS]
    assert set(ns.images) == set(hc.images(live, NS)) == {hc.TAG}
    labels = read_blob_labels(live.meta_db, {NS: sorted(ns.blobs)}).labels[NS]
    assert {d: dict(b) for d, b in labels.items()} == hc.content(live, NS)
    listed = hc.snapshots(live, NS)
    assert ns.snapshots.keys() == listed.keys()
    by_backend = read_snapshots(live.snapshots_db).by_backend
    assert {by_backend[s.backend].key for s in ns.snapshots.values()} == set(listed)
    for key, (parent, _) in listed.items():  # each parent as ctr lists it, from the snapshotter's record
        rec = by_backend[ns.snapshots[key].backend]
        assert (by_backend[rec.parent].key if rec.parent else "") == parent


def test_reads_while_containerd_writes(live: hc.PrivateContainerd, bolt_walk: str) -> None:
    """`ctr` commits label changes (meta.db) and snapshot prepares and removes (both files)
    while we read in a loop: every view is a committed one, in commit order."""
    config = hc.config_digest(live, NS)
    rounds = 30
    churn_key = f"dse-churn-{bolt_walk}-"  # once per walk, in the same containerd
    prefix = churn_key.encode()
    done, errors = threading.Event(), []

    def write() -> None:
        try:
            for i in range(rounds):
                live.ctr("content", "label", config, f"dse.test/n={i}", ns=NS)
                live.ctr("snapshots", "prepare", f"{churn_key}{i}", ns=NS)
                if i:
                    live.ctr("snapshots", "rm", f"{churn_key}{i - 1}", ns=NS)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)
        finally:
            done.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    seen: list[tuple[int, int]] = []
    inconsistent = churn_views = 0
    while not done.is_set():
        try:
            snap = read_db(live.meta_db)
            n = snap.bucket("v1", NS, "content", "blob", config, "labels").get("dse.test/n")
            seen.append((snap.txid, int(n) if n is not None else -1))
            # `ctr snapshots rm` drops the record at once: at most the new one and the last
            records = snap.bucket("v1", NS, "snapshots", "overlayfs").buckets
            churn = sorted(int(k[len(prefix) :]) for k in records if k.startswith(prefix))
            assert not churn or churn[1:] in ([], [churn[0] + 1])
            # the snapshotter's own records go later, with the GC: ids stay unique, and a
            # record meta.db held both before and after is in the snapshotter's meanwhile (one
            # only before may have been removed and collected in between: `rm` runs on)
            backend = read_db(live.snapshots_db).bucket("v1", "snapshots").buckets
            ids = [uvarint(r.get("id"))[0] for r in backend.values()]
            held = hc_names(snap) & hc_names(read_db(live.meta_db))
            assert len(ids) == len(set(ids)) and backend.keys() >= held
            churn_views += bool(churn)
        except Inconsistent:
            inconsistent += 1
    writer.join(60)
    assert not errors and not writer.is_alive()
    assert seen == sorted(seen) and len(seen) >= 20  # txids and n only ever go forward
    assert len({txid for txid, _ in seen}) >= 10 and churn_views >= 5  # we did read between commits
    assert inconsistent < len(seen)
    final = read_db(live.meta_db)
    assert (
        final.bucket("v1", NS, "content", "blob", config, "labels").get("dse.test/n")
        == str(rounds - 1).encode()
    )


def test_docker_volume_store(engine: PrivateEngine) -> None:
    """dockerd's volumes/metadata.db: bucket `volumes`, volume name -> its JSON record."""
    name = f"dse-bolt-{os.getpid()}"
    engine.docker("volume", "create", "--label", "dse.test=bolt", name)
    db = engine.data_root / "volumes" / "metadata.db"
    assert engine.proc is not None and engine.proc.pid in exclusive_flock_holders(db)
    try:
        snap = read_bounded(db)
        volumes = snap.bucket("volumes")
        assert volumes is not None
        assert {k.decode() for k in volumes.values} == set(engine.docker("volume", "ls", "-q").split())
        record = json.loads(volumes.get(name) or b"null")
        assert (
            record["Name"] == name
            and record["Driver"] == "local"
            and record["Labels"] == {"dse.test": "bolt"}
        )
    finally:
        engine.docker("volume", "rm", name)
    after = read_bounded(db)
    assert after.txid > snap.txid and after.bucket("volumes").get(name) is None
    assert engine.docker("version", "--format", "{{.Server.Version}}").strip()


def test_buildkit_dbs(engine: PrivateEngine) -> None:
    """BuildKit's own bbolt files in a dockerd's data root, read while it holds them."""
    dbs = {p.name: p for p in (engine.data_root / "buildkit").glob("*.db")}
    assert {"cache.db", "metadata_v2.db", "snapshots.db", "containerdmeta.db"} <= set(dbs)
    for path in dbs.values():
        assert exclusive_flock_holders(path)
        snap = read_bounded(path)
        assert snap.txid >= 1 and bolt.txid(path) == snap.txid
    # solver/bboltcachestorage's four buckets, made when the store opens
    cache = read_bounded(dbs["cache.db"])
    assert set(cache.root.buckets) == {b"_result", b"_links", b"_byresult", b"_backlinks"}


def test_buildkit_snapshot_dirs_read_from_its_db(engine: PrivateEngine, seeded: object) -> None:
    """The seeded engine's BuildKit build left snapshot dirs in overlay2/: exactly the dirs
    that no layerdb layer, container mount or init layer names (none else is planted there),
    and snapshots.db, read as the bbolt file it is, names each of them."""
    from exporter.sources.layout import buildkit_snapshot_names, read_layout

    root = engine.data_root
    layout = read_layout(str(root), "overlay2")
    owned = {e.cache_id for e in layout.layers} | {m.mount_id for m in layout.mounts}
    owned |= {m.init_id for m in layout.mounts} | {"l"}
    unowned = sorted(set(layout.driver_dirs) - owned)
    assert unowned, "the seed's BuildKit build left no snapshot dir"
    read_db(root / "buildkit" / "snapshots.db")  # a real bbolt file: not the plain-bytes fallback
    assert buildkit_snapshot_names(str(root), unowned) == frozenset(unowned)
    # Names the db does not hold are not BuildKit's (a container's mount, an init layer).
    assert not buildkit_snapshot_names(str(root), sorted({m.mount_id for m in layout.mounts}))
