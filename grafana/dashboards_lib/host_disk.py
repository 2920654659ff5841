"""The host dashboard's rows on bytes: the filesystem, where its space went, the biggest objects."""

from __future__ import annotations

from .panels import FREE_STEPS, MAP_RO, TTF_STEPS, bargauge, by_ref, gauge, row, stat, table, timeseries
from .queries import (
    HOST,
    TOP,
    WINDOW,
    along,
    free_ratio,
    inodes_free_ratio,
    orphaned,
    seconds_until,
    targets,
    top,
)


def filesystem_row() -> list[dict]:
    """Free space and inodes of the filesystems holding the Docker root, and when they run out."""
    s = HOST
    avail = s("docker_storage_filesystem_avail_bytes")
    files_free = s("docker_storage_filesystem_files_free")
    until_full = seconds_until(s, "docker_storage:filesystem_hours_until_full")
    until_out = seconds_until(s, "docker_storage:filesystem_inodes_hours_until_out")
    fs_legend = "{{mountpoint}}"
    return [
        row("Filesystem holding the Docker root"),
        gauge(
            "Free space",
            "Available bytes / size of each filesystem holding a Docker area (statvfs; available to "
            "non-root users). Orange below 15 % (kubelet imagefs eviction), red below 10 %.",
            targets((free_ratio(s), fs_legend), instant=True),
            "percentunit",
            steps=FREE_STEPS,
        ),
        stat(
            "Available",
            "Bytes available to non-root users on each filesystem holding a Docker area.",
            targets((avail, fs_legend), instant=True),
            "bytes",
            h=6,
        ),
        stat(
            "Predicted time until full",
            f"Available bytes divided by the rate free space shrank over the last {WINDOW} (least-squares "
            "slope; the recording rule docker_storage:filesystem_hours_until_full, in seconds). "
            "Empty (Not filling) while free space is stable or growing, or without the rules loaded.",
            targets((until_full, fs_legend), instant=True),
            "s",
            steps=TTF_STEPS,
            no_value="Not filling",
            h=6,
        ),
        gauge(
            "Free inodes",
            "Free inodes / inodes of each filesystem holding a Docker area; overlay2 burns inodes.",
            targets((inodes_free_ratio(s), fs_legend), instant=True),
            "percentunit",
            steps=FREE_STEPS,
        ),
        stat(
            "Predicted time until out of inodes",
            f"Free inodes divided by the rate they shrank over the last {WINDOW} (the recording rule "
            "docker_storage:filesystem_inodes_hours_until_out, in seconds). Empty (Not filling) while "
            "free inodes are stable or growing, or without the rules loaded.",
            targets((until_out, fs_legend), instant=True),
            "s",
            steps=TTF_STEPS,
            no_value="Not filling",
            h=6,
        ),
        stat(
            "Mount",
            "Whether the filesystem is mounted read-only (its own super-block options). Docker cannot "
            "write anything on a read-only filesystem.",
            targets((s("docker_storage_filesystem_readonly"), fs_legend), instant=True),
            "short",
            value_map=MAP_RO,
            h=6,
        ),
        timeseries(
            "Available and size",
            "Available bytes and size of each filesystem holding a Docker area, over time.",
            targets(
                (avail, "available {{mountpoint}}"),
                (s("docker_storage_filesystem_size_bytes"), "size {{mountpoint}}"),
            ),
            "bytes",
        ),
        timeseries(
            "Free inodes and inodes",
            "Free inodes and inodes of each filesystem holding a Docker area, over time.",
            targets(
                (files_free, "free {{mountpoint}}"),
                (s("docker_storage_filesystem_files"), "inodes {{mountpoint}}"),
            ),
            "short",
        ),
    ]


