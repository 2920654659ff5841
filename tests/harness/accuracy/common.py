"""The report's table, one sample of an engine with the exporter's own samplers and collector,
and the rows every engine shares."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest

from exporter.collector import StorageCollector
from exporter.model import ScanSnapshot
from exporter.samplers import BuildCacheSampler, EngineSampler, FilesystemSampler, Store
from exporter.scan import ScanSampler
from exporter.sources.du import Walker
from exporter.sources.engine import EngineClient
from tests.harness.exporter import Samples, parse, value
from tests.harness.truth import cli_df_summary, du, human_size, image_states, system_df

P = "docker_storage_"
HEAD = "| figure | exporter | Docker | Docker's source | equal |\n|---|---|---|---|---|"
ACTIVE = ("running", "paused", "restarting")  # the Docker CLI's isActive


class Engine(Protocol):
    """What the rows need of an engine: PrivateEngine (20.10) and ChrootEngine (26.1) alike."""

    @property
    def host(self) -> str: ...

    @property
    def data_root(self) -> Path: ...

    def docker(self, *args: str) -> str: ...

    def api(self) -> Any: ...


@dataclass
class Table:
    """Rows under `###` headings; counts the rows and those not equal (beyond a tolerance)."""

    lines: list[str] = field(default_factory=list)
    rows: int = 0
    bad: int = 0

    def heading(self, title: str) -> None:
        self.lines += [*([""] if self.lines else []), f"### {title}", "", HEAD]

    def row(self, what: str, ours: object, theirs: object, source: str, tol: int = 0) -> None:
        """Equal, or (numbers, tol > 0) within tol of each other: then the column says by how
        much; else **NO**, counted."""
        if ours == theirs:
            ok = "yes"
        elif tol and isinstance(ours, int) and isinstance(theirs, int) and abs(ours - theirs) <= tol:
            ok = f"within {tol} ({ours - theirs:+d})"
        else:
            ok = "**NO**"
            self.bad += 1
        self.rows += 1
        self.lines.append(f"| {what} | {ours} | {theirs} | {source} | {ok} |")


@dataclass
class Truth:
    """The engine's own view, read once after our sample: `/system/df`, the CLI's summary and
    listings."""

    df: dict[str, Any]
    cli: dict[str, dict[str, str]]
    states: Counter[str]
    ps: Counter[str]
    version: str

    @classmethod
    def of(cls, engine: Engine) -> Truth:
        return cls(
            df=system_df(engine),
            cli=cli_df_summary(engine),
            states=image_states(engine),
            ps=Counter(engine.docker("ps", "-a", "--format", "{{.State}}").split()),
            version=engine.docker(
                "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})"
            ).strip(),
        )

    @property
    def size_rw(self) -> dict[str, int]:
        """Container ID -> SizeRw (API 1.45 leaves it out when it is 0)."""
        return {c["Id"]: c.get("SizeRw", 0) for c in self.df["Containers"]}


def _stat_tree(root: Path) -> dict[str, tuple[int, int, float]]:
    """path -> (size, blocks, mtime) of everything under root on root's filesystem."""
    dev = os.lstat(root).st_dev
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        keep = []
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # gone meanwhile: the next pass sees it
            out[path] = (st.st_size, st.st_blocks, st.st_mtime)
            if name in dirnames and st.st_dev == dev:
                keep.append(name)
        dirnames[:] = keep
    return out


def settle(root: Path, quiet: float = 2.0, timeout: float = 60.0) -> float:
    """Wait until nothing under the engine's root has changed for `quiet` seconds, and return
    how long that took. A seeded engine is not idle at once: BuildKit records a build's
    history (a blob and its history.db) about a second after the build returns."""
    started = time.monotonic()
    last, since = _stat_tree(root), started
    while time.monotonic() - since < quiet:
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{root} still changing after {timeout:.0f}s")
        time.sleep(0.25)
        now = _stat_tree(root)
        if now != last:
            last, since = now, time.monotonic()
    return time.monotonic() - started


