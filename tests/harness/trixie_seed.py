"""The known state on a trixie engine (either flavour), built without any registry: `docker
import` of a busybox tar, classic and BuildKit builds FROM it, `docker load` of generated
archives. The same commands on both flavours, so the two stores can be compared."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.sources.bolt import read_db, uvarint
from tests.harness.containerd import image_archive
from tests.harness.seed import (
    PAUSED_RW_BYTES,
    REGISTRY_IMAGES,
    RW_BYTES,
    UNUSED_VOLUME_BYTES,
    USED_VOLUME_BYTES,
    busybox_tar,
    wait_for_log,
)
from tests.harness.trixie import CSTORE, ChrootEngine
from tests.harness.truth import one_df_at_a_time

LOG_LINES = 2000  # `busybox seq -w 1 2000`: 2,000 json-file lines of "0001".."2000"
LEAKED_BYTES = 4 << 20
BASE_LAYER = {"base/common.bin": b"\x5a" * 40_000}  # the loaded images' shared first layer


@dataclass(frozen=True)
class TrixieSeed:
    images: dict[str, str]  # tag -> image ID
    dangling: str  # the image ID the rebuild of dse-old:v1 left without a tag
    shared_base: tuple[str, ...]  # tags built FROM dse-base:latest: they share its layer
    multi_layer: str  # a tag with several layers
    layers: dict[str, int]  # tag -> its number of layers
    loaded: tuple[str, ...]  # tags from `docker load` (two, sharing BASE_LAYER)
    containers: dict[str, str]  # name -> container ID
    states: dict[str, str]  # name -> expected State
    rw_container: str  # running, with rw_bytes in rw_file of its writable layer
    rw_file: str
    rw_bytes: int
    paused_rw_bytes: int
    log_container: str  # exited after writing LOG_LINES lines to its json-file log
    log_path: Path  # outside
    log_bytes: int  # that log's size
    volumes_used: dict[str, int]  # name -> bytes written in it
    volumes_unused: dict[str, int]
    build_cache: bool  # a BuildKit build left cache records
    df: dict[str, Any] = field(repr=False)  # /system/df (API 1.45) right after the seed
    leaked: Path | None = None  # cstore only: snapshots/<N> with N in no metadata.db record
    leaked_bytes: int = 0


def _image_id(engine: ChrootEngine, ref: str) -> str:
    return engine.docker("image", "inspect", "-f", "{{.Id}}", ref).strip()


def seed_trixie(engine: ChrootEngine) -> TrixieSeed:
    d = engine.docker
    d("import", "-", "dse-base:latest", input=busybox_tar())
    for ref, size in REGISTRY_IMAGES.items():
        d("import", "-", ref, input=busybox_tar({"payload": os.urandom(size)}))
    # Classic builder: three layers, the RUNs leave intermediate images.
    engine.build(
        "dse-app:v1",
        'FROM dse-base:latest\nRUN head -c 300000 /dev/urandom > /a\nRUN echo hi > /b\nCMD ["sh"]\n',
    )
    d("tag", "dse-app:v1", "dse-app:latest")
    # Rebuilding a tag leaves the old image dangling.
    engine.build("dse-old:v1", "FROM dse-base:latest\nRUN echo one > /f\n")
    dangling = _image_id(engine, "dse-old:v1")
    engine.build("dse-old:v1", "FROM dse-base:latest\nRUN echo two > /f\n")
    engine.build("dse-bk:v1", "FROM dse-base:latest\nRUN head -c 200000 /dev/urandom > /bk\n", buildkit=True)
    # `docker load` of generated archives: two images sharing their first layer.
    loaded = ("example.test/dse/load-a:1", "example.test/dse/load-b:1")
    for tag, top in zip(loaded, (b"a" * 30_000, b"b" * 60_000), strict=True):
        d("load", "-q", input=image_archive(tag, [BASE_LAYER, {"top.bin": top}]))

    d("volume", "create", "dse-vol-used")
    d("volume", "create", "dse-vol-unused")
    d("run", "--rm", "--network", "none", "-v", "dse-vol-unused:/data", "dse-base:latest",
      "sh", "-c", f"head -c {UNUSED_VOLUME_BYTES} /dev/urandom > /data/x")  # fmt: skip
    # --stop-timeout 1: sleep as pid 1 ignores SIGTERM, and the engine's stop waits for it.
    d("run", "-d", "--name", "dse-running", "--network", "none", "--stop-timeout", "1",
      "-v", "dse-vol-used:/data", "dse-app:v1", "sh", "-c",
      f"head -c {RW_BYTES} /dev/urandom > /rw.bin && head -c {USED_VOLUME_BYTES} /dev/urandom"
      " > /data/y && echo seeded && sleep 3600")  # fmt: skip
    wait_for_log(engine, "dse-running", "seeded")
    d("run", "-d", "--name", "dse-paused", "--network", "none", "--stop-timeout", "1",
      "dse-base:latest", "sh", "-c",
      f"head -c {PAUSED_RW_BYTES} /dev/urandom > /p.bin && echo ready && sleep 3600")  # fmt: skip
    wait_for_log(engine, "dse-paused", "ready")
    d("pause", "dse-paused")
    d("run", "--name", "dse-exited", "--network", "none", "dse-base:latest", "true")
    d("create", "--name", "dse-created", "--network", "none", "dse-old:v1", "true")
    d("run", "--name", "dse-logs", "--network", "none", "--log-driver", "json-file",
      "dse-base:latest", "busybox", "seq", "-w", "1", str(LOG_LINES))  # fmt: skip

    names = ("dse-running", "dse-paused", "dse-exited", "dse-created", "dse-logs")
    containers = {n: d("container", "inspect", "-f", "{{.Id}}", n).strip() for n in names}
    log_id = containers["dse-logs"]
    log_path = engine.data_root / "containers" / log_id / f"{log_id}-json.log"
    built = ("dse-base:latest", "dse-app:v1", "dse-app:latest", "dse-old:v1", "dse-bk:v1")
    tags = (*built, *REGISTRY_IMAGES, *loaded)
    api = engine.api()
    try:
        df = one_df_at_a_time(api.df)
        layers = {t: len(api.inspect_image(t)["RootFS"]["Layers"]) for t in tags}
    finally:
        api.close()
    leaked = plant_leaked_snapshot(engine) if engine.flavour == CSTORE else None
    return TrixieSeed(
        images={t: _image_id(engine, t) for t in tags},
        dangling=dangling,
        shared_base=("dse-base:latest", "dse-app:v1", "dse-old:v1", "dse-bk:v1"),
        multi_layer="dse-app:v1",
        layers=layers,
        loaded=loaded,
        containers=containers,
        states={
            "dse-running": "running",
            "dse-paused": "paused",
            "dse-exited": "exited",
            "dse-created": "created",
            "dse-logs": "exited",
        },
        rw_container="dse-running",
        rw_file="/rw.bin",
        rw_bytes=RW_BYTES,
        paused_rw_bytes=PAUSED_RW_BYTES,
        log_container="dse-logs",
        log_path=log_path,
        log_bytes=log_path.stat().st_size,
        volumes_used={"dse-vol-used": USED_VOLUME_BYTES},
        volumes_unused={"dse-vol-unused": UNUSED_VOLUME_BYTES},
        build_cache=bool(df.get("BuildCache")),
        df=df,
        leaked=leaked,
        leaked_bytes=LEAKED_BYTES if leaked else 0,
    )


def snapshot_ids(metadata_db: Path) -> tuple[set[int], int]:
    """The overlayfs snapshotter's dir numbers in use, and its ID sequence."""
    snaps = read_db(metadata_db).bucket("v1", "snapshots")
    if snaps is None:
        return set(), 0
    ids = set()
    for bucket in snaps.buckets.values():
        raw = bucket.get("id")
        if raw is not None:
            ids.add(uvarint(raw)[0])
    return ids, snaps.sequence


