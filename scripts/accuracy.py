#!/usr/bin/env python3
"""Our numbers beside Docker's own, for known engine states. Rerunnable by anyone (root).

Starts three private engines in turn, each with its own data root and socket: Docker 20.10
with overlay2, and Debian trixie's Docker 26.1 with overlay2 and with the containerd image
store (each private in a mount namespace + chroot, tests/harness/trixie.py). Seeds each with
a known state, samples it once with the exporter's own samplers and collector, and prints a
Markdown report with one section per engine: every figure beside `docker system df -v` (the
exact bytes of the engine's `/system/df`, which the CLI formats), the CLI's listings, GNU
`du`, and on the containerd store containerd's own `ctr`. `--write FILE` saves it. Exits 1
if any row is unequal beyond its stated tolerance.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.accuracy import containerd, overlay2  # noqa: E402
from tests.harness.accuracy.common import Table, Truth, engine_rows, sample, settle  # noqa: E402
from tests.harness.baseimage import BUILD, import_base  # noqa: E402
from tests.harness.engine import PrivateEngine, default_test_root  # noqa: E402
from tests.harness.seed import seed  # noqa: E402
from tests.harness.trixie import CSTORE, OVERLAY2, ChrootEngine, name_for, rootfs_copy  # noqa: E402
from tests.harness.trixie_seed import SeededTrixie, seed_trixie  # noqa: E402

# The trixie engines run in a rootfs copy of their own under the test root (`acc/tx`), with
# NAMEs derived from it: never the test fixtures' R or NAMEs, so a test run (and its cleanup)
# and this script never stop or wipe each other's engines.
ACC_ROOT = Path(os.environ.get("DSE_TEST_ROOT") or default_test_root()) / "acc"

TRIXIE_SEED = (
    "seeded by `tests/harness/trixie_seed.py` without a registry: `docker import`ed images under",
    "four registries' names, classic builds FROM them (intermediate images, a rebuilt tag leaving",
    "one dangling), a BuildKit build, two `docker load`ed images sharing a layer; running, paused,",
    "exited and created containers, one exited after 2,000 lines of json-file log; used and",
    "unused volumes; BuildKit cache.",
)


@dataclass
class Section:
    title: str
    intro: list[str]
    table: Table
    seconds: float = 0.0

    def text(self) -> list[str]:
        rows = f"Rows: {self.table.rows}, not equal: {self.table.bad}."
        return [f"## {self.title}", "", *self.intro, "", rows, "", *self.table.lines, ""]


def build_exporter_image(engine: PrivateEngine) -> None:
    """This project's own image, built as tests/test_image.py builds it (two debootstrapped
    bases imported, the two-stage BuildKit build): its RUN step makes a 0-byte layer whose
    history entry says 0, the case Docker's sizes must still be known for."""
    base, build_base = import_base(engine), import_base(engine, BUILD)
    engine.docker(
        "build", "-q", "--network", "host", "--secret", "id=ca,src=/etc/ssl/certs/ca-certificates.crt",
        "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"BUILD_IMAGE={build_base}",
        "-t", "dse-exporter:accuracy", str(ROOT), buildkit=True,
    )  # fmt: skip


