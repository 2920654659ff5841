"""`docker-storage-exporter report`: run every sampler once and tell a person where the disk
went. Reads the same snapshots the collector reads; `--json` prints the same data as JSON."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from exporter import report_desktop, report_registry
from exporter.config import Config
from exporter.imagesizes import split_reference
from exporter.model import (
    BuildCacheSnapshot,
    DesktopSnapshot,
    EngineSnapshot,
    FilesystemSnapshot,
    ScanSnapshot,
)
from exporter.registry_model import RegistrySnapshot
from exporter.samplers import BuildCacheSampler, DesktopSampler, EngineSampler, FilesystemSampler, Store
from exporter.samplers.registry import RegistrySampler
from exporter.scan import ScanSampler, store_options
from exporter.sources.du import WALK_IMPL, Usage, Walker
from exporter.sources.engine import EngineClient
from exporter.units import scaled

TOP = 15


def human(n: float | None) -> str:
    """Bytes with SI units, as the Docker CLI prints them."""
    return scaled(n, 1000, ("B", "kB", "MB", "GB", "TB", "PB"), "{:.4g}{}")


@contextmanager
def progress(stream: IO[str], what: str) -> Iterator[None]:
    """A ticking status line on a terminal; nothing otherwise."""
    if not stream.isatty():
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not stop.wait(0.25):
            stream.write(f"\r{what}… {time.monotonic() - started:.0f}s ")
            stream.flush()

    stream.write(f"\r{what}… ")
    t = threading.Thread(target=tick, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        stream.write("\r\033[K")
        stream.flush()


def _usage(u: Usage | None) -> dict[str, int] | None:
    if u is None:
        return None
    return {"disk_bytes": u.disk_bytes, "apparent_bytes": u.apparent_bytes, "files": u.files}


def collect(store: Store) -> dict[str, Any]:
    """The report's data from the latest snapshots (no I/O)."""
    engine = store.latest(EngineSnapshot)
    fs = store.latest(FilesystemSnapshot)
    bc = store.latest(BuildCacheSnapshot)
    scan = store.latest(ScanSnapshot)
    out: dict[str, Any] = {
        "samplers": [
            {
                "name": s.name,
                "success": s.success,
                "available": s.available,
                "error": s.last_error,
                "duration_seconds": round(s.duration_seconds, 3),
            }
            for s in store.statuses()
        ],
    }
    if engine is not None:
        i = engine.info
        out["engine"] = {
            "engine": i.engine, "version": i.version, "api_version": i.api_version,
            "storage_driver": i.storage_driver, "image_store": i.image_store, "root_dir": i.root_dir,
        }  # fmt: skip
        out["images"] = [
            {"id": img.short_id, "tags": list(img.tags), "state": img.state, "size": img.size,
             "unique": img.unique_size, "containers": img.containers, "created": img.created,
             "registry": img.registry}
            for img in engine.images
        ]  # fmt: skip
        if engine.image_usage:
            out["images_total"] = {
                "used": engine.image_usage.used,
                "reclaimable": engine.image_usage.reclaimable,
            }
    if fs is not None:
        out["filesystems"] = [
            {"path": f.path, "mountpoint": f.mountpoint, "size": f.size, "avail": f.avail,
             "files": f.files, "files_free": f.files_free, "readonly": f.readonly}
            for f in fs.filesystems
        ]  # fmt: skip
    if bc is not None:
        b = bc.build_cache
        out["build_cache"] = {"records": b.records, "in_use": b.in_use, "bytes": b.bytes,
                              "reclaimable": b.reclaimable}  # fmt: skip
    if scan is not None:
        out["root_dirs"] = {
            k: _usage(v) for k, v in sorted(scan.root_dirs.items(), key=lambda kv: -kv[1].disk_bytes)
        }
        out["attribution"] = {"available": scan.attribution, "reason": scan.attribution_reason}
        out["driver_owners"] = {k: _usage(v) for k, v in scan.owners.items()}
        out["layers"] = [
            {"diff_id": x.diff_id, "cache_id": x.cache_id, "size": x.size, "disk": _usage(x.total),
             "diff": _usage(x.diff), "images": x.images}
            for x in scan.layers
        ]  # fmt: skip
        out["containers"] = [
            {"name": c.name, "id": c.id[:12], "image": c.image, "state": c.state,
             "rw": _usage(c.rw), "logs": _usage(c.logs)}
            for c in scan.containers
        ]  # fmt: skip
        out["volumes"] = [
            {"name": v.name, "driver": v.driver, "containers": v.containers,
             "data": _usage(v.data), "disk": _usage(v.total)}
            for v in scan.volumes
        ]  # fmt: skip
        out["orphans"] = [{"name": o.name, "path": o.path, **_usage(o.usage)} for o in scan.orphans]
        if scan.content:  # a store that keeps each layer twice: compressed beside unpacked
            out["content"] = {k: _usage(v) for k, v in scan.content.items()}
            out["images_twice"] = [
                {"id": i.id, "content": _usage(i.content), "unpacked": _usage(i.unpacked)}
                for i in scan.images
            ]
        out["scan"] = {"errors": scan.errors, "skipped": scan.skipped, "walks": scan.walks, "walk": WALK_IMPL}
    out["reclaim"] = reclaim(engine, bc, scan)
    desktop = report_desktop.section(store.latest(DesktopSnapshot), engine, bc, scan)
    if desktop is not None:  # only where Docker Desktop's disk image was found
        out["desktop"] = desktop
    registry = report_registry.collect(store.latest(RegistrySnapshot))
    if registry is not None:
        out["registry"] = registry
    return out