def sample(host: str, rootfs: str = "/") -> tuple[Samples, ScanSnapshot]:
    """One run of every sampler, as the exporter does, and the collector's exposition parsed."""
    store = Store()
    client = EngineClient(host)
    EngineSampler(store, client).run()
    FilesystemSampler(store, rootfs=rootfs).run()
    BuildCacheSampler(store, client, legacy_interval=1).run()
    with Walker() as walker:
        ScanSampler(store, walker, rootfs=rootfs).run()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(store, top_n=1000, request_counts=client.request_counts))
    scan = store.snapshot("scan")
    if scan is None:
        raise RuntimeError(f"the scan of {host} failed: {store.status('scan')}")
    return parse(generate_latest(registry).decode()), scan


def num(s: Samples, name: str, **labels: str) -> int:
    v = value(s, P + name, **labels)
    if v is None:
        raise KeyError(f"{P}{name}{labels} not exposed")
    return int(v)


def engine_rows(t: Table, s: Samples, truth: Truth) -> None:
    """Images per image, `docker system df`'s totals, and the counts: from the engine's API."""
    df, cli = truth.df, truth.cli
    t.heading("Images, per image (`docker system df -v`)")
    for img in sorted(df["Images"], key=lambda i: i["RepoTags"][0] if i["RepoTags"] else "~"):
        sid = img["Id"].split(":")[1][:12]
        tag = img["RepoTags"][0] if img["RepoTags"] else "<none>"
        name = f"`{tag}` {sid}"
        t.row(f"{name} SIZE", num(s, "image_size_bytes", image_id=sid), img["Size"], "`/system/df` Size")
        t.row(
            f"{name} UNIQUE SIZE",
            num(s, "image_unique_bytes", image_id=sid),
            img["Size"] - img["SharedSize"],
            "Size − SharedSize",
        )
        t.row(
            f"{name} CONTAINERS",
            num(s, "image_containers", image_id=sid),
            img["Containers"],
            "`/system/df` Containers",
        )

    t.heading("Totals (`docker system df`)")
    used = value(s, P + "used_bytes", object="images") or 0
    reclaim = value(s, P + "reclaimable_bytes", object="images") or 0
    in_use_unique = sum(i["Size"] - i["SharedSize"] for i in df["Images"] if i["Containers"] > 0)
    t.row("Images SIZE (bytes)", int(used), df["LayersSize"], "`/system/df` LayersSize")
    t.row("Images SIZE (as printed)", human_size(used), cli["Images"]["Size"], "`docker system df`")
    t.row(
        "Images RECLAIMABLE (bytes)",
        int(reclaim),
        df["LayersSize"] - in_use_unique,
        "LayersSize − unique of used images",
    )
    t.row(
        "Images RECLAIMABLE (as printed)",
        f"{human_size(reclaim)} ({int(reclaim * 100 // used)}%)",
        cli["Images"]["Reclaimable"],
        "`docker system df`",
    )
    top = sum(num(s, "images", state=st) for st in ("in_use", "unused", "dangling"))
    t.row("Images TOTAL (top-level)", top, int(cli["Images"]["TotalCount"]), "`docker system df`")
    t.row(
        "Images ACTIVE", num(s, "images", state="in_use"), int(cli["Images"]["Active"]), "`docker system df`"
    )
    vols = {st: num(s, "volumes", state=st) for st in ("in_use", "unused")}
    t.row(
        "Local Volumes TOTAL",
        sum(vols.values()),
        int(cli["Local Volumes"]["TotalCount"]),
        "`docker system df`",
    )
    t.row("Local Volumes ACTIVE", vols["in_use"], int(cli["Local Volumes"]["Active"]), "`docker system df`")
    bc = df["BuildCache"] or []
    bc_size = sum(r["Size"] for r in bc if not r["Shared"])
    bc_reclaim = bc_size - sum(r["Size"] for r in bc if r["InUse"] and not r["Shared"])
    t.row("Build Cache TOTAL", num(s, "build_cache_records"), len(bc), "`/system/df` BuildCache")
    t.row("Build Cache SIZE (bytes)", num(s, "build_cache_bytes"), bc_size, "non-shared records")
    t.row(
        "Build Cache SIZE (as printed)",
        human_size(num(s, "build_cache_bytes")),
        cli["Build Cache"]["Size"],
        "`docker system df`",
    )
    t.row(
        "Build Cache RECLAIMABLE (bytes)",
        num(s, "reclaimable_bytes", object="build_cache"),
        bc_reclaim,
        "SIZE − in-use records",
    )

    t.heading("Counts (`docker images -a`, `docker ps -a`)")
    for st in ("in_use", "unused", "dangling", "intermediate"):
        t.row(
            f"images{{state={st}}}",
            num(s, "images", state=st),
            truth.states[st],
            "`docker images -a` / `ps -a`",
        )
    for st in ("created", "running", "paused", "exited"):
        t.row(f"containers{{state={st}}}", num(s, "containers", state=st), truth.ps[st], "`docker ps -a`")