def docker_2010() -> Section:
    with tempfile.TemporaryDirectory(prefix="dse-acc-", dir="/tmp") as base:
        engine = PrivateEngine(Path(base) / "e")
        engine.start()
        try:
            seed(engine)
            build_exporter_image(engine)
            settle(engine.data_root)
            s, scan = sample(engine.host)
            truth = Truth.of(engine)
            t = Table()
            engine_rows(t, s, truth)
            overlay2.scan_rows(t, s, scan, truth, engine.data_root)
        finally:
            engine.stop()
    intro = [
        f"A private Docker {truth.version} daemon (`tests/harness/engine.py`) seeded with the test",
        "suite's state (`tests/harness/seed.py`): tagged, re-tagged (dangling) and intermediate",
        "images from four registries (one pushed to a registry on 127.0.0.1, so it has a digest),",
        "running, exited and created containers, used and unused volumes, and BuildKit cache;",
        "and this project's own image built from two debootstrapped bases, whose 0-byte RUN",
        "layer Docker's history records as 0.",
        "",
        "Tolerance: none. Each figure is a count or a byte total that Docker or GNU `du` reports",
        'exactly for the same object on an idle engine; the "as printed" rows format our bytes',
        "the way the Docker CLI does (go-units, 4 digits). Allocated bytes are compared with",
        "`du -s -x --block-size=1` (live mounts under `overlay2/*/merged` and `containers/*/mounts`",
        "excluded, as the scan never enters them); apparent bytes with Docker's own sizes. One",
        "exception, stated in its row: Docker records a layer BuildKit committed with each symlink",
        "as 0 bytes (its tar header's size) and a layer it unpacked with the symlink's st_size,",
        "which the walk counts; such a layer's apparent bytes may part from Docker's by its",
        "symlinks' bytes (measured by `lstat`), no more.",
    ]
    return Section(f"1. Docker {truth.version}, overlay2", intro, t)


def trixie(flavour: str, rows: Callable[[Table, SeededTrixie], Truth]) -> tuple[Table, Truth]:
    """Start, seed, sample and compare one trixie engine, then stop it."""
    engine = ChrootEngine(rootfs_copy(ACC_ROOT), name_for(ACC_ROOT, flavour), flavour)
    started = time.monotonic()
    try:
        engine.start()
        seeded = SeededTrixie(engine, seed_trixie(engine), time.monotonic() - started)
        settle(engine.data_root)  # the rows assume an idle engine
        t = Table()
        truth = rows(t, seeded)
    finally:
        engine.stop()
    return t, truth


def trixie_overlay2() -> Section:
    def rows(t: Table, seeded: SeededTrixie) -> Truth:
        s, scan = sample(seeded.docker_host, rootfs=str(seeded.rootfs))
        truth = Truth.of(seeded.engine)
        engine_rows(t, s, truth)
        overlay2.scan_rows(t, s, scan, truth, seeded.data_root)
        return truth

    t, truth = trixie(OVERLAY2, rows)
    intro = [
        f"Debian trixie's Docker {truth.version} with the overlay2 graphdriver, private in a mount",
        "namespace + chroot into a copy R of the trixie rootfs (`tests/harness/trixie.py`), read from",
        "outside as the exporter reads it with `--path.rootfs R` (in-process: the samplers' `rootfs`);",
        *TRIXIE_SEED,
        "",
        "The same rows as section 1, read the same way. API 1.45's differences: `/system/df` leaves",
        "SizeRw out when it is 0 (read as 0) and gives an untagged image no RepoTags (1.41:",
        "`<none>:<none>`); the build cache comes from `/system/df?type=build-cache`, which 1.41 lacks.",
        "",
        "Tolerance: none, as in section 1 and for the same reasons. From outside the engine's mount",
        "namespace its live mounts (`overlay2/*/merged`, `containers/*/mounts`) are plain empty",
        "dirs; `du` leaves them out as the scan does, which never enters them, mounted or not.",
    ]
    return Section(f"2. Docker {truth.version}, overlay2 (Debian trixie)", intro, t)


