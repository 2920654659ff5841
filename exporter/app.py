"""Wiring: config -> clients, samplers, store, collector, registry, scheduler, server."""

from __future__ import annotations

import ctypes
import os

import structlog
from prometheus_client import CollectorRegistry, gc_collector, platform_collector, process_collector

from exporter.collector import StorageCollector
from exporter.config import Config
from exporter.samplers import (
    BuildCacheSampler,
    DesktopSampler,
    EngineSampler,
    FilesystemSampler,
    Sampler,
    Store,
)
from exporter.samplers.registry import RegistrySampler
from exporter.scan import ScanSampler, store_options
from exporter.scheduler import Job, create, run_soon, start
from exporter.server import HttpServer
from exporter.sources.bolt import BOLT_IMPL
from exporter.sources.du import WALK_IMPL, Walker
from exporter.sources.engine import EngineClient

log = structlog.get_logger("exporter.app")


def engine_client(config: Config) -> EngineClient:
    # TLS for tcp:// from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH, as the docker CLI reads them
    # (checked in config.parse).
    return EngineClient(config.docker_host, timeout=config.docker_timeout, tls=config.docker_tls)


M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters (malloc.h)


def limit_malloc() -> None:
    """One malloc arena and a fixed mmap threshold, before the first thread starts.

    glibc gives each thread that allocates an arena of its own (up to 8 per core), and raises
    its mmap threshold after a big block is freed. The engine sample runs on whichever
    scheduler thread is free, its listings on threads of their own, the server on others:
    memory freed in one arena did not serve the next sample in another, and at 10,000 images
    the RSS climbed sample after sample (74 -> 101 MiB). With one arena and blocks of 128 KiB
    and up always mapped (so a freed response body goes back at once) it stays flat. Python's
    small objects do not use malloc, and the GIL serialises the rest: one arena costs nothing
    here. Not done off glibc, nor over the operator's own MALLOC_ARENA_MAX /
    MALLOC_MMAP_THRESHOLD_."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return
        mallopt = ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if "MALLOC_ARENA_MAX" not in os.environ:
        mallopt(M_ARENA_MAX, 1)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(M_MMAP_THRESHOLD, 128 * 1024)


class App:
    def __init__(self, config: Config) -> None:
        limit_malloc()
        self.config = config
        self.store = Store()
        # One client per sampler: they run on different scheduler threads.
        self.clients = [engine_client(config), engine_client(config)]
        self.engine = EngineSampler(self.store, self.clients[0], rootfs=config.rootfs)
        self.filesystem = FilesystemSampler(self.store, rootfs=config.rootfs)
        self.build_cache: BuildCacheSampler | None = None
        if config.build_cache_interval > 0:
            self.build_cache = BuildCacheSampler(
                self.store, self.clients[1], legacy_interval=config.build_cache_legacy_interval
            )
        self.walker: Walker | None = None
        self.scan: ScanSampler | None = None
        if config.scan_interval > 0:
            self.walker = Walker(config.scan_workers or None)
            self.scan = ScanSampler(
                self.store,
                self.walker,
                rootfs=config.rootfs,
                budget=config.scan_budget,
                options=store_options(config),
            )
        self.desktop: DesktopSampler | None = None
        if config.desktop_interval > 0:
            self.desktop = DesktopSampler(self.store, disk_image=config.desktop_disk_image)
        # A self-hosted registry's storage: needs no engine, off unless a root is given.
        self.registry_store: RegistrySampler | None = None
        if config.registry_roots and config.registry_interval > 0:
            self.registry_store = RegistrySampler(self.store, config.registry_roots)
        self.registry = CollectorRegistry(auto_describe=False)
        for c in (
            process_collector.ProcessCollector,
            platform_collector.PlatformCollector,
            gc_collector.GCCollector,
        ):
            c(registry=self.registry)
        self.collector = StorageCollector(
            self.store, config.top_n, self.request_counts, hide_names=config.hide_names
        )
        self.registry.register(self.collector)
        self.scheduler = None
        self.server: HttpServer | None = None
        self._engine_seen = False

    def request_counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for client in self.clients:
            for k, v in client.request_counts().items():
                total[k] = total.get(k, 0) + v
        return total

    def samplers(self) -> list[Sampler]:
        every = (self.engine, self.filesystem, self.build_cache, self.scan, self.desktop, self.registry_store)
        return [s for s in every if s is not None]

    def _after_engine(self) -> bool:
        ok = self.engine.run()
        if ok and not self._engine_seen and self.scheduler is not None:
            # The filesystem sampler needs the root dir from the first engine sample.
            self._engine_seen = True
            run_soon(self.scheduler, self.filesystem.name)
            if self.scan is not None:
                run_soon(self.scheduler, self.scan.name)
        return ok

    def start(self) -> None:
        c = self.config
        self.server = HttpServer(
            c.listen_host,
            c.listen_port,
            self.registry,
            c.telemetry_path,
            self.store.statuses,
            web=c.web_config,
            max_requests=c.max_requests,
            read_header_timeout=c.read_header_timeout,
        )
        self.server.start()
        jobs = [
            Job(self.engine, c.engine_interval),
            Job(self.filesystem, c.filesystem_interval, first_delay=1.0),
        ]
        if self.build_cache is not None:
            jobs.append(Job(self.build_cache, c.build_cache_interval, first_delay=2.0))
        if self.scan is not None:
            jobs.append(Job(self.scan, c.scan_interval, first_delay=3.0))
        if self.desktop is not None:  # needs no engine: the file is on this host
            jobs.append(Job(self.desktop, c.desktop_interval, first_delay=0.5))
        if self.registry_store is not None:
            jobs.append(Job(self.registry_store, c.registry_interval, first_delay=2.0))
        # Assigned before the first job can run: the first engine sample looks it up.
        self.scheduler = create()
        start(self.scheduler, jobs, {self.engine.name: self._after_engine})
        log.info(
            "started",
            listen=f"{c.listen_host or '*'}:{self.server.port}",
            tls=self.server.tls,
            basic_auth=bool(c.web_config and c.web_config.auth),
            telemetry_path=c.telemetry_path,
            docker_host=c.docker_host,
            scan_walk=WALK_IMPL,  # "python": installed without a C compiler (docs/metrics.md, The scan)
            bolt_walk=BOLT_IMPL,
        )

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self.server is not None:
            self.server.stop()
        for client in self.clients:
            client.close()
        if self.walker is not None:
            self.walker.shutdown()  # a scan in progress must not hold up the exit
        log.info("stopped")
