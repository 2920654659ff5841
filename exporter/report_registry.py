"""The registry section of `report`: per repository, what garbage collection would free in
each mode, stale uploads, and how to run GC safely. Reads the registry snapshot only."""

from __future__ import annotations

from typing import Any

from exporter.registry_model import RegistrySnapshot

GC_SAFELY = [
    "Garbage collection must not run while the registry accepts pushes (a layer pushed during",
    "the mark can be deleted): set storage.maintenance.readonly.enabled: true (or stop it) first.",
    "Then `registry garbage-collect --dry-run CONFIG` (add --delete-untagged for the second",
    "figure) lists what it would delete; run it without --dry-run, then make the registry writable.",
    "Distribution 2.x's --delete-untagged also deletes untagged platform manifests of tagged",
    "multi-platform images (distribution#3004): prefer 3.x for -m (see an 'index children' line).",
    "Stale uploads are purged by the running registry (storage.maintenance.uploadpurging, 168 h).",
]


def collect(snap: RegistrySnapshot | None) -> list[dict[str, Any]] | None:
    if snap is None:
        return None
    out = []
    for r in snap.roots:
        if r.error:
            out.append({"root": r.path, "error": r.error})
            continue
        out.append({
            "root": r.path,
            "blobs": dict(r.blobs),
            "blob_bytes": dict(r.blob_bytes),
            "reclaimable_bytes": dict(r.reclaimable),
            "reclaimable_blobs": dict(r.reclaimable_blobs),
            "index_child_only_bytes": r.index_child_only_bytes,
            "repositories": [
                {"name": u.name, "bytes": u.bytes, "unique_bytes": u.unique_bytes, "tags": u.tags,
                 "manifests_tagged": u.manifests_tagged, "manifests_untagged": u.manifests_untagged}
                for u in r.repositories
            ],
            "uploads": {
                "fresh": {"count": r.fresh_uploads.count, "bytes": r.fresh_uploads.bytes},
                "stale": {"count": r.stale_uploads.count, "bytes": r.stale_uploads.bytes},
                "oldest_started": r.oldest_upload_started,
            },
            "dangling_links": dict(r.dangling),
            "read_errors": {k: v for k, v in r.errors.items() if v},
            "filesystem": {"size": r.filesystem_size, "avail": r.filesystem_avail},
        })  # fmt: skip
    return out


def render(roots: list[dict[str, Any]], human: Any, table: Any, top: int) -> list[str]:
    lines: list[str] = []
    for r in roots:
        title = f"Registry storage {r['root']}"
        lines += ["", title, "-" * len(title)]
        if "error" in r:
            lines.append(f"not read: {r['error']}")
            continue
        n, b = r["blobs"], r["blob_bytes"]
        fs = r["filesystem"]
        lines.append(
            f"{sum(n.values()):,} blobs, {human(sum(b.values()))}: referenced {human(b['referenced'])}, "
            f"unreferenced {human(b['unreferenced'])}, young (< 1 h) {human(b['young'])}"
            + (f"; filesystem {human(fs['avail'])} free of {human(fs['size'])}" if fs["size"] else "")
        )
        rows = [
            [u["name"], human(u["bytes"]), human(u["unique_bytes"]), str(u["tags"]),
             str(u["manifests_tagged"]), str(u["manifests_untagged"])]
            for u in r["repositories"][:top]
        ]  # fmt: skip
        lines += table(rows, ["REPOSITORY", "BYTES", "UNIQUE", "TAGS", "TAGGED", "UNTAGGED"])
        if len(r["repositories"]) > top:
            lines.append(f"… and {len(r['repositories']) - top} more")
        rec, cnt = r["reclaimable_bytes"], r["reclaimable_blobs"]
        lines += table(
            [
                ["registry garbage-collect CONFIG", human(rec["default"]), str(cnt["default"])],
                ["registry garbage-collect --delete-untagged CONFIG", human(rec["delete_untagged"]),
                 str(cnt["delete_untagged"])],
            ],
            ["GC COMMAND (registry read-only or stopped)", "RECLAIMS", "BLOBS"],
        )  # fmt: skip
        if r["index_child_only_bytes"]:
            lines.append(
                f"index children: Distribution 2.x's --delete-untagged would also delete "
                f"{human(r['index_child_only_bytes'])} that tagged multi-platform images need"
            )
        up = r["uploads"]
        lines.append(
            f"unfinished uploads: {up['stale']['count']} stale (> 168 h) {human(up['stale']['bytes'])}, "
            f"{up['fresh']['count']} recent {human(up['fresh']['bytes'])}"
        )
        dangling = {k: v for k, v in r["dangling_links"].items() if v}
        if dangling:
            lines.append(
                "dangling links (blob missing): " + ", ".join(f"{k} {v}" for k, v in dangling.items())
            )
        if r["read_errors"]:
            lines.append(
                "not read (see the log): " + ", ".join(f"{k} {v}" for k, v in r["read_errors"].items())
            )
        lines += GC_SAFELY
    return lines