def plant_leaked_snapshot(engine: ChrootEngine) -> Path:
    """A dir `snapshots/<N>` that no metadata.db record names, as a crash between removing a
    record and its dir leaves: N is a number the sequence already handed out (so no new
    snapshot will ever take it), with LEAKED_BYTES in fs/. containerd's Cleanup removes such
    dirs after a GC that removed snapshots, so tests that delete objects on this engine may
    see it go."""
    overlay = engine.containerd_root / "io.containerd.snapshotter.v1.overlayfs"
    ids, seq = snapshot_ids(overlay / "metadata.db")
    present = {int(p.name) for p in (overlay / "snapshots").iterdir() if p.name.isdigit()}
    free = [n for n in range(seq, 0, -1) if n not in ids and n not in present]
    n = free[0] if free else seq + 100_000  # every number used: one far beyond the sequence
    leaked = overlay / "snapshots" / str(n)
    write_leaked(leaked)
    return leaked


def write_leaked(leaked: Path) -> None:
    """A snapshot dir as containerd's overlayfs makes them (0700, fs/ and work/ 0711 of an
    active one), with LEAKED_BYTES of data in fs/."""
    leaked.mkdir(mode=0o700, exist_ok=True)
    (leaked / "fs").mkdir(exist_ok=True)
    (leaked / "work").mkdir(mode=0o711, exist_ok=True)
    (leaked / "fs" / "leaked.bin").write_bytes(os.urandom(LEAKED_BYTES))


@dataclass
class SeededTrixie:
    """What the trixie_cstore / trixie_overlay2 fixtures yield: a started, seeded engine."""

    engine: ChrootEngine
    seed: TrixieSeed
    started_seconds: float  # start + seed, as measured

    @property
    def flavour(self) -> str:
        return self.engine.flavour

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def rootfs(self) -> Path:
        """R: give it to the exporter as --path.rootfs."""
        return self.engine.rootfs

    @property
    def sock(self) -> Path:
        """The engine's socket seen from outside: R/run/NAME.sock."""
        return self.engine.sock

    @property
    def docker_host(self) -> str:
        return self.engine.host

    @property
    def data_root_inside(self) -> str:
        """DockerRootDir as /info reports it: /var/lib/NAME."""
        return self.engine.data_root_inside

    @property
    def data_root(self) -> Path:
        """DockerRootDir seen from outside: R/var/lib/NAME."""
        return self.engine.data_root

    @property
    def containerd_root(self) -> Path | None:
        """The managed containerd's root outside (cstore only): R/var/lib/NAME/containerd/daemon."""
        return self.engine.containerd_root if self.flavour == CSTORE else None

    @property
    def leaked(self) -> Path | None:
        return self.seed.leaked

    def ensure_leaked(self) -> Path | None:
        """Put the leaked snapshot dir back if containerd's Cleanup took it (any GC that
        removed a snapshot does): the same N, which the sequence never hands out again."""
        leaked = self.seed.leaked
        if leaked is not None and not (leaked / "fs" / "leaked.bin").exists():
            write_leaked(leaked)
        return leaked

    def docker(self, *args: str, input: bytes | None = None, check: bool = True) -> str:  # noqa: A002
        """trixie's docker CLI (26.1) against this engine; paths in args are inside R."""
        return self.engine.docker(*args, input=input, check=check)