def root_dir_rows(
    t: Table, s: Samples, scan: ScanSnapshot, root: Path, excludes: dict[str, tuple[str, ...]]
) -> None:
    for name in sorted(scan.root_dirs):
        disk, inodes = du(root / name, *excludes.get(name, ()))
        t.row(
            f"root dir `{name}/` allocated",
            num(s, "root_disk_bytes", dir=name),
            disk,
            "`du -s -x --block-size=1`",
        )
        t.row(f"root dir `{name}/` inodes", num(s, "root_files", dir=name), inodes, "`du -s -x --inodes`")


def log_row(t: Table, name: str, cid: str, ours: int, root: Path) -> None:
    logs = root / "containers" / cid
    t.row(
        f"container {name} logs",
        ours,
        sum(du(p)[0] for p in logs.glob(f"{cid}-json.log*")),
        "`du` on its log files",
    )


def volume_rows(t: Table, scan: ScanSnapshot, truth: Truth, root: Path) -> None:
    vol_sizes = {v["Name"]: v["UsageData"]["Size"] for v in truth.df["Volumes"]}
    for v in sorted(scan.volumes, key=lambda v: v.name):
        t.row(
            f"volume {v.name} allocated",
            v.total.disk_bytes,
            du(root / "volumes" / v.name)[0],
            "`du` on volumes/<name>",
        )
        t.row(
            f"volume {v.name} apparent",
            v.data.apparent_bytes,
            vol_sizes[v.name],
            "`docker system df -v` SIZE",
        )


def df_size_rows(t: Table, s: Samples, truth: Truth) -> None:
    """`docker system df`'s Containers and Local Volumes SIZE and RECLAIMABLE."""
    df, cli = truth.df, truth.cli
    ours_used = num(s, "used_bytes", object="containers")
    t.row("Containers SIZE (bytes)", ours_used, sum(truth.size_rw.values()), "sum of SizeRw")
    idle_rw = sum(c.get("SizeRw", 0) for c in df["Containers"] if c["State"] not in ACTIVE)
    ours_idle = num(s, "reclaimable_bytes", object="containers")
    t.row("Containers RECLAIMABLE (bytes)", ours_idle, idle_rw, "SizeRw of containers not active")
    printed = f"{human_size(ours_idle)} ({ours_idle * 100 // ours_used}%)" if ours_used else human_size(0)
    t.row(
        "Containers RECLAIMABLE (as printed)", printed, cli["Containers"]["Reclaimable"], "`docker system df`"
    )
    t.row(
        "Containers SIZE (as printed)", human_size(ours_used), cli["Containers"]["Size"], "`docker system df`"
    )
    vol_sizes = [v["UsageData"]["Size"] for v in df["Volumes"]]
    t.row(
        "Local Volumes SIZE (bytes)",
        num(s, "used_bytes", object="volumes"),
        sum(vol_sizes),
        "sum of volume sizes",
    )
    unused_vol = sum(v["UsageData"]["Size"] for v in df["Volumes"] if v["UsageData"]["RefCount"] == 0)
    ours_unused = num(s, "reclaimable_bytes", object="volumes")
    t.row("Local Volumes RECLAIMABLE (bytes)", ours_unused, unused_vol, "volumes no container uses")