def reclaim(
    engine: EngineSnapshot | None, bc: BuildCacheSnapshot | None, scan: ScanSnapshot | None
) -> list[dict[str, Any]]:
    """What each prune would free, by the same definitions as `docker system df`."""
    out: list[dict[str, Any]] = []
    if engine is not None:
        dangling = [i for i in engine.images if i.state == "dangling"]
        out.append({
            "command": "docker image prune",
            "frees": "dangling images",
            "count": len(dangling),
            "bytes": sum(i.unique_size or 0 for i in dangling),
        })  # fmt: skip
        if engine.image_usage:
            out.append({
                "command": "docker image prune -a",
                "frees": "every image no container uses",
                "count": sum(1 for i in engine.images if i.containers == 0),
                "bytes": engine.image_usage.reclaimable,
            })  # fmt: skip
    if scan is not None:
        stopped = [c for c in scan.containers if c.prunable]
        out.append({
            "command": "docker container prune",
            "frees": "containers not running (writable layers and logs)",
            "count": len(stopped),
            "bytes": sum((c.rw.disk_bytes if c.rw else 0) + c.logs.disk_bytes for c in stopped),
        })  # fmt: skip
        unused = [v for v in scan.volumes if v.containers == 0]
        out.append({
            "command": "docker volume prune (-a on Docker 23+ for named volumes)",
            "frees": "volumes no container mounts (their data is gone for good)",
            "count": len(unused),
            "bytes": sum(v.total.disk_bytes for v in unused),
        })  # fmt: skip
        if scan.orphans:
            out.append({
                "command": "none: stop dockerd, check, then remove by hand",
                "frees": "orphaned storage-driver dirs (see docs)",
                "count": len(scan.orphans),
                "bytes": sum(o.usage.disk_bytes for o in scan.orphans),
            })  # fmt: skip
    if bc is not None:
        out.append({
            "command": "docker builder prune",
            "frees": "build cache not in use",
            "count": bc.build_cache.records - bc.build_cache.in_use,
            "bytes": bc.build_cache.reclaimable,
        })  # fmt: skip
    return out


def _table(rows: list[list[str]], head: list[str]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*head).rstrip(), *[fmt.format(*r).rstrip() for r in rows]]


