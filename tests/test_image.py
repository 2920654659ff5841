"""The Dockerfile, built and run for real: on a private engine, from a Debian base made with
debootstrap (no registry), the CA bundle handed in as a BuildKit secret; the container runs
with every capability dropped but DAC_READ_SEARCH, a read-only filesystem, the socket and
/ mounted read-only, and its /metrics is scraped on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import TEST_ROOT
from tests.harness import SUMMARY
from tests.harness.baseimage import BUILD, import_base
from tests.harness.engine import PrivateEngine
from tests.harness.exporter import free_port, parse, value
from tests.harness.seed import busybox_tar

ROOT = Path(__file__).resolve().parents[1]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
IMAGE = "dse-exporter:test"
P = "docker_storage_"
SAMPLERS = ("engine", "scan", "filesystem", "build_cache")


@pytest.fixture(scope="module")
def image_engine():
    eng = PrivateEngine(TEST_ROOT / "image")
    eng.start()
    try:
        base, build_base = import_base(eng), import_base(eng, BUILD)
        started = time.monotonic()
        eng.docker(
            "build", "-q", "--network", "host", "--secret", f"id=ca,src={CA_BUNDLE}",
            "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"BUILD_IMAGE={build_base}",
            "-t", IMAGE, str(ROOT), buildkit=True,
        )  # fmt: skip
        built = time.monotonic() - started
        size = json.loads(eng.docker("image", "inspect", IMAGE))[0]["Size"]
        base_size = json.loads(eng.docker("image", "inspect", base))[0]["Size"]
        extra = (size - base_size) / 1e6
        SUMMARY.append(f"image: built in {built:.0f}s, {size / 1e6:.0f} MB ({extra:.1f} MB over the base)")
        eng.docker("import", "-", "dse-other:1", input=busybox_tar())  # something to measure
        yield eng
    finally:
        eng.stop()


def test_image_metadata(image_engine):
    cfg = json.loads(image_engine.docker("image", "inspect", IMAGE))[0]["Config"]
    assert cfg["Entrypoint"] == ["/opt/exporter/bin/docker-storage-exporter"]
    assert "9818/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"][:2] == ["CMD", "/opt/exporter/bin/python"]
    labels = cfg["Labels"]
    for key in ("title", "description", "version", "source", "licenses"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # The CA bundle was a build secret: no layer holds it.
    out = image_engine.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "/opt/exporter/bin/python", IMAGE,
        "-c", "import os; print(os.path.exists('/run/secrets/ca'), os.path.exists('/opt/exporter/bin/pip'))",
    )  # fmt: skip
    assert out.split() == ["False", "False"]
    # The runtime stage has no compiler: the C walk came built from the build stage.
    out = image_engine.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "/opt/exporter/bin/python", IMAGE,
        "-c", "import shutil; from exporter.sources import du; print(du.WALK_IMPL, shutil.which('gcc'))",
    )  # fmt: skip
    assert out.split() == ["c", "None"]


def test_container_measures_the_engine_that_runs_it(image_engine):
    eng = image_engine
    port = free_port()
    eng.docker(
        "run", "-d", "--name", "dse-exporter", "--network", "host",
        "--cap-drop", "ALL", "--cap-add", "DAC_READ_SEARCH", "--read-only", "--tmpfs", "/tmp:size=16m",
        "--security-opt", "no-new-privileges", "--health-interval", "1s",
        "-v", "/:/host:ro", "-v", f"{eng.sock}:/var/run/docker.sock:ro",
        IMAGE, "--path.rootfs=/host", "--docker.host=unix:///var/run/docker.sock",
        f"--web.listen-address=127.0.0.1:{port}",
        "--sampler.scan.interval=2s", "--sampler.engine.interval=2s",
    )  # fmt: skip
    try:
        import urllib.request

        deadline, s, health = time.monotonic() + 60, {}, ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    s = parse(r.read().decode())
            except OSError:
                s = {}
            health = eng.docker("inspect", "--format", "{{.State.Health.Status}}", "dse-exporter").strip()
            ok = all(value(s, P + "sampler_success", sampler=n) == 1 for n in SAMPLERS)
            if ok and health == "healthy":
                break
            time.sleep(0.5)
        logs = eng.docker("logs", "dse-exporter")
        assert health == "healthy", logs[-2000:]
        for sampler in SAMPLERS:
            assert value(s, P + "sampler_success", sampler=sampler) == 1, (sampler, logs[-2000:])
        assert value(s, P + "sampler_available", sampler="scan") == 1
        ((info, _),) = s[P + "engine_info"]
        assert info["root_dir"] == str(eng.data_root)  # host paths, read through /host
        assert value(s, P + "images", state="in_use") == 1  # the exporter's own image
        assert value(s, P + "containers", state="running") == 1
        assert value(s, P + "root_disk_bytes", dir="overlay2") > 0
        assert value(s, P + "scan_unreadable_entries") == 0  # DAC_READ_SEARCH is enough
        assert value(s, P + "layer_attribution_available") == 1
        # The C walk was compiled in the build stage and loads in the runtime one (no compiler).
        assert value(s, P + "exporter_build_info", walk="c") == 1
    finally:
        eng.docker("rm", "-f", "dse-exporter", check=False)