def where_the_space_went_row() -> list[dict]:
    """Docker's objects, the Docker root's dirs and the storage driver's dir by owner."""
    s = HOST
    orphan = orphaned(s)
    unpacked = s("docker_storage_driver_disk_bytes", 'owner="image"')
    return [
        row("Where the space went"),
        timeseries(
            "Used and reclaimable by object",
            "docker system df SIZE (solid) and RECLAIMABLE (dashed) per object, in Docker's apparent bytes; "
            "volumes and writable layers as allocated bytes on disk from the scan; container logs (json-file "
            "and local drivers) and orphaned storage-driver dirs (owned by nothing, leaked) too.",
            targets(
                (f"sum by (object) ({s('docker_storage_used_bytes')})", "{{object}} used"),
                (f"sum by (object) ({s('docker_storage_reclaimable_bytes')})", "{{object}} reclaimable"),
                (f"sum({s('docker_storage_volumes_disk_bytes')})", "volumes on disk"),
                (f"sum({s('docker_storage_container_rw_bytes')})", "writable layers on disk"),
                (f"sum({s('docker_storage_container_log_bytes')})", "container logs"),
                (f"sum({orphan})", "orphaned dirs"),
            ),
            "bytes",
            w=16,
            h=9,
            overrides=[by_ref("B", custom__lineStyle={"fill": "dash", "dash": [10, 10]})],
        ),
        bargauge(
            "Reclaimable now",
            "What pruning would free, per object (docker system df RECLAIMABLE): images `docker image prune "
            "-a`, containers `docker container prune`, volumes `docker volume prune -a`, build cache `docker "
            "builder prune`. Orphaned dirs need the report and a manual clean-up.",
            targets(
                (f"sum by (object) ({s('docker_storage_reclaimable_bytes')})", "{{object}}"),
                (f"sum({orphan})", "orphaned dirs"),
                instant=True,
            ),
            "bytes",
            w=8,
            h=9,
        ),
        table(
            "Docker root directories",
            "Allocated bytes (du -s -x) and inodes under each top-level directory of the Docker root: "
            "overlay2/, image/, containers/, volumes/, buildkit/… (from the scan).",
            targets(s("docker_storage_root_disk_bytes"), s("docker_storage_root_files"), table=True),
            {"A": ("Bytes", "bytes"), "B": ("Inodes", "short")},
            "Bytes",
            w=8,
            h=9,
        ),
        timeseries(
            "Storage driver dir by owner",
            "Allocated bytes of the store's layer dirs (overlay2/, or containerd's snapshots/) attributed to "
            "image layers, container writable layers, init layers, BuildKit snapshots, links, and orphan "
            "(owned by nothing); on the containerd store also unpacking, other_namespace and unreferenced "
            "(garbage containerd's GC will take). Stacked: the owners are exclusive.",
            targets((f"sum by (owner) ({s('docker_storage_driver_disk_bytes')})", "{{owner}}")),
            "bytes",
            w=10,
            h=9,
            stack=True,
        ),
        bargauge(
            "Storage driver dir by owner now",
            "Allocated bytes of the storage driver's dir by owner, now; `orphan` is leaked space.",
            targets((f"sum by (owner) ({s('docker_storage_driver_disk_bytes')})", "{{owner}}"), instant=True),
            "bytes",
            w=6,
            h=9,
        ),
        timeseries(
            "Layers kept twice (containerd image store)",
            "On the containerd image store every layer is on disk twice: unpacked in containerd's "
            "snapshots/ (image layers, by the scan) and as its compressed blob in the content store, "
            "which Docker never discards. The blobs by kind: layer, config, manifest, partial "
            "(downloads in progress), unreferenced (recorded by no namespace). Empty on overlay2.",
            targets(
                (f"sum({unpacked})", "unpacked layers"),
                (f"sum by (kind) ({s('docker_storage_content_disk_bytes')})", "{{kind}} blobs"),
            ),
            "bytes",
            w=24,
            h=8,
        ),
    ]


def biggest_objects_row() -> list[dict]:
    """The top images, layers, volumes, container logs and writable layers."""
    s = HOST
    img = top(s, "docker_storage_image_size_bytes", "image_id")
    layer = top(s, "docker_storage_layer_disk_bytes", "diff_id")
    vol = top(s, "docker_storage_volume_disk_bytes", "volume")
    return [
        row("Biggest objects"),
        table(
            "Top images",
            f"The {TOP} biggest images by Docker's SIZE (shared layers included), their UNIQUE SIZE (what "
            "removing the image frees), containers created from them and age. Folded images excluded.",
            targets(
                img,
                along(s("docker_storage_image_unique_bytes"), img, "instance", "image_id"),
                along(s("docker_storage_image_containers"), img, "instance", "image_id"),
                along(
                    f"time() - {s('docker_storage_image_created_timestamp_seconds')}",
                    img,
                    "instance",
                    "image_id",
                ),
                table=True,
            ),
            {
                "A": ("Size", "bytes"),
                "B": ("Unique", "bytes"),
                "C": ("Containers", "short"),
                "D": ("Age", "s"),
            },
            "Size",
            w=14,
            h=10,
        ),
        table(
            "Top layers",
            f"The {TOP} biggest image layers by allocated bytes of their overlay2 dir, with the size Docker "
            "recorded at pull or build and how many images share each.",
            targets(
                layer,
                along(s("docker_storage_layer_size_bytes"), layer, "instance", "diff_id"),
                along(s("docker_storage_layer_images"), layer, "instance", "diff_id"),
                table=True,
            ),
            {"A": ("On disk", "bytes"), "B": ("Recorded size", "bytes"), "C": ("Images", "short")},
            "On disk",
            w=10,
            h=10,
        ),
        table(
            "Top volumes",
            f"The {TOP} biggest volumes by allocated bytes, with inodes and the containers that mount them "
            "(0: `docker volume prune -a` would remove it).",
            targets(
                vol,
                along(s("docker_storage_volume_files"), vol, "instance", "volume"),
                along(s("docker_storage_volume_containers"), vol, "instance", "volume"),
                table=True,
            ),
            {"A": ("Bytes", "bytes"), "B": ("Inodes", "short"), "C": ("Containers", "short")},
            "Bytes",
            w=8,
            h=9,
        ),
        bargauge(
            "Top container logs",
            f"The {TOP} containers with the biggest logs (json-file with rotated files, local driver). Cap "
            "them with the log-opts max-size and max-file.",
            targets(
                (top(s, "docker_storage_container_log_bytes", "container"), "{{container}} ({{image}})"),
                instant=True,
            ),
            "bytes",
            w=8,
            h=9,
        ),
        bargauge(
            "Top writable layers",
            f"The {TOP} containers with the biggest writable layer (overlay2/<mount-id>/diff): what they "
            "wrote outside volumes.",
            targets(
                (top(s, "docker_storage_container_rw_bytes", "container"), "{{container}} ({{image}})"),
                instant=True,
            ),
            "bytes",
            w=8,
            h=9,
        ),
    ]
