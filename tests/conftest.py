"""Session fixtures: one private engine per test run, seeded once, and the real exporter
scraping it through a recording proxy. Tests that change state make their own objects,
or their own engine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import SUMMARY
from tests.harness.engine import PrivateEngine, default_test_root
from tests.harness.exporter import ExporterProcess, sampled_after
from tests.harness.proxy import RecordingProxy
from tests.harness.seed import Seed, seed

# Short paths: containerd's socket under the exec root must fit in a sun_path. One root per
# checkout, so two checkouts' runs never stop each other's daemons.
TEST_ROOT = Path(os.environ.get("DSE_TEST_ROOT") or default_test_root())

# Fast schedules so tests see fresh samples within a second or two.
FAST = [
    "--sampler.engine.interval", "1s",
    "--sampler.filesystem.interval", "1s",
    "--sampler.build-cache.interval", "1s",
    "--sampler.build-cache.legacy-interval", "1s",
    "--sampler.scan.interval", "1s",
]  # fmt: skip


@pytest.fixture(scope="session")
def engine() -> Iterator[PrivateEngine]:
    e = PrivateEngine(TEST_ROOT / "shared")
    e.start()
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture(scope="session")
def seeded(engine: PrivateEngine) -> Seed:
    return seed(engine)


@pytest.fixture(scope="session")
def proxy(engine: PrivateEngine) -> Iterator[RecordingProxy]:
    p = RecordingProxy(TEST_ROOT / "proxy.sock", engine.sock)
    yield p
    p.close()


@pytest.fixture(scope="session")
def exporter(
    seeded: Seed, proxy: RecordingProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    """The exporter over the recording proxy, after every sampler has seen the seed."""
    started = time.time()
    exp = ExporterProcess(proxy.host, tmp_path_factory.mktemp("exporter") / "log", FAST).start()
    try:
        exp.wait_until(
            sampled_after(started, "engine", "filesystem", "build_cache", "scan"),
            timeout=60,
            what="first samples",
        )
        yield exp
    finally:
        exp.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)