def trixie_cstore() -> Section:
    def rows(t: Table, seeded: SeededTrixie) -> Truth:
        leaked = seeded.ensure_leaked()
        assert leaked is not None
        cd = containerd.Containerd(seeded.engine)  # containerd's answers first: then our sample
        s, scan = sample(seeded.docker_host, rootfs=str(seeded.rootfs))
        truth = Truth.of(seeded.engine)
        engine_rows(t, s, truth)
        containerd.scan_rows(t, s, scan, truth, seeded.engine, cd, leaked)
        return truth

    t, truth = trixie(CSTORE, rows)
    intro = [
        f"The same trixie Docker {truth.version} with the containerd image store",
        '(`"features": {"containerd-snapshotter": true}`; R shared with section 2, its own NAME):',
        "layers are containerd's overlayfs snapshots (`snapshots/<N>` under",
        "`containerd/daemon/io.containerd.snapshotter.v1.overlayfs`), the compressed blobs are kept",
        "in its content store beside them. Seeded as section 2, plus one leaked snapshot dir (a",
        "`snapshots/<N>` that no metadata.db record names, 4 MiB in its `fs/`).",
        "",
        "Beside `/system/df`, the CLI and `du`: containerd's own answers through trixie's `ctr` on the",
        "engine's containerd socket (`chroot R ctr -a /run/NAME/containerd/containerd.sock -n moby`),",
        "read-only calls, asked before our sample: `snapshots usage -b` (what the snapshotter",
        "recorded at commit for a committed layer, a walk for an active one), `snapshots mounts`",
        "(an active snapshot's upperdir and lowerdirs: the dir N of each container's writable layer",
        "and of the layers under it, found without our metadata.db reader), `snapshots ls`, `content",
        "ls` (the blobs each namespace records, their GC labels), `images ls`, `namespaces ls`. The",
        "content kinds are sorted by the rules of docs/metrics.md (the images' manifests, else the",
        "labels), from those answers and the manifests' files, not from meta.db.",
        "",
        "Tolerance: none. Docker's own sizes on this store are containerd's: a layer's recorded size",
        "and a container's SizeRw are allocated bytes (continuity's `du`: st_blocks × 512, dirs",
        "included; so 4096 for an empty writable layer, where sections 1–2 say 0); an image's SIZE is",
        "its snapshots' recorded sizes plus its blobs' lengths (manifest, config, compressed",
        'layers). Ours follow the engine there (docs/metrics.md, "On the containerd image store"),',
        "so allocated bytes meet allocated bytes, and on an idle engine they are equal. A committed",
        "layer's `fs/` is taken as recorded, never walked, and matches `du` because a committed",
        "snapshot never changes. `du` runs outside the engine's mount namespace with only",
        "`containers/*/mounts` excluded (as the scan excludes it): the running and paused containers'",
        "rootfs mount points `rootfs/overlayfs/<id>` are mounts inside that namespace only, plain",
        "empty dirs from outside, counted by the scan and by `du -x` alike (inside, `du -x` would skip",
        "them, 4096 bytes apiece).",
    ]
    return Section(f"3. Docker {truth.version}, containerd image store (Debian trixie)", intro, t)


def report(sections: list[Section]) -> str:
    rows = sum(s.table.rows for s in sections)
    bad = sum(s.table.bad for s in sections)
    head = [
        "# Accuracy: our numbers beside Docker's",
        "",
        "Produced by `make accuracy` (`python scripts/accuracy.py --write docs/accuracy.md`): three",
        "private engines, each started by the script and seeded with a known state, then left until",
        "nothing under its root has changed for 2 s (BuildKit records a build's history about a",
        "second after the build returns), sampled once with the exporter's own samplers and",
        "collector, and every figure put beside what the engine, its CLI and GNU `du` say of the",
        "same object. The script exits non-zero if any row is unequal beyond its section's stated",
        "tolerance.",
        "",
        *(f"{s.title}: {s.table.rows} rows, not equal: {s.table.bad}." for s in sections),
        "",
        f"Rows: {rows}, not equal: {bad}.",
        "",
    ]
    return "\n".join(head + [line for s in sections for line in s.text()]).rstrip("\n") + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", metavar="FILE", help="write the report here as well as printing it")
    args = ap.parse_args()
    # SIGTERM unwinds like ^C, so every engine started here is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sections = []
    for run in (docker_2010, trixie_overlay2, trixie_cstore):
        started = time.monotonic()
        section = run()
        section.seconds = time.monotonic() - started
        print(
            f"{section.title}: {section.table.rows} rows, not equal: {section.table.bad}, "
            f"{section.seconds:.1f}s",
            file=sys.stderr,
        )
        sections.append(section)
    text = report(sections)
    print(text)
    if args.write:
        Path(args.write).write_text(text)
    return 1 if any(s.table.bad for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
