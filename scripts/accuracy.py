#!/usr/bin/env python3
"""Our numbers beside Docker's own, for a known engine state. Rerunnable by anyone (root).

Starts a private Docker daemon (its own data root and socket), seeds the same state the
tests use, samples it once with the exporter's own samplers and collector, and prints a
Markdown report: every figure beside `docker system df -v` (the exact bytes of the engine's
`/system/df`, which the CLI formats) and the CLI's listings. `--write FILE` saves it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from exporter.collector import StorageCollector  # noqa: E402
from exporter.samplers import BuildCacheSampler, EngineSampler, FilesystemSampler, Store  # noqa: E402
from exporter.scan import ScanSampler  # noqa: E402
from exporter.sources.du import Walker  # noqa: E402
from exporter.sources.engine import EngineClient  # noqa: E402
from tests.harness.engine import PrivateEngine  # noqa: E402
from tests.harness.exporter import parse, value  # noqa: E402
from tests.harness.seed import seed  # noqa: E402
from tests.harness.truth import cli_df_summary, du, human_size, image_states, system_df  # noqa: E402

P = "docker_storage_"


def sample(host: str) -> tuple[dict, Store]:
    store = Store()
    client = EngineClient(host)
    EngineSampler(store, client).run()
    FilesystemSampler(store).run()
    BuildCacheSampler(store, client, legacy_interval=1).run()
    with Walker() as walker:
        ScanSampler(store, walker).run()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StorageCollector(store, top_n=1000, request_counts=client.request_counts))
    return parse(generate_latest(registry).decode()), store


def mark(a: object, b: object) -> str:
    return "yes" if a == b else "**NO**"


def report(engine: PrivateEngine) -> tuple[str, int]:
    s, store = sample(engine.host)
    df = system_df(engine)
    cli = cli_df_summary(engine)
    version = engine.docker("version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})").strip()
    lines: list[str] = []
    bad = 0

    def row(what: str, ours: object, theirs: object, source: str) -> None:
        nonlocal bad
        ok = mark(ours, theirs)
        bad += ok != "yes"
        lines.append(f"| {what} | {ours} | {theirs} | {source} | {ok} |")

    head = "| figure | exporter | Docker | Docker's source | equal |\n|---|---|---|---|---|"
    lines += ["## Images, per image (`docker system df -v`)", "", head]
    for img in sorted(df["Images"], key=lambda i: i["RepoTags"][0] if i["RepoTags"] else "~"):
        sid = img["Id"].split(":")[1][:12]
        tag = img["RepoTags"][0] if img["RepoTags"] else "<none>"
        name = f"`{tag}` {sid}"
        row(
            f"{name} SIZE",
            int(value(s, P + "image_size_bytes", image_id=sid)),
            img["Size"],
            "`/system/df` Size",
        )
        row(
            f"{name} UNIQUE SIZE",
            int(value(s, P + "image_unique_bytes", image_id=sid)),
            img["Size"] - img["SharedSize"],
            "Size − SharedSize",
        )
        row(
            f"{name} CONTAINERS",
            int(value(s, P + "image_containers", image_id=sid)),
            img["Containers"],
            "`/system/df` Containers",
        )

    lines += ["", "## Totals (`docker system df`)", "", head]
    used = value(s, P + "used_bytes", object="images")
    reclaim = value(s, P + "reclaimable_bytes", object="images")
    in_use_unique = sum(i["Size"] - i["SharedSize"] for i in df["Images"] if i["Containers"] > 0)
    row("Images SIZE (bytes)", int(used), df["LayersSize"], "`/system/df` LayersSize")
    row("Images SIZE (as printed)", human_size(used), cli["Images"]["Size"], "`docker system df`")
    row(
        "Images RECLAIMABLE (bytes)",
        int(reclaim),
        df["LayersSize"] - in_use_unique,
        "LayersSize − unique of used images",
    )
    row(
        "Images RECLAIMABLE (as printed)",
        f"{human_size(reclaim)} ({int(reclaim * 100 // used)}%)",
        cli["Images"]["Reclaimable"],
        "`docker system df`",
    )
    top = sum(value(s, P + "images", state=st) for st in ("in_use", "unused", "dangling"))
    row("Images TOTAL (top-level)", int(top), int(cli["Images"]["TotalCount"]), "`docker system df`")
    row(
        "Images ACTIVE",
        int(value(s, P + "images", state="in_use")),
        int(cli["Images"]["Active"]),
        "`docker system df`",
    )
    vols = {st: int(value(s, P + "volumes", state=st)) for st in ("in_use", "unused")}
    row(
        "Local Volumes TOTAL",
        sum(vols.values()),
        int(cli["Local Volumes"]["TotalCount"]),
        "`docker system df`",
    )
    row("Local Volumes ACTIVE", vols["in_use"], int(cli["Local Volumes"]["Active"]), "`docker system df`")
    bc = df["BuildCache"]
    bc_size = sum(r["Size"] for r in bc if not r["Shared"])
    bc_reclaim = bc_size - sum(r["Size"] for r in bc if r["InUse"] and not r["Shared"])
    row("Build Cache TOTAL", int(value(s, P + "build_cache_records")), len(bc), "`/system/df` BuildCache")
    row("Build Cache SIZE (bytes)", int(value(s, P + "build_cache_bytes")), bc_size, "non-shared records")
    row(
        "Build Cache SIZE (as printed)",
        human_size(value(s, P + "build_cache_bytes")),
        cli["Build Cache"]["Size"],
        "`docker system df`",
    )
    row(
        "Build Cache RECLAIMABLE (bytes)",
        int(value(s, P + "reclaimable_bytes", object="build_cache")),
        bc_reclaim,
        "SIZE − in-use records",
    )

    lines += ["", "## Counts (`docker images -a`, `docker ps -a`)", "", head]
    states = image_states(engine)
    for st in ("in_use", "unused", "dangling", "intermediate"):
        row(
            f"images{{state={st}}}",
            int(value(s, P + "images", state=st)),
            states[st],
            "`docker images -a` / `ps -a`",
        )
    ps = Counter(engine.docker("ps", "-a", "--format", "{{.State}}").split())
    for st in ("created", "running", "paused", "exited"):
        row(f"containers{{state={st}}}", int(value(s, P + "containers", state=st)), ps[st], "`docker ps -a`")

    scan = store.snapshot("scan")
    root = engine.data_root
    lines += ["", "## Scanned figures beside `du -s -x` and Docker's recorded sizes", "", head]
    for name in sorted(scan.root_dirs):
        opts = {"overlay2": ("--exclude=merged",), "containers": ("--exclude=mounts",)}.get(name, ())
        disk, inodes = du(root / name, *opts)
        row(
            f"root dir `{name}/` allocated",
            int(value(s, P + "root_disk_bytes", dir=name)),
            disk,
            "`du -s -x --block-size=1`",
        )
        row(
            f"root dir `{name}/` inodes",
            int(value(s, P + "root_files", dir=name)),
            inodes,
            "`du -s -x --inodes`",
        )
    for x in sorted(scan.layers, key=lambda x: x.diff_id):
        d12 = x.diff_id.split(":")[1][:12]
        row(
            f"layer {d12} allocated",
            x.total.disk_bytes,
            du(root / "overlay2" / x.cache_id)[0],
            "`du` on overlay2/<cache-id>",
        )
        row(f"layer {d12} apparent", x.diff.apparent_bytes, x.size, "layerdb `size` (Docker's own)")
    sizes_rw = {c["Id"]: c.get("SizeRw", 0) for c in df["Containers"]}
    mounts = root / "image" / "overlay2" / "layerdb" / "mounts"
    for c in sorted(scan.containers, key=lambda c: c.name):
        mount_id = (mounts / c.id / "mount-id").read_text().strip()
        row(
            f"container {c.name} writable, allocated",
            c.rw.disk_bytes,
            du(root / "overlay2" / mount_id / "diff")[0],
            "`du` on its upper dir",
        )
        row(
            f"container {c.name} writable, apparent",
            c.rw.apparent_bytes,
            sizes_rw[c.id],
            "`docker system df -v` SIZE (SizeRw)",
        )
        logs = root / "containers" / c.id
        row(
            f"container {c.name} logs",
            c.logs.disk_bytes,
            sum(du(p)[0] for p in logs.glob(f"{c.id}-json.log*")),
            "`du` on its log files",
        )
    vol_sizes = {v["Name"]: v["UsageData"]["Size"] for v in df["Volumes"]}
    for v in sorted(scan.volumes, key=lambda v: v.name):
        row(
            f"volume {v.name} allocated",
            v.total.disk_bytes,
            du(root / "volumes" / v.name)[0],
            "`du` on volumes/<name>",
        )
        row(
            f"volume {v.name} apparent",
            v.data.apparent_bytes,
            vol_sizes[v.name],
            "`docker system df -v` SIZE",
        )
    row(
        "Containers SIZE (bytes)",
        int(value(s, P + "used_bytes", object="containers")),
        sum(sizes_rw.values()),
        "sum of SizeRw",
    )
    active = ("running", "paused", "restarting")  # the Docker CLI's isActive
    idle_rw = sum(c.get("SizeRw", 0) for c in df["Containers"] if c["State"] not in active)
    ours_idle = int(value(s, P + "reclaimable_bytes", object="containers"))
    row("Containers RECLAIMABLE (bytes)", ours_idle, idle_rw, "SizeRw of containers not active")
    ours_used = int(value(s, P + "used_bytes", object="containers"))
    printed = f"{human_size(ours_idle)} ({ours_idle * 100 // ours_used}%)" if ours_used else human_size(0)
    row(
        "Containers RECLAIMABLE (as printed)", printed, cli["Containers"]["Reclaimable"], "`docker system df`"
    )
    row(
        "Containers SIZE (as printed)", human_size(ours_used), cli["Containers"]["Size"], "`docker system df`"
    )
    row(
        "Local Volumes SIZE (bytes)",
        int(value(s, P + "used_bytes", object="volumes")),
        sum(vol_sizes.values()),
        "sum of volume sizes",
    )
    unused_vol = sum(v["UsageData"]["Size"] for v in df["Volumes"] if v["UsageData"]["RefCount"] == 0)
    ours_unused = int(value(s, P + "reclaimable_bytes", object="volumes"))
    row("Local Volumes RECLAIMABLE (bytes)", ours_unused, unused_vol, "volumes no container uses")

    intro = [
        "# Accuracy: our numbers beside Docker's",
        "",
        "Produced by `make accuracy` (`python scripts/accuracy.py --write docs/accuracy.md`) on a",
        f"private Docker {version} daemon seeded with the test suite's state (`tests/harness/seed.py`):",
        "tagged, re-tagged (dangling) and intermediate images from four registries, running,",
        "exited and created containers, used and unused volumes, and BuildKit cache.",
        "",
        "Tolerance: none. Each figure is a count or a byte total that Docker or GNU `du` reports",
        'exactly for the same object on an idle engine; the "as printed" rows format our bytes',
        "the way the Docker CLI does (go-units, 4 digits). Allocated bytes are compared with",
        "`du -s -x --block-size=1` (live mounts under `overlay2/*/merged` and `containers/*/mounts`",
        "excluded, as the scan never enters them); apparent bytes with Docker's own sizes.",
        "",
        f"Rows: {sum(1 for x in lines if x.startswith('| ') and not x.startswith('| figure'))}, "
        f"not equal: {bad}.",
        "",
    ]
    return "\n".join(intro + lines) + "\n", bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="FILE", help="write the report here as well as printing it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dse-acc-", dir="/tmp") as base:
        engine = PrivateEngine(Path(base) / "e")
        engine.start()
        try:
            seed(engine)
            text, bad = report(engine)
        finally:
            engine.stop()
    print(text)
    if args.write:
        Path(args.write).write_text(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
