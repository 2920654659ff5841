"""The Dockerfile, built and run for real: on a private engine, from a Debian base made with
debootstrap (no registry), the CA bundle handed in as a BuildKit secret; the container runs
with every capability dropped but DAC_READ_SEARCH, a read-only filesystem, the socket and
/ mounted read-only, and its /metrics is scraped on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter.model import EngineSnapshot
from exporter.samplers import EngineSampler, Store
from exporter.sources.engine import EngineClient
from tests.conftest import FAST, TEST_ROOT
from tests.harness import SUMMARY
from tests.harness.baseimage import BUILD, import_base
from tests.harness.engine import PrivateEngine
from tests.harness.exporter import ExporterProcess, free_port, parse, sampled_after, value
from tests.harness.seed import busybox_tar
from tests.harness.truth import cli_df_summary, human_size, system_df

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
        # The C walks were compiled in the build stage and load in the runtime one (no compiler).
        assert value(s, P + "exporter_build_info", walk="c", bolt_walk="c") == 1
    finally:
        eng.docker("rm", "-f", "dse-exporter", check=False)


# --- Images SIZE and RECLAIMABLE on 20.10 (API 1.41) after building the image -------------


def engine_sample(eng: PrivateEngine, rootfs: str | None) -> EngineSnapshot:
    """One real engine sample in this process: with `rootfs`, image configs may be read from
    the Docker root; with None, only the API is asked."""
    store, client = Store(), EngineClient(eng.host)
    try:
        assert EngineSampler(store, client, rootfs=rootfs).run()
    finally:
        client.close()
    return store.snapshot("engine")


def df_figures(eng: PrivateEngine) -> tuple[int, int, dict[str, int]]:
    """`docker system df`'s Images SIZE and RECLAIMABLE (the CLI's arithmetic on /system/df)
    and each listed image's UNIQUE SIZE."""
    df = system_df(eng)
    unique = {i["Id"]: i["Size"] - i["SharedSize"] for i in df["Images"]}
    in_use = sum(unique[i["Id"]] for i in df["Images"] if i["Containers"] > 0)
    return df["LayersSize"], df["LayersSize"] - in_use, unique


def test_image_totals_equal_system_df_after_the_build(image_engine, tmp_path):
    """The image's RUN step made a real layer of 0 bytes whose history entry says 0: the
    totals and every unique size are still known, from the API alone and in the exporter."""
    eng = image_engine
    api = eng.api()
    try:
        history, layers = api.history(IMAGE), api.inspect_image(IMAGE)["RootFS"]["Layers"]
    finally:
        api.close()
    # The shape that left the totals out: more layers than non-zero history entries.
    assert len(layers) == 3 and sum(1 for h in history if h["Size"]) == 2
    eng.docker("create", "--name", "dse-image-user", "--network", "none", IMAGE)  # in use: RECLAIMABLE < SIZE
    try:
        used, reclaimable, unique = df_figures(eng)
        assert reclaimable < used
        api_only = engine_sample(eng, rootfs=None)
        assert api_only.image_usage is not None, "totals missing with the API alone"
        assert (api_only.image_usage.used, api_only.image_usage.reclaimable) == (used, reclaimable)
        assert {i.id: i.unique_size for i in api_only.images} == unique  # no intermediates here
        started = time.time()
        exp = ExporterProcess(eng.host, tmp_path / "log", [*FAST, "--sampler.scan.interval", "0"]).start()
        try:
            s = exp.wait_until(sampled_after(started, "engine"), timeout=30, what="engine sample")
        finally:
            exp.stop()
        assert value(s, P + "used_bytes", object="images") == used  # SIZE exactly
        ours = value(s, P + "reclaimable_bytes", object="images")
        assert ours == reclaimable  # RECLAIMABLE: asked within 1 %, and exact
        got = {lbl["image_id"]: v for lbl, v in s[P + "image_unique_bytes"]}
        assert got == {i.split(":", 1)[1][:12]: float(u) for i, u in unique.items()}  # none unknown
        # As `docker system df` prints them.
        row = cli_df_summary(eng)["Images"]
        assert row["Size"] == human_size(used)
        assert row["Reclaimable"].startswith(human_size(ours))
        res = subprocess.run(
            [sys.executable, "-m", "exporter", "report", "--json", "--docker.host", eng.host,
             "--sampler.scan.interval", "0"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["images_total"] == {"used": used, "reclaimable": reclaimable}
    finally:
        eng.docker("rm", "-f", "dse-image-user", check=False)


PARTED = 'FROM dse-other:1\nENV X=1\nRUN mkdir /d\nCOPY f /f\nCMD ["sh"]\n'


def test_images_parting_at_a_zero_byte_layer_need_the_config(image_engine, tmp_path):
    """Two BuildKit images that part just above a RUN layer of 0 bytes, with a file of the same
    size but other bytes on top: from the API alone that RUN layer could be 0 or 40 bytes (the
    history cannot say which 0 entry made it), so their unique sizes and the totals are left
    out; with the Docker root readable, the configs' `empty_layer` flags settle them exactly."""
    eng = image_engine
    tags = ("dse-parted:a", "dse-parted:b")
    try:
        for tag in tags:
            ctx = tmp_path / tag.replace(":", "-")
            ctx.mkdir()
            (ctx / "Dockerfile").write_text(PARTED)
            (ctx / "f").write_bytes(os.urandom(40))
            eng.docker("build", "-q", "--network", "none", "-t", tag, str(ctx), buildkit=True)
        inspect = json.loads(eng.docker("image", "inspect", *tags))
        a, b = (i["RootFS"]["Layers"] for i in inspect)
        assert a[:2] == b[:2] and a[2] != b[2]  # they share the base and the RUN layer
        used, reclaimable, unique = df_figures(eng)
        api_only = engine_sample(eng, rootfs=None)
        by_id = {i.id: i.unique_size for i in api_only.images}
        assert api_only.image_usage is None
        assert [by_id[i["Id"]] for i in inspect] == [None, None]
        assert all(u == unique[iid] for iid, u in by_id.items() if u is not None)  # the rest exact
        with_root = engine_sample(eng, rootfs="/")
        assert with_root.image_usage is not None
        assert (with_root.image_usage.used, with_root.image_usage.reclaimable) == (used, reclaimable)
        assert {i.id: i.unique_size for i in with_root.images} == unique
        assert [unique[i["Id"]] for i in inspect] == [40, 40]
    finally:
        eng.docker("rmi", *tags, check=False)
