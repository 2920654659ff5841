"""The known state every read-only engine test starts from, built without any remote registry.

Images come from a static busybox (`docker import` of a small tar) and the classic and
BuildKit builders; the result has each image state, several registries (by tag, and by the
digest of a push to a private registry on loopback), running, exited and created
containers, used and unused volumes, and BuildKit cache records.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.harness.engine import PrivateEngine
from tests.harness.registry import LocalRegistry

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "sleep", "echo", "head", "true", "cat", "dd", "ls", "mkdir", "rm", "touch"]

REGISTRY_IMAGES = {
    "ghcr.io/dse/tool:1": 50_000,
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/dse/svc:2": 70_000,
    "localhost:5000/dse/local:3": 90_000,
}
# A local short name and a registry's on one image: it counts for the registry (ghcr.io).
TWO_NAMES = ("app:v2", "ghcr.io/acme/tool:1.0")
# Pushed to a registry on 127.0.0.1 (under one more tag, 127.0.0.1:PORT/mirror/svc:3): its
# RepoDigests name that registry, which outvotes these tags.
PUSHED = (
    "app:v3",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/svc:2",
    "localhost:5000/mirror/svc:latest",
)


def busybox_tar(extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "data"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
        for name, data in (extra or {}).items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def build(engine: PrivateEngine, tag: str, dockerfile: str, buildkit: bool = False) -> None:
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(dockerfile)
        args = ["build", "-q", "-t", tag]
        if buildkit:
            args += ["--network", "none"]  # the daemon has no bridge network
        engine.docker(*args, ctx, buildkit=buildkit)


RW_BYTES = 123_456
PAUSED_RW_BYTES = 11_111
USED_VOLUME_BYTES = 54_321
UNUSED_VOLUME_BYTES = 77_777


class _Docker(Protocol):
    def docker(self, *args: str) -> str: ...


def wait_for_log(engine: _Docker, container: str, text: str, timeout: float = 30) -> None:
    """Until the container has logged `text` (it is then where the seed needs it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in engine.docker("logs", container):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{container} did not log {text!r} within {timeout}s")


@dataclass(frozen=True)
class Seed:
    containers: dict[str, str]  # name -> expected state
    volumes_used: tuple[str, ...]
    volumes_unused: tuple[str, ...]
    pushed_to: str = ""  # the loopback registry (host:port) the PUSHED image went to


def seed(engine: PrivateEngine) -> Seed:
    d = engine.docker
    d("import", "-", "dse-base:latest", input=busybox_tar())
    for ref, size in REGISTRY_IMAGES.items():
        d("import", "-", ref, input=busybox_tar({"payload": os.urandom(size)}))
    d("import", "-", TWO_NAMES[0], input=busybox_tar({"payload": os.urandom(60_000)}))
    d("tag", *TWO_NAMES)
    d("import", "-", PUSHED[0], input=busybox_tar({"payload": os.urandom(80_000)}))
    for ref in PUSHED[1:]:
        d("tag", PUSHED[0], ref)
    # About half a second: the registry lives only for the push, the digest stays.
    with LocalRegistry(engine.base / "registry") as registry:
        d("tag", PUSHED[0], f"{registry.host}/mirror/svc:3")
        d("push", f"{registry.host}/mirror/svc:3")
    # Classic builder: each RUN leaves an intermediate image (untagged, with a child).
    build(
        engine,
        "dse-app:v1",
        'FROM dse-base:latest\nRUN head -c 300000 /dev/urandom > /a\nRUN echo hi > /b\nCMD ["sh"]\n',
    )
    d("tag", "dse-app:v1", "dse-app:latest")
    # Rebuilding a tag leaves the old image dangling.
    build(engine, "dse-old:v1", "FROM dse-base:latest\nRUN echo one > /f\n")
    build(engine, "dse-old:v1", "FROM dse-base:latest\nRUN echo two > /f\n")
    # BuildKit leaves build cache records.
    build(
        engine,
        "dse-bk:v1",
        "FROM dse-base:latest\nRUN head -c 200000 /dev/urandom > /bk\n",
        buildkit=True,
    )
    d("volume", "create", "dse-vol-used")
    d("volume", "create", "dse-vol-unused")
    # Bytes in a volume no container uses any more.
    d("run", "--rm", "--network", "none", "-v", "dse-vol-unused:/data", "dse-base:latest",
      "sh", "-c", f"head -c {UNUSED_VOLUME_BYTES} /dev/urandom > /data/x")  # fmt: skip
    # A running container with bytes in its writable layer, its log and its volume.
    d("run", "-d", "--name", "dse-running", "--network", "none", "-v", "dse-vol-used:/data",
      "dse-app:v1", "sh", "-c",
      f"head -c {RW_BYTES} /dev/urandom > /rw.bin && head -c {USED_VOLUME_BYTES} /dev/urandom"
      " > /data/y && echo seeded && sleep 3600")  # fmt: skip
    wait_for_log(engine, "dse-running", "seeded")
    # A paused container: active for `docker system df`, so its writable layer is not
    # reclaimable although it is not running.
    d("run", "-d", "--name", "dse-paused", "--network", "none", "dse-base:latest", "sh", "-c",
      f"head -c {PAUSED_RW_BYTES} /dev/urandom > /p.bin && echo ready && sleep 3600")  # fmt: skip
    wait_for_log(engine, "dse-paused", "ready")
    d("pause", "dse-paused")
    d("run", "--name", "dse-exited", "--network", "none", "dse-base:latest", "true")
    d("create", "--name", "dse-created", "--network", "none", "dse-old:v1", "true")
    return Seed(
        containers={
            "dse-running": "running",
            "dse-paused": "paused",
            "dse-exited": "exited",
            "dse-created": "created",
        },
        volumes_used=("dse-vol-used",),
        volumes_unused=("dse-vol-unused",),
        pushed_to=registry.host,
    )
