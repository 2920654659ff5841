"""The engine goes away and comes back: the exporter keeps serving, says so, keeps the last
good numbers, and recovers by itself. Uses its own private engine, since it stops it."""

from __future__ import annotations

import json
import threading

import pytest

from tests.conftest import FAST, TEST_ROOT
from tests.harness.engine import PrivateEngine
from tests.harness.exporter import ExporterProcess, value
from tests.harness.seed import busybox_tar

P = "docker_storage_"


def engine_runs(s) -> float:
    return value(s, P + "sampler_runs_total", sampler="engine") or 0


@pytest.fixture()
def fault_engine():
    eng = PrivateEngine(TEST_ROOT / "fault")
    yield eng
    eng.stop()


def test_engine_down_at_start_then_up_then_down_then_back(fault_engine, tmp_path):
    eng = fault_engine
    exp = ExporterProcess(eng.host, tmp_path / "log", FAST).start()
    try:
        # 1. No engine at all: the exporter serves, says engine_up 0, invents nothing.
        s = exp.wait_until(lambda s: engine_runs(s) >= 2, timeout=30, what="two engine samples")
        assert value(s, P + "engine_up") == 0
        assert value(s, P + "sampler_success", sampler="engine") == 0
        assert value(s, P + "sampler_failures_total", sampler="engine") >= 2
        assert P + "images" not in s and P + "engine_info" not in s
        assert value(s, P + "sampler_last_success_timestamp_seconds", sampler="engine") is None

        # 2. The engine appears: picked up without a restart.
        eng.start()
        eng.docker("import", "-", "dse-fault:1", input=busybox_tar())
        s = exp.wait_until(
            lambda s: value(s, P + "engine_up") == 1 and value(s, P + "images", state="unused") == 1,
            timeout=30,
            what="engine up with one image",
        )
        exp.wait_until(
            lambda s: value(s, P + "sampler_success", sampler="filesystem") == 1,
            timeout=30,
            what="filesystem sampled",
        )

        # 3. The engine stops: engine_up 0, the last good numbers and their timestamp stay,
        # and the filesystem sampler, which needs no engine, goes on.
        eng.stop()
        s = exp.wait_until(lambda s: value(s, P + "engine_up") == 0, timeout=30, what="engine down")
        last_ok = value(s, P + "sampler_last_success_timestamp_seconds", sampler="engine")
        fs_last = value(s, P + "sampler_last_success_timestamp_seconds", sampler="filesystem")
        runs = engine_runs(s)
        s = exp.wait_until(
            lambda s: (
                engine_runs(s) >= runs + 2
                and value(s, P + "sampler_last_success_timestamp_seconds", sampler="filesystem") > fs_last
            ),
            timeout=30,
            what="more samples while down",
        )
        assert value(s, P + "engine_up") == 0
        assert value(s, P + "images", state="unused") == 1
        assert value(s, P + "sampler_last_success_timestamp_seconds", sampler="engine") == last_ok
        assert value(s, P + "sampler_success", sampler="filesystem") == 1
        assert P + "engine_info" in s

        # 4. Back again: recovers by itself.
        eng.start(fresh=False)
        s = exp.wait_until(
            lambda s: (
                value(s, P + "engine_up") == 1
                and value(s, P + "sampler_last_success_timestamp_seconds", sampler="engine") > last_ok
            ),
            timeout=30,
            what="engine back",
        )
        assert value(s, P + "images", state="unused") == 1
    finally:
        rc = exp.stop()
    assert rc == 0  # SIGTERM: a clean exit
    lines = [json.loads(x) for x in exp.log.read_text().splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("event") == "sample failed" and x.get("sampler") == "engine"]
    assert failed and all(x["level"] == "warning" and x["error"] for x in failed)


def test_a_disk_usage_call_waits_out_another_one_running(engine: PrivateEngine) -> None:
    """dockerd 20.10 runs one /system/df at a time and refuses the others with "a disk usage
    operation is already running" (another exporter, a user's `docker system df`): each of
    several clients asking at once gets its answer, asking again while refused."""
    from exporter.sources.engine import EngineClient

    clients = [EngineClient(engine.host) for _ in range(4)]
    for c in clients:
        c.negotiate()
    assert clients[0].api_version == "1.41"  # the engine that runs one at a time

    def ask(c: EngineClient, start: threading.Barrier, got: list[object], errors: list[Exception]) -> None:
        start.wait()
        try:
            got.append(c.df())
        except Exception as exc:  # noqa: BLE001 - the test says which
            errors.append(exc)

    for _ in range(5):  # rounds, until dockerd refused one of them (it almost always does at once)
        barrier = threading.Barrier(len(clients))
        answers: list[object] = []
        errors: list[Exception] = []
        threads = [threading.Thread(target=ask, args=(c, barrier, answers, errors)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors and len(answers) == len(clients), errors
        assert all(isinstance(a, dict) and "LayersSize" in a for a in answers)
        if sum(c.df_busy for c in clients):
            break
    assert sum(c.df_busy for c in clients) > 0, "dockerd never refused a df: the retry went untested"
