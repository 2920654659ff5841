"""Session fixtures: one private engine per test run, seeded once, and the real exporter
scraping it through a recording proxy. Tests that change state make their own objects,
or their own engine."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import BOLT_NOT_BUILT, SUMMARY
from tests.harness.engine import PrivateEngine, default_test_root
from tests.harness.exporter import ExporterProcess, sampled_after
from tests.harness.proxy import RecordingProxy
from tests.harness.registry_seed import RegistryState, seed_registry
from tests.harness.seed import Seed, seed
from tests.harness.trixie import CSTORE, OVERLAY2, ChrootEngine, name_for, rootfs_copy
from tests.harness.trixie_seed import SeededTrixie, seed_trixie

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
def seeded(engine: PrivateEngine, registry_state: RegistryState) -> Seed:
    # After the registry's seed, which pushes from this engine and removes what it made: no
    # session exporter sees those images come and go (one per image, ever: test_engine_metrics).
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


@pytest.fixture(scope="session")
def trixie_rootfs() -> Path:
    """R: this checkout's copy of the cached trixie rootfs (debootstrapped on first use)."""
    return rootfs_copy(TEST_ROOT)


def _trixie(rootfs: Path, flavour: str) -> Iterator[SeededTrixie]:
    engine = ChrootEngine(rootfs, name_for(TEST_ROOT, flavour), flavour)
    started = time.monotonic()
    try:
        engine.start()
        seeded = SeededTrixie(engine, seed_trixie(engine), time.monotonic() - started)
        SUMMARY.append(f"trixie {flavour}: Docker 26 started and seeded in {seeded.started_seconds:.1f}s")
        yield seeded
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def trixie_cstore(trixie_rootfs: Path) -> Iterator[SeededTrixie]:
    """trixie's Docker 26.1 with the containerd image store, seeded (and a leaked snapshot dir)."""
    yield from _trixie(trixie_rootfs, CSTORE)


@pytest.fixture(scope="session")
def trixie_overlay2(trixie_rootfs: Path) -> Iterator[SeededTrixie]:
    """trixie's Docker 26.1 with the overlay2 graphdriver, seeded the same way."""
    yield from _trixie(trixie_rootfs, OVERLAY2)


@pytest.fixture(scope="session")
def cstore_exporter(
    trixie_cstore: SeededTrixie, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    """The real exporter on the containerd-store engine, reading its files through
    --path.rootfs as in a container, after every sampler has seen the seed."""
    trixie_cstore.ensure_leaked()
    started = time.time()
    log = tmp_path_factory.mktemp("cstore-exporter") / "log"
    exp = ExporterProcess(trixie_cstore.docker_host, log, [*FAST, "--path.rootfs", str(trixie_cstore.rootfs)])
    exp.start()
    try:
        exp.wait_until(
            sampled_after(started, "engine", "filesystem", "scan"), timeout=60, what="cstore samples"
        )
        yield exp
    finally:
        exp.stop()


DESKTOP_IMAGE = ".docker/desktop/vms/0/data/Docker.raw"  # Desktop for Linux's place, under $HOME


@pytest.fixture(scope="session")
def desktop_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fake HOME as Docker Desktop leaves it: a 64 GiB sparse Docker.raw with 2 GiB written
    (32 runs of 64 MiB spread through it). The 2 GiB go when the session ends."""
    home = tmp_path_factory.mktemp("desktop-home")
    image = home / DESKTOP_IMAGE
    image.parent.mkdir(parents=True)
    chunk = b"\xa5" * (64 << 20)
    with open(image, "wb") as f:
        f.truncate(64 << 30)
        for i in range(32):
            f.seek(i * (2 << 30))
            f.write(chunk)
        os.fsync(f.fileno())  # settle the allocation before anyone reads st_blocks
    try:
        yield home
    finally:
        image.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def desktop_exporter(
    seeded: Seed, engine: PrivateEngine, desktop_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    """The real exporter on the private engine with HOME at desktop_home, after every sampler
    (the desktop one too) has run."""
    started = time.time()
    log = tmp_path_factory.mktemp("desktop-exporter") / "log"
    env = {**os.environ, "HOME": str(desktop_home)}
    exp = ExporterProcess(engine.host, log, [*FAST, "--sampler.desktop.interval", "1s"], env=env).start()
    try:
        exp.wait_until(
            sampled_after(started, "engine", "filesystem", "build_cache", "scan", "desktop"),
            timeout=60,
            what="desktop samples",
        )
        yield exp
    finally:
        exp.stop()


@pytest.fixture(scope="session")
def registry_state(engine: PrivateEngine) -> RegistryState:
    """A real docker-registry's storage, filled by the engine and stopped, with its own GC's
    dry-run verdicts (tests/harness/registry_seed.py)."""
    started = time.monotonic()
    state = seed_registry(engine, TEST_ROOT / "registry-store")
    SUMMARY.append(f"registry store: docker-registry seeded in {time.monotonic() - started:.1f}s")
    return state


@pytest.fixture(scope="session")
def registry_exporter(
    registry_state: RegistryState, engine: PrivateEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExporterProcess]:
    """The real exporter reading that registry's root (and the engine, as it always does)."""
    started = time.time()
    log = tmp_path_factory.mktemp("registry-exporter") / "log"
    args = ["--registry.root", str(registry_state.root), "--sampler.registry.interval", "1s",
            "--sampler.scan.interval", "0"]  # fmt: skip
    exp = ExporterProcess(engine.host, log, args).start()
    try:
        exp.wait_until(sampled_after(started, "registry"), timeout=60, what="registry sample")
        yield exp
    finally:
        exp.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)


@pytest.fixture(params=["c", "python"])
def bolt_walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test on both bbolt walks: _bolt.c (a suite run without it fails, never skips) and
    bolt_walk.py's (the C walk set aside). Modules use it for every test with
    `pytestmark = pytest.mark.usefixtures("bolt_walk")`."""
    from exporter.sources import bolt

    if request.param == "python":
        monkeypatch.setattr(bolt, "_native", None)
    elif bolt._native is None:
        pytest.fail(BOLT_NOT_BUILT)
    return str(request.param)
