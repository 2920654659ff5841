"""Debian base images with Python for building the exporter's image, made without any
registry: debootstrap from Debian's mirror, `docker import`. Cached between test runs.

Two of them, as the Dockerfile's two stages: a runtime base with Python only, and a build
base that adds gcc and Python's headers for the scan's C walk."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.harness.engine import PrivateEngine, unmount_all

CACHE = Path(os.environ.get("DSE_CACHE", Path.home() / ".cache" / "docker-storage-exporter"))
MIRROR = os.environ.get("DSE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
RUNTIME = "python3,python3-venv,ca-certificates"
BUILD = RUNTIME + ",gcc,libc6-dev,python3-dev"
TAGS = {RUNTIME: "dse-python-base:bookworm", BUILD: "dse-python-build:bookworm"}


def base_tarball(packages: str = RUNTIME) -> Path:
    """The root filesystem as a tar, built once per machine (about a minute)."""
    tar = CACHE / f"debian-bookworm-{packages.replace(',', '-')}.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    root = CACHE / "rootfs.tmp"
    unmount_all(root)
    shutil.rmtree(root, ignore_errors=True)
    try:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", str(root), MIRROR],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        partial = tar.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tar)
    finally:
        unmount_all(root)
        shutil.rmtree(root, ignore_errors=True)
    return tar


def import_base(engine: PrivateEngine, packages: str = RUNTIME) -> str:
    tag = TAGS[packages]
    with open(base_tarball(packages), "rb") as f:
        engine.docker("import", "-", tag, input=f.read())
    return tag