def render(data: dict[str, Any]) -> str:
    lines: list[str] = []

    def section(title: str) -> None:
        lines.extend(["", title, "-" * len(title)])

    e = data.get("engine")
    if e:
        lines.append(
            f"{e['engine']} {e['version']} (API {e['api_version']}), {e['storage_driver']}, "
            f"image store {e['image_store']}, root {e['root_dir']}"
        )
    for f in data.get("filesystems", []):
        used = 1 - f["avail"] / f["size"] if f["size"] else 0
        lines.append(
            f"filesystem {f['mountpoint']} (holds {f['path']}): {human(f['avail'])} free of "
            f"{human(f['size'])} ({used:.0%} used), {f['files_free']:,} of {f['files']:,} inodes free"
            + (", READ-ONLY" if f["readonly"] else "")
        )
    if "root_dirs" in data:
        section(f"Docker root {e['root_dir'] if e else ''}")
        rows = [[name, human(u["disk_bytes"]), f"{u['files']:,}"] for name, u in data["root_dirs"].items()]
        lines += _table(rows, ["DIR", "DISK", "FILES"])
        if data["attribution"]["available"]:
            owners = ", ".join(f"{k} {human(v['disk_bytes'])}" for k, v in data["driver_owners"].items())
            lines.append(f"storage driver dir by owner: {owners}")
        else:
            lines.append(f"layer attribution unavailable: {data['attribution']['reason']}")
    if "images" in data:
        section("Images (biggest first)")
        rows = []
        for i in data["images"][:TOP]:
            ref = i["tags"][0] if i["tags"] else "<none>"
            repo, tag = split_reference(ref) if i["tags"] else ("<none>", "<none>")
            rows.append(
                [repo, tag, i["id"], i["state"], human(i["size"]), human(i["unique"]), str(i["containers"])]
            )
        lines += _table(rows, ["REPOSITORY", "TAG", "IMAGE ID", "STATE", "SIZE", "UNIQUE", "CONTAINERS"])
        if len(data["images"]) > TOP:
            lines.append(f"… and {len(data['images']) - TOP} more")
    if data.get("layers"):
        section("Biggest layers")
        rows = [[x["diff_id"].split(":")[-1][:12], human(x["size"]), human(x["disk"]["disk_bytes"]),
                 f"{x['disk']['files']:,}", str(x["images"])] for x in data["layers"][:TOP]]  # fmt: skip
        lines += _table(rows, ["DIFF ID", "SIZE", "DISK", "FILES", "IMAGES"])
    if "containers" in data:
        section("Containers (writable layer and logs)")
        rows = [[c["name"], c["id"], c["state"], human(c["rw"]["disk_bytes"]) if c["rw"] else "n/a",
                 human(c["logs"]["disk_bytes"]), c["image"]] for c in data["containers"][:TOP]]  # fmt: skip
        lines += _table(rows, ["NAME", "ID", "STATE", "WRITABLE", "LOGS", "IMAGE"])
    if "volumes" in data:
        section("Volumes")
        rows = [[v["name"], v["driver"], str(v["containers"]), human(v["disk"]["disk_bytes"]),
                 f"{v['disk']['files']:,}"] for v in data["volumes"][:TOP]]  # fmt: skip
        lines += _table(rows, ["NAME", "DRIVER", "CONTAINERS", "DISK", "FILES"])
    if "build_cache" in data:
        b = data["build_cache"]
        section("Build cache")
        lines.append(f"{b['records']} records ({b['in_use']} in use), {human(b['bytes'])}")
    if data.get("content"):
        section("Content store: every layer is kept twice, compressed here and unpacked above")
        rows = [
            [k, human(v["disk_bytes"]), f"{v['files']:,}"] for k, v in data["content"].items() if v["files"]
        ]
        lines += _table(rows, ["KIND", "DISK", "FILES"])
        rows = [
            [
                i["id"].split(":")[-1][:12],
                human(i["content"]["disk_bytes"]),
                human(i["unpacked"]["disk_bytes"]),
            ]
            for i in data["images_twice"][:TOP]
        ]
        lines += _table(rows, ["IMAGE ID", "BLOBS", "UNPACKED"])
    if data.get("orphans"):
        section("Orphaned storage-driver dirs (no layer, container or build cache owns them)")
        lines += _table([[o["path"], human(o["disk_bytes"]), f"{o['files']:,}"] for o in data["orphans"]],
                        ["PATH", "DISK", "FILES"])  # fmt: skip
    section("What each prune would reclaim")
    lines += _table(
        [[r["command"], human(r["bytes"]), str(r["count"]), r["frees"]] for r in data["reclaim"]],
        ["COMMAND", "RECLAIMS", "ITEMS", "WHAT"],
    )
    if "desktop" in data:
        lines += report_desktop.render(data["desktop"], human, _table)
    lines += report_registry.render(data.get("registry") or [], human, _table, TOP)
    failing = [s for s in data["samplers"] if not s["success"]]
    if failing:
        section("Not measured")
        for s in failing:
            lines.append(f"{s['name']}: {s['error'] or 'did not run'}")
    return "\n".join(lines).lstrip("\n") + "\n"


def run(config: Config, as_json: bool, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> int:
    from exporter.app import engine_client  # shared client construction (TLS from env)

    store = Store()
    client: EngineClient = engine_client(config)
    walker = Walker(config.scan_workers or None)
    if config.desktop_interval > 0:  # a stat or a few: before the engine, which may be Desktop's
        DesktopSampler(store, disk_image=config.desktop_disk_image).run()
    try:
        with progress(err, "asking the engine"):
            EngineSampler(store, client, rootfs=config.rootfs).run()
            FilesystemSampler(store, rootfs=config.rootfs).run()
            if config.build_cache_interval > 0:
                # Old engines need a full /system/df: only if the operator allows it at all.
                legacy = 1.0 if config.build_cache_legacy_interval > 0 else 0.0
                BuildCacheSampler(store, client, legacy_interval=legacy).run()
        if config.scan_interval > 0:
            with progress(err, "walking the Docker root"):
                ScanSampler(
                    store,
                    walker,
                    rootfs=config.rootfs,
                    budget=config.scan_budget,
                    options=store_options(config),
                ).run()
        if config.registry_roots and config.registry_interval > 0:
            with progress(err, "reading the registry storage"):
                RegistrySampler(store, config.registry_roots).run()
    finally:
        walker.close()
        client.close()
    data = collect(store)
    out.write(json.dumps(data, indent=2) + "\n" if as_json else render(data))
    engine = store.status("engine")
    if engine is None or not engine.success:
        err.write(
            f"docker-storage-exporter: error: engine not reached: {engine.last_error if engine else ''}\n"
        )
        return 1
    return 0
