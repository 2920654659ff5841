"""exporter.sources.layout.read_layout on synthetic Docker roots built in tmp_path.

The tree builder here (`DockerRoot`) lays out a root the way dockerd's overlay2 graphdriver
does (layerdb, mounts, imagedb, overlay2 dirs with link/lower/work, l/ symlinks, BuildKit's
snapshots.db, containers with json-file and local-driver logs, volumes); test_scan_unit.py
reuses it. No Docker engine needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from exporter.sources.layout import Layout, ReadCache, chain_ids, read_layout

KB = 1024


def hexid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def digest(seed: str) -> str:
    return f"sha256:{hexid(seed)}"


def short(seed: str, n: int = 26) -> str:
    """A name like overlay2's l/ links and BuildKit's snapshot dirs (upper-case base32-ish)."""
    return hashlib.sha1(seed.encode()).hexdigest()[:n].upper()


def put(path: Path, data: bytes | str = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def blob(size: int, seed: str = "x") -> bytes:
    unit = hashlib.sha256(seed.encode()).digest()
    return (unit * (size // len(unit) + 1))[:size]


@dataclass
class LayerInfo:
    chain_id: str
    diff_id: str
    cache_id: str
    parent: str
    size: int  # what we wrote into layerdb `size`
    apparent: int  # Docker's calcSize of diff/: st_size of non-dirs, hard links once


@dataclass
class DockerRoot:
    """A synthetic Docker root. Methods add objects and record what a reader should find."""

    root: Path
    driver: str = "overlay2"
    layers: dict[str, LayerInfo] = field(default_factory=dict)  # chain ID -> layer
    images: dict[str, tuple[str, ...]] = field(default_factory=dict)  # image ID -> chain IDs
    mounts: dict[str, tuple[str, str]] = field(default_factory=dict)  # container -> (mount, init)
    containers: dict[str, list[Path]] = field(default_factory=dict)  # container -> log files
    volumes: list[str] = field(default_factory=list)
    buildkit: list[str] = field(default_factory=list)  # snapshot dirs named in snapshots.db
    orphans: list[str] = field(default_factory=list)

    @property
    def image_dir(self) -> Path:
        return self.root / "image" / self.driver

    @property
    def layerdb(self) -> Path:
        return self.image_dir / "layerdb"

    @property
    def ddir(self) -> Path:
        return self.root / self.driver

    # -- image layers -----------------------------------------------------------------

    def layer(self, seed: str) -> LayerInfo:
        """The layer made from `seed` (its diff ID is digest("diff:" + seed))."""
        (found,) = [x for x in self.layers.values() if x.diff_id == digest(f"diff:{seed}")]
        return found

    def _driver_dir(self, name: str, files: dict[str, bytes], lower: str = "") -> Path:
        """overlay2/<name>/{diff/…,link,lower,work} and its l/<short> symlink."""
        d = self.ddir / name
        (d / "diff").mkdir(parents=True, exist_ok=True)
        for rel, data in files.items():
            put(d / "diff" / rel, data)
        link = short(name)
        put(d / "link", link)
        if lower:
            put(d / "lower", lower)
            (d / "work" / "work").mkdir(parents=True, exist_ok=True)
        (self.ddir / "l").mkdir(parents=True, exist_ok=True)
        os.symlink(f"../{name}/diff", self.ddir / "l" / link)
        return d

    def add_layer(self, seed: str, parent: str = "", files: dict[str, bytes] | None = None) -> LayerInfo:
        """One committed image layer on top of chain ID `parent` ("" for a base layer)."""
        files = files if files is not None else {f"{seed}/data.bin": blob(5000 + len(seed) * 997, seed)}
        diff_id = digest(f"diff:{seed}")
        # ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)); add_image cross-checks chain_ids().
        chain = f"sha256:{hashlib.sha256(f'{parent} {diff_id}'.encode()).hexdigest()}" if parent else diff_id
        cache_id = hexid(f"cache:{seed}")
        lower = ""
        if parent:
            p = self.layers[parent]
            lower = f"l/{short(p.cache_id)}"
            prev = self.ddir / p.cache_id / "lower"
            if prev.exists():
                lower += ":" + prev.read_text()
        d = self._driver_dir(cache_id, files, lower)
        apparent = tree_apparent(d / "diff")
        e = self.layerdb / "sha256" / chain.split(":", 1)[1]
        put(e / "diff", diff_id)
        put(e / "size", str(apparent))
        put(e / "cache-id", cache_id)
        if parent:
            put(e / "parent", parent)
        put(e / "tar-split.json.gz", blob(300, seed))
        info = LayerInfo(chain, diff_id, cache_id, parent, apparent, apparent)
        self.layers[chain] = info
        return info

    def add_image(self, seed: str, layer_seeds: list[str]) -> str:
        """An image whose rootfs is the given layers, bottom-up; missing layers are created."""
        chain: list[str] = []
        for ls in layer_seeds:
            parent = chain[-1] if chain else ""
            diff_id = digest(f"diff:{ls}")
            want = chain_ids([*(self.layers[c].diff_id for c in chain), diff_id])[-1]
            if want not in self.layers:
                self.add_layer(ls, parent)
            assert self.layers[want].diff_id == diff_id
            chain.append(want)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [self.layers[c].diff_id for c in chain]},
        }
        raw = json.dumps(config).encode()
        image_id = hashlib.sha256(raw).hexdigest()
        put(self.image_dir / "imagedb" / "content" / "sha256" / image_id, raw)
        self.images[f"sha256:{image_id}"] = tuple(chain)
        return f"sha256:{image_id}"

    # -- containers -------------------------------------------------------------------

    def add_container(
        self,
        seed: str,
        image_top: str,
        rw: dict[str, bytes] | None = None,
        logs: int = 3000,
        rotated: int = 2,
        local_logs: bool = False,
        mount: bool = True,
    ) -> str:
        cid = hexid(f"container:{seed}")
        mount_id = hexid(f"mount:{seed}")
        init_id = f"{mount_id}-init"
        top = self.layers[image_top]
        lower_parent = f"l/{short(top.cache_id)}"
        prev = self.ddir / top.cache_id / "lower"
        if prev.exists():
            lower_parent += ":" + prev.read_text()
        if mount:
            m = self.layerdb / "mounts" / cid
            put(m / "mount-id", mount_id)
            put(m / "init-id", init_id)
            put(m / "parent", image_top)
            init = self._driver_dir(
                init_id, {"etc/hosts": b"", "etc/hostname": b"", ".dockerenv": b""}, lower_parent
            )
            d = self._driver_dir(
                mount_id,
                rw if rw is not None else {"tmp/scratch.bin": blob(12000, seed)},
                f"l/{short(init_id)}:{lower_parent}",
            )
            # merged/ is the live overlay mount: never walked; make it big so a walk shows.
            put(d / "merged" / "lots.bin", blob(200 * KB, "merged"))
            assert init.exists()
            self.mounts[cid] = (mount_id, init_id)
        c = self.root / "containers" / cid
        put(c / "config.v2.json", json.dumps({"ID": cid, "Name": f"/{seed}"}))
        put(c / "hostconfig.json", "{}")
        put(c / "hostname", seed[:12])
        put(c / "hosts", "127.0.0.1 localhost\n")
        put(c / "resolv.conf", "nameserver 127.0.0.1\n")
        (c / "checkpoints").mkdir()
        put(c / "mounts" / "shm" / "big.shm", blob(64 * KB, "shm"))  # a tmpfs in real life
        log_files = []
        if logs:
            log_files.append(put(c / f"{cid}-json.log", blob(logs, f"log:{seed}")))
            for i in range(1, rotated + 1):
                log_files.append(put(c / f"{cid}-json.log.{i}", blob(logs * 3, f"log:{seed}:{i}")))
        if local_logs:
            log_files.append(put(c / "local-logs" / "container.log", blob(7000, f"local:{seed}")))
            log_files.append(put(c / "local-logs" / "container.log.1.gz", blob(900, f"localgz:{seed}")))
        self.containers[cid] = log_files
        return cid

    # -- the rest ---------------------------------------------------------------------

    def add_volume(self, name: str, files: dict[str, bytes] | None = None) -> Path:
        d = self.root / "volumes" / name / "_data"
        d.mkdir(parents=True, exist_ok=True)
        for rel, data in (files if files is not None else {"db/data.bin": blob(30 * KB, name)}).items():
            put(d / rel, data)
        put(self.root / "volumes" / "metadata.db", blob(32 * KB, "metadata.db"))
        self.volumes.append(name)
        return d.parent

    def add_buildkit_snapshot(self, seed: str, in_db: bool = True) -> str:
        name = short(f"bk:{seed}", 25).lower()
        d = self._driver_dir(name, {"app/build.out": blob(9000, seed)})
        (d / "work").mkdir(exist_ok=True)
        db = self.root / "buildkit" / "snapshots.db"
        existing = db.read_bytes() if db.exists() else blob(4096, "bolt")
        if in_db:
            # bbolt stores keys as plain bytes between binary page headers.
            existing += b"\x00\x10\x02" + name.encode() + b"\xff\xfe" + b"\x00" * 13
            self.buildkit.append(name)
        put(db, existing)
        put(self.root / "buildkit" / "cache.db", blob(8 * KB, "cache.db"))
        put(self.root / "buildkit" / "containerdmeta.db", blob(16 * KB, "cmeta"))
        (self.root / "buildkit" / "content" / "ingest").mkdir(parents=True, exist_ok=True)
        return name

    def add_orphan(self, seed: str, size: int = 40 * KB) -> str:
        name = hexid(f"orphan:{seed}")
        d = self.ddir / name
        put(d / "diff" / "left" / "behind.bin", blob(size, seed))
        put(d / "link", short(name))
        (d / "work").mkdir()
        self.orphans.append(name)
        return name

    def add_misc(self) -> None:
        """The other top-level entries a real root has."""
        put(self.root / "network" / "files" / "local-kv.db", blob(32 * KB, "kv"))
        (self.root / "plugins" / "storage" / "ingest").mkdir(parents=True)
        (self.root / "runtimes").mkdir()
        (self.root / "swarm").mkdir()
        (self.root / "tmp").mkdir()
        put(self.root / "trust" / "placeholder", b"")
        put(self.image_dir / "repositories.json", json.dumps({"Repositories": {}}))
        put(self.image_dir / "distribution" / "diffid-by-digest" / "sha256" / hexid("d"), digest("x"))
        put(self.root / "engine-id", "8c1b6a1e-0000-4000-8000-000000000000")


def tree_apparent(path: Path) -> int:
    """Docker's calcSize written plainly: st_size of non-directories, hard links once."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def build_standard(root: Path) -> DockerRoot:
    """Two images sharing a base layer, a third on its own, two containers (one with local
    logs), a container dir without a layer mount, two volumes, a BuildKit snapshot, a dir that
    only looks like one (not in the db) and an orphan."""
    t = DockerRoot(root)
    t.add_misc()
    base_files = {
        "bin/busybox": blob(60 * KB, "busybox"),
        "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n",
        "empty": b"",
    }
    t.add_layer("base", files=base_files)
    d = t.ddir / t.layers[digest("diff:base")].cache_id / "diff"
    os.link(d / "bin" / "busybox", d / "bin" / "sh")  # hard link: counted once
    os.symlink("busybox", d / "bin" / "ls")
    os.mknod(d / "etc" / "removed", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # whiteout
    with open(d / "sparse.img", "wb") as f:  # apparent 1 MiB, almost nothing allocated
        f.truncate(1024 * KB)
    base = t.layers[digest("diff:base")]
    # Re-record the base layer's size now that its diff holds everything.
    base.apparent = base.size = tree_apparent(d)
    put(t.layerdb / "sha256" / base.chain_id.split(":", 1)[1] / "size", str(base.size))

    t.add_image("app", ["base", "app1", "app2"])
    t.add_image("tool", ["base", "tool1"])
    t.add_image("solo", ["solo1"])
    t.add_container("web", t.images[next(iter(t.images))][-1], local_logs=True)
    t.add_container("job", t.layers[chain_ids([digest("diff:base"), digest("diff:tool1")])[-1]].chain_id)
    t.add_container("ghost", base.chain_id, mount=False, rotated=0)  # a dir, no layerdb mount
    t.add_volume("pgdata")
    t.add_volume("cache", {"a": blob(3 * KB, "a"), "deep/er/b": blob(70 * KB, "b")})
    t.add_buildkit_snapshot("builder")
    t.add_buildkit_snapshot("lookalike", in_db=False)
    t.add_orphan("left")
    return t


# --- a well-formed tree -------------------------------------------------------------------


@pytest.fixture
def std(tmp_path: Path) -> DockerRoot:
    return build_standard(tmp_path / "docker")


def test_chain_ids_match_docker_definition() -> None:
    a, b, c = digest("a"), digest("b"), digest("c")
    ids = chain_ids([a, b, c])
    ab = "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = "sha256:" + hashlib.sha256(f"{ab} {c}".encode()).hexdigest()
    assert ids == (a, ab, abc)
    assert chain_ids([]) == ()


def test_well_formed_tree_is_read_completely(std: DockerRoot) -> None:
    layout = read_layout(str(std.root), "overlay2")
    assert isinstance(layout, Layout)
    assert layout.root == str(std.root)
    assert layout.driver == "overlay2"
    assert layout.skipped == 0 and layout.problems == ()

    got = {e.chain_id: e for e in layout.layers}
    assert set(got) == set(std.layers)
    for chain, want in std.layers.items():
        e = got[chain]
        assert (e.diff_id, e.cache_id, e.parent, e.size) == (
            want.diff_id,
            want.cache_id,
            want.parent,
            want.size,
        )
    assert len(std.layers) == 5  # base (shared), app1, app2, tool1, solo1
    assert {(m.container_id, m.mount_id, m.init_id) for m in layout.mounts} == {
        (cid, m, i) for cid, (m, i) in std.mounts.items()
    }
    assert layout.image_layers == std.images
    assert all(c in got for chain in layout.image_layers.values() for c in chain)

    containers = {c.id: c for c in layout.containers}
    assert set(containers) == set(std.containers)
    for cid, logs in std.containers.items():
        assert containers[cid].path == str(std.root / "containers" / cid)
        assert sorted(containers[cid].logs) == sorted(str(p) for p in logs)
    web = hexid("container:web")
    assert any(p.endswith(f"{web}-json.log.2") for p in containers[web].logs)
    assert any(p.endswith("local-logs/container.log") for p in containers[web].logs)
    assert any(p.endswith("local-logs/container.log.1.gz") for p in containers[web].logs)
    assert containers[hexid("container:ghost")].logs == (
        str(std.root / "containers" / hexid("container:ghost") / f"{hexid('container:ghost')}-json.log"),
    )

    assert sorted(layout.volumes) == sorted(std.volumes)  # metadata.db is no volume
    assert set(layout.top_dirs) == {
        "buildkit", "containers", "engine-id", "image", "network", "overlay2", "plugins",
        "runtimes", "swarm", "tmp", "trust", "volumes",
    }  # fmt: skip
    expected_driver = (
        {e.cache_id for e in std.layers.values()}
        | {m for m, _ in std.mounts.values()}
        | {i for _, i in std.mounts.values()}
        | set(std.buildkit)
        | set(std.orphans)
        | {short("bk:lookalike", 25).lower(), "l"}
    )
    assert set(layout.driver_dirs) == expected_driver
    assert layout.buildkit_names == frozenset(std.buildkit)
    assert len(std.buildkit) == 1


def test_buildkit_names_only_from_unowned_dirs(std: DockerRoot) -> None:
    """A layer's cache-id that also appears in snapshots.db stays a layer, not build cache."""
    layer = next(iter(std.layers.values()))
    db = std.root / "buildkit" / "snapshots.db"
    db.write_bytes(db.read_bytes() + layer.cache_id.encode() + b"l")
    layout = read_layout(str(std.root), "overlay2")
    assert layer.cache_id not in layout.buildkit_names
    assert layout.buildkit_names == frozenset(std.buildkit)


# --- malformed and half-written entries -----------------------------------------------


def _layer_dir(t: DockerRoot, seed: str) -> Path:
    return t.layerdb / "sha256" / t.layer(seed).chain_id.split(":", 1)[1]


def _read_bad(t: DockerRoot) -> tuple[Layout, int]:
    before = len(t.layers)
    layout = read_layout(str(t.root), "overlay2")
    return layout, before


@pytest.mark.parametrize(
    ("fname", "content"),
    [
        pytest.param("size", b"", id="size-empty"),  # dockerd had not written it yet
        pytest.param("size", b"  \n", id="size-blank"),
        pytest.param("size", b"abc", id="size-abc"),
        pytest.param("size", b"12abc", id="size-12abc"),
        pytest.param("size", b"0x1f", id="size-hex"),
        pytest.param("size", b"1_000", id="size-underscore"),  # int() takes it; Go's ParseInt does not
        pytest.param("size", b"1e6", id="size-float"),
        pytest.param("size", b"\xff\xfe\x00\x01binary\x80", id="size-binary"),
        pytest.param("size", b"7" * (3 * 1024 * 1024), id="size-huge"),  # MBs in place of a short line
        pytest.param("cache-id", None, id="cache-id-missing"),
        pytest.param("cache-id", b"", id="cache-id-empty"),
        pytest.param("cache-id", b"../../etc", id="cache-id-traversal"),
        pytest.param("cache-id", b"a/b", id="cache-id-slash"),
        pytest.param("cache-id", b"..", id="cache-id-dotdot"),
        pytest.param("cache-id", b".", id="cache-id-dot"),
        pytest.param("cache-id", b"\x9c\x80\xfe garbage \xff", id="cache-id-binary"),
        pytest.param("diff", None, id="diff-missing"),
        pytest.param("diff", b"sha256:nothex", id="diff-nothex"),
        pytest.param("diff", b"sha256:" + b"a" * 63, id="diff-short"),
        pytest.param("diff", b"md5:" + b"a" * 64, id="diff-md5"),
        pytest.param("diff", b"a" * 64, id="diff-no-algorithm"),
        pytest.param("diff", b"\x00\xff" * 40, id="diff-binary"),
    ],
)
def test_malformed_layer_is_skipped_and_counted(tmp_path: Path, fname: str, content: bytes | None) -> None:
    t = build_standard(tmp_path / "docker")
    bad = _layer_dir(t, "tool1")
    if content is None:
        (bad / fname).unlink()
    else:
        (bad / fname).write_bytes(content)
    layout, before = _read_bad(t)
    chains = {e.chain_id for e in layout.layers}
    assert f"sha256:{bad.name}" not in chains
    assert len(chains) == before - 1
    assert layout.skipped == 1
    assert len(layout.problems) == 1 and bad.name[:12] in layout.problems[0]
    # The skipped layer's dir is no longer owned, so it is a candidate like any unknown dir;
    # everything else is still read.
    assert sorted(layout.volumes) == sorted(t.volumes)
    assert len(layout.mounts) == len(t.mounts)


def test_negative_size_reads_as_zero_not_skipped(std: DockerRoot) -> None:
    (_layer_dir(std, "app1") / "size").write_bytes(b"-5")
    layout = read_layout(str(std.root), "overlay2")
    e = next(x for x in layout.layers if x.diff_id == digest("diff:app1"))
    assert e.size == 0


def test_size_with_trailing_newline_is_accepted(std: DockerRoot) -> None:
    (_layer_dir(std, "app1") / "size").write_bytes(b"4096\n")
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 0
    assert next(x for x in layout.layers if x.diff_id == digest("diff:app1")).size == 4096


def test_several_bad_entries_are_each_counted(std: DockerRoot) -> None:
    (_layer_dir(std, "app1") / "size").write_bytes(b"")
    (_layer_dir(std, "solo1") / "cache-id").unlink()
    (_layer_dir(std, "tool1") / "diff").write_bytes(os.urandom(64))
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 3 and len(layout.problems) == 3
    assert len(layout.layers) == len(std.layers) - 3


def test_problems_list_is_capped_but_count_is_not(tmp_path: Path) -> None:
    t = DockerRoot(tmp_path / "docker")
    for i in range(30):
        put(t.layerdb / "sha256" / hexid(f"bad{i}") / "size", b"")
    layout = read_layout(str(t.root), "overlay2")
    assert layout.layers == ()
    assert layout.skipped == 30
    assert 0 < len(layout.problems) <= 30


def test_removing_layer_dir_is_ignored_not_counted(std: DockerRoot) -> None:
    """dockerd renames a layer to `<id>-<random>-removing` while it deletes it."""
    victim = _layer_dir(std, "solo1")
    victim.rename(victim.with_name(f"{victim.name}-{short('rnd', 8).lower()}-removing"))
    # A half-deleted one: some files already gone.
    other = _layer_dir(std, "tool1")
    half = other.with_name(f"{other.name}-0a1b2c3d-removing")
    shutil.copytree(other, half)
    (half / "cache-id").unlink()
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 0 and layout.problems == ()
    assert {e.chain_id for e in layout.layers} == set(std.layers) - {f"sha256:{victim.name}"}


def test_non_hex_layerdb_names_are_ignored(std: DockerRoot) -> None:
    put(std.layerdb / "sha256" / "README", b"hello")
    put(std.layerdb / "sha256" / ("A" * 64) / "size", b"1")  # upper case: not a chain ID
    (std.layerdb / "sha256" / "short").mkdir()
    (std.layerdb / "tmp" / "write-set-123").mkdir(parents=True)
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 0
    assert {e.chain_id for e in layout.layers} == set(std.layers)


def test_layer_gone_between_listing_and_reading_is_skipped(std: DockerRoot) -> None:
    """A layerdb dir with no files left (dockerd removed them after we listed the dir)."""
    d = _layer_dir(std, "app2")
    for f in d.iterdir():
        f.unlink()
    layout = read_layout(str(std.root), "overlay2")
    assert f"sha256:{d.name}" not in {e.chain_id for e in layout.layers}
    assert layout.skipped == 1 and d.name[:12] in layout.problems[0]


def test_layer_entry_that_is_a_file_is_skipped(std: DockerRoot) -> None:
    d = _layer_dir(std, "app2")
    shutil.rmtree(d)
    d.write_bytes(os.urandom(100))
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 1
    assert len(layout.layers) == len(std.layers) - 1


@pytest.mark.timeout(30)
def test_fifo_or_symlink_in_place_of_a_file_is_skipped_not_waited_on(std: DockerRoot, tmp_path: Path) -> None:
    """A fifo would block a plain open() until a writer came; a symlink could point anywhere."""
    fifo = _layer_dir(std, "app2") / "cache-id"
    fifo.unlink()
    os.mkfifo(fifo)
    link = _layer_dir(std, "tool1") / "diff"
    put(tmp_path / "elsewhere", digest("diff:tool1"))  # a well-formed value, but not Docker's file
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere")
    solo = next(i for i, chain in std.images.items() if chain == (std.layer("solo1").chain_id,))
    config = std.image_dir / "imagedb" / "content" / "sha256" / solo.split(":", 1)[1]
    config.unlink()
    os.mkfifo(config)
    db = std.root / "buildkit" / "snapshots.db"
    db.unlink()
    os.mkfifo(db)

    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 3
    assert {e.chain_id for e in layout.layers} == set(std.layers) - {
        std.layer("app2").chain_id,
        std.layer("tool1").chain_id,
    }
    assert set(layout.image_layers) == set(std.images) - {solo}
    assert layout.buildkit_names == frozenset()  # the db unreadable: no dir is known as BuildKit's


def test_binary_garbage_everywhere_never_raises(std: DockerRoot) -> None:
    garbage = bytes(range(256)) * 4
    for name in ("diff", "size", "cache-id", "parent"):
        (_layer_dir(std, "app1") / name).write_bytes(garbage)
    mount = std.layerdb / "mounts" / next(iter(std.mounts))
    (mount / "mount-id").write_bytes(garbage)
    (mount / "init-id").write_bytes(garbage)
    image = next(iter(std.images)).split(":", 1)[1]
    (std.image_dir / "imagedb" / "content" / "sha256" / image).write_bytes(garbage)
    (std.root / "buildkit" / "snapshots.db").write_bytes(garbage)
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 3
    assert len(layout.layers) == len(std.layers) - 1
    assert len(layout.mounts) == len(std.mounts) - 1
    assert len(layout.image_layers) == len(std.images) - 1
    assert layout.buildkit_names == frozenset()


def test_parent_is_optional(std: DockerRoot) -> None:
    (_layer_dir(std, "app1") / "parent").unlink()
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 0
    assert next(x for x in layout.layers if x.diff_id == digest("diff:app1")).parent == ""


@pytest.mark.parametrize(
    ("mount_id", "init_id"),
    [(None, b"x-init"), (b"", b"x-init"), (b"a/b", b"a/b-init"), (b"\xff\xfe\x00", b"")],
)
def test_malformed_mount_is_skipped(std: DockerRoot, mount_id: bytes | None, init_id: bytes) -> None:
    cid = next(iter(std.mounts))
    m = std.layerdb / "mounts" / cid
    if mount_id is None:
        (m / "mount-id").unlink()
    else:
        (m / "mount-id").write_bytes(mount_id)
    (m / "init-id").write_bytes(init_id)
    layout = read_layout(str(std.root), "overlay2")
    assert cid not in {x.container_id for x in layout.mounts}
    assert len(layout.mounts) == len(std.mounts) - 1
    assert layout.skipped == 1 and cid[:12] in layout.problems[0]


def test_mount_without_init_id_is_kept(std: DockerRoot) -> None:
    cid = next(iter(std.mounts))
    (std.layerdb / "mounts" / cid / "init-id").unlink()
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 0
    m = next(x for x in layout.mounts if x.container_id == cid)
    assert (m.mount_id, m.init_id) == (std.mounts[cid][0], "")


def test_empty_mount_dir_is_skipped(std: DockerRoot) -> None:
    (std.layerdb / "mounts" / hexid("half-created")).mkdir()
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 1
    assert len(layout.mounts) == len(std.mounts)


def _config(diff_ids: object) -> bytes:
    return json.dumps({"architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"rootfs": {"type": "layers", "diff_ids": ["sha256:' + b"a" * 30, id="truncated-mid"),
        pytest.param(b"not json at all", id="not-json"),
        pytest.param(b"\x00\x01\xff\xfe" * 100, id="binary"),
        pytest.param(b"[]", id="list"),
        pytest.param(b'"a string"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"42", id="number"),
        pytest.param(json.dumps({"architecture": "amd64"}).encode(), id="no-rootfs"),
        pytest.param(json.dumps({"rootfs": None}).encode(), id="rootfs-null"),
        pytest.param(json.dumps({"rootfs": "layers"}).encode(), id="rootfs-string"),
        pytest.param(json.dumps({"rootfs": {"type": "layers"}}).encode(), id="no-diff-ids"),
        pytest.param(_config(["not-a-digest"]), id="diff-id-not-digest"),
        pytest.param(_config([digest("a"), "sha256:xyz"]), id="diff-id-short"),
        pytest.param(_config([digest("a"), 42]), id="diff-id-number"),
        pytest.param(_config([digest("a"), None]), id="diff-id-null"),
        pytest.param(_config("sha256:" + "a" * 64), id="diff-ids-string"),
        pytest.param(_config({"sha256:" + "a" * 64: 1}), id="diff-ids-object"),
        pytest.param(_config(["sha256:" + "a" * 64 + "\n"]), id="diff-id-trailing-newline"),
        pytest.param(_config([digest("a").upper()]), id="diff-id-upper"),
        pytest.param(b"[" * 200_000, id="deeply-nested"),  # beyond json's recursion limit
    ],
)
def test_bad_image_config_is_skipped_and_counted(std: DockerRoot, content: bytes) -> None:
    image = hexid("bad-image")
    put(std.image_dir / "imagedb" / "content" / "sha256" / image, content)
    layout = read_layout(str(std.root), "overlay2")
    assert f"sha256:{image}" not in layout.image_layers
    assert layout.image_layers == std.images
    assert layout.skipped == 1 and image[:12] in layout.problems[0]


def test_image_config_with_no_layers_is_kept(std: DockerRoot) -> None:
    image = hexid("empty-image")
    put(std.image_dir / "imagedb" / "content" / "sha256" / image, _config([]))
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 0
    assert layout.image_layers[f"sha256:{image}"] == ()


def test_imagedb_metadata_and_odd_names_are_ignored(std: DockerRoot) -> None:
    # imagedb/metadata/sha256/<id>/{parent,lastUpdated} is not a config.
    put(std.image_dir / "imagedb" / "metadata" / "sha256" / hexid("m") / "parent", digest("p"))
    put(std.image_dir / "imagedb" / "content" / "sha256" / "tmp-123", b"{")
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 0 and layout.image_layers == std.images


def test_unreadable_image_config_is_skipped(std: DockerRoot) -> None:
    (std.image_dir / "imagedb" / "content" / "sha256" / hexid("dir-not-file")).mkdir()
    layout = read_layout(str(std.root), "overlay2")
    assert layout.skipped == 1
    assert layout.image_layers == std.images


# --- logs, volumes, odd container dirs ---------------------------------------------------


def test_log_files_are_the_containers_own(std: DockerRoot) -> None:
    cid = hexid("container:job")
    c = std.root / "containers" / cid
    put(c / f"{hexid('other')}-json.log", b"not this container's")
    put(c / "local-logs" / "other.txt", b"not a log")
    put(c / "container-cached.log", b"the local driver's cache lives elsewhere")
    layout = read_layout(str(std.root), "overlay2")
    got = next(x for x in layout.containers if x.id == cid)
    assert sorted(got.logs) == sorted(str(p) for p in std.containers[cid])


def test_volumes_are_dirs_only(std: DockerRoot) -> None:
    put(std.root / "volumes" / "backingFsBlockDev", b"")
    layout = read_layout(str(std.root), "overlay2")
    assert sorted(layout.volumes) == sorted(std.volumes)
    assert "metadata.db" not in layout.volumes and "backingFsBlockDev" not in layout.volumes


# --- missing dirs ---------------------------------------------------------------------------


def test_empty_root(tmp_path: Path) -> None:
    root = tmp_path / "docker"
    root.mkdir()
    layout = read_layout(str(root), "overlay2")
    assert layout.layers == () and layout.mounts == () and layout.image_layers == {}
    assert layout.buildkit_names == frozenset() and layout.driver_dirs == ()
    assert layout.containers == () and layout.volumes == () and layout.top_dirs == ()
    assert layout.skipped == 0 and layout.problems == ()


def test_missing_root(tmp_path: Path) -> None:
    layout = read_layout(str(tmp_path / "nope"), "overlay2")
    assert layout.layers == () and layout.top_dirs == () and layout.skipped == 0


@pytest.mark.parametrize("missing", ["image", "buildkit", "volumes", "containers", "overlay2"])
def test_missing_top_dir_gives_empty_part(std: DockerRoot, missing: str) -> None:
    shutil.rmtree(std.root / missing)
    layout = read_layout(str(std.root), "overlay2")
    assert missing not in layout.top_dirs
    assert layout.skipped == 0
    if missing == "image":
        assert layout.layers == () and layout.mounts == () and layout.image_layers == {}
        # With no layerdb nothing owns a dir, so the snapshot is still found among them all.
        assert layout.buildkit_names == frozenset(std.buildkit)
    else:
        assert len(layout.layers) == len(std.layers)
    if missing == "buildkit":
        assert layout.buildkit_names == frozenset()
    if missing == "volumes":
        assert layout.volumes == ()
    if missing == "containers":
        assert layout.containers == ()
    if missing == "overlay2":
        assert layout.driver_dirs == () and layout.buildkit_names == frozenset()


def test_missing_parts_of_image_dir(std: DockerRoot) -> None:
    shutil.rmtree(std.layerdb / "mounts")
    shutil.rmtree(std.image_dir / "imagedb")
    layout = read_layout(str(std.root), "overlay2")
    assert layout.mounts == () and layout.image_layers == {}
    assert len(layout.layers) == len(std.layers) and layout.skipped == 0


def test_other_driver_name_reads_its_own_dirs(std: DockerRoot) -> None:
    layout = read_layout(str(std.root), "vfs")
    assert layout.layers == () and layout.driver_dirs == () and layout.mounts == ()
    assert len(layout.containers) == len(std.containers)
    assert sorted(layout.volumes) == sorted(std.volumes)


# --- reuse of unchanged listings (ReadCache) -----------------------------------------------


def age(root: Path, seconds: int = 3600) -> None:
    """Set every mtime under `root` an hour back: a tree nobody has touched lately, whose dir
    stamps read_layout may trust (a fresh tmp tree is always "just modified")."""
    then = time.time() - seconds
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(top, name), (then, then), follow_symlinks=False)
    os.utime(root, (then, then))


def test_settled_listings_are_reused_until_a_dir_changes(std: DockerRoot) -> None:
    age(std.root)
    cache = ReadCache()
    first = read_layout(str(std.root), "overlay2", cache)
    second = read_layout(str(std.root), "overlay2", cache)
    # Reused, not re-read: the very same objects (what the scan's own memos key on).
    assert second.layers is first.layers and second.chain_stamps is first.chain_stamps
    assert second.image_layers is first.image_layers
    assert second.chains_stamp == first.chains_stamp is not None
    assert second == first

    # A layer and an image arrive (renamed into layerdb/sha256 and imagedb: the dirs' mtimes
    # move): both are seen on the next read, with everything that was there before.
    std.add_image("late", ["base", "late1"])
    third = read_layout(str(std.root), "overlay2", cache)
    assert {e.chain_id for e in third.layers} == set(std.layers)
    assert set(third.image_layers) == set(std.images)
    assert len(third.layers) == len(first.layers) + 1

    # A volume and a driver dir go: the listings of volumes/ and overlay2/ follow.
    age(std.root)
    read_layout(str(std.root), "overlay2", cache)
    shutil.rmtree(std.root / "volumes" / "pgdata")
    shutil.rmtree(std.ddir / std.orphans[0])
    age(std.root)  # settled again, under a new stamp: the old listings must not be reused
    fourth = read_layout(str(std.root), "overlay2", cache)
    assert "pgdata" not in fourth.volumes and std.orphans[0] not in fourth.driver_dirs
    assert fourth.volumes == ("cache",)


def test_container_dirs_are_listed_again_only_when_their_stamp_moves(std: DockerRoot) -> None:
    """A container dir's listing (where its logs are found) is reused while its settled stamp
    holds, and read again once it moved: a log rotated in (a rename), a local-driver log
    written; a gone container's listings are forgotten."""
    age(std.root)
    cache = ReadCache()
    first = {c.id: c.logs for c in read_layout(str(std.root), "overlay2", cache).containers}
    cid, logs = next((k, v) for k, v in first.items() if v)
    cdir = std.root / "containers" / cid
    listed = {p for p in cache.listings if p.startswith(str(std.root / "containers"))}
    assert str(cdir) in listed
    # The same listing object while the stamp holds, not a listing read again.
    again = cache.listings[str(cdir)]
    records = read_layout(str(std.root), "overlay2", cache).containers
    assert cache.listings[str(cdir)] is again
    # And the records made from them: the same objects (a rescan tells "unchanged" by identity).
    assert read_layout(str(std.root), "overlay2", cache).containers is records

    rotated = cdir / f"{cid}-json.log.7"
    (cdir / "tmp-rotate").write_bytes(b"x" * 100)
    os.rename(cdir / "tmp-rotate", rotated)
    (cdir / "local-logs").mkdir(exist_ok=True)
    (cdir / "local-logs" / "container.log.9").write_bytes(b"y")
    age(std.root)  # settled again, under a new stamp
    moved = read_layout(str(std.root), "overlay2", cache).containers
    after = {c.id: c.logs for c in moved}
    assert set(after[cid]) == {*logs, str(rotated), str(cdir / "local-logs" / "container.log.9")}
    assert moved is not records and {c.id: c for c in moved if c.id != cid} == {
        c.id: c for c in records if c.id != cid
    }  # the others' records as they were

    shutil.rmtree(cdir)
    age(std.root)
    gone = read_layout(str(std.root), "overlay2", cache)
    assert cid not in {c.id for c in gone.containers}
    assert not [p for p in cache.listings if p.startswith(str(cdir))]


def test_recently_modified_dirs_are_read_again(std: DockerRoot) -> None:
    """A dir changed within the last SETTLE_NS could change again inside the same mtime tick
    unseen: its listing is never reused."""
    cache = ReadCache()
    first = read_layout(str(std.root), "overlay2", cache)  # the tree was just written
    second = read_layout(str(std.root), "overlay2", cache)
    assert first.chains_stamp is None and cache.layer_set is None and cache.image_set is None
    assert second.layers is not first.layers and second.layers == first.layers


def test_reused_listing_still_counts_its_malformed_entries(std: DockerRoot) -> None:
    bad = std.layerdb / "sha256" / hexid("broken")
    put(bad / "diff", "not a digest")
    put(bad / "cache-id", hexid("cache:broken"))
    put(std.image_dir / "imagedb" / "content" / "sha256" / hexid("badimage"), b"{")
    age(std.root)
    cache = ReadCache()
    first = read_layout(str(std.root), "overlay2", cache)
    second = read_layout(str(std.root), "overlay2", cache)
    assert second.layers is first.layers
    assert first.skipped == second.skipped == 2
    assert second.problems == first.problems and len(first.problems) == 2


def test_a_symlinked_volumes_dir_is_listed_through_the_link(std: DockerRoot, tmp_path: Path) -> None:
    """volumes/ (or the root) is often a link to another disk: its stamp is the target's, or a
    new volume would never be seen."""
    target = tmp_path / "elsewhere-volumes"
    shutil.move(std.root / "volumes", target)
    (std.root / "volumes").symlink_to(target)
    age(std.root)
    age(target)
    cache = ReadCache()
    assert read_layout(str(std.root), "overlay2", cache).volumes == ("cache", "pgdata")
    (target / "late" / "_data").mkdir(parents=True)
    age(target)  # settled again, under the target's new stamp
    assert read_layout(str(std.root), "overlay2", cache).volumes == ("cache", "late", "pgdata")


def test_a_mount_entry_read_mid_write_is_read_again(std: DockerRoot) -> None:
    """dockerd writes a container's mount-id, init-id and parent one after the other: an entry
    read in between must not be kept with an empty init-id."""
    cid = hexid("container:mid-write")
    d = std.layerdb / "mounts" / cid
    put(d / "mount-id", hexid("mount:mid-write"))
    cache = ReadCache()
    first = {m.container_id: m for m in read_layout(str(std.root), "overlay2", cache).mounts}
    assert first[cid].init_id == ""
    put(d / "init-id", hexid("mount:mid-write") + "-init")
    second = {m.container_id: m for m in read_layout(str(std.root), "overlay2", cache).mounts}
    assert second[cid].init_id == hexid("mount:mid-write") + "-init"
    age(d)  # settled: from now on kept
    read_layout(str(std.root), "overlay2", cache)
    assert cid in cache.mounts


def test_a_root_without_an_image_store_reads_as_without_a_cache(std: DockerRoot) -> None:
    """Docker's containerd image store keeps no `image/` (nor a driver dir): with the cache, what
    the root's listing lacks is not looked up, and the layout is the same as read without it."""
    shutil.rmtree(std.root / "image")
    shutil.rmtree(std.ddir)
    age(std.root)
    cache = ReadCache()
    cached = read_layout(str(std.root), "overlay2", cache)
    assert cached == read_layout(str(std.root), "overlay2")
    assert cached.layers == () and cached.image_layers == {} and cached.driver_dirs == ()
    assert {c.id for c in cached.containers} == set(std.containers)
    assert read_layout(str(std.root), "overlay2", cache) == cached
