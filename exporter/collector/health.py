"""The exporter's own families: its build, its Engine API requests, each sampler's health."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client.core import Metric

from exporter import __version__
from exporter.collector.families import counter, gauge
from exporter.model import SamplerStatus
from exporter.sources.bolt import BOLT_IMPL
from exporter.sources.du import WALK_IMPL

BUILD_INFO = gauge(
    "exporter_build_info",
    "Always 1; the exporter's version, the scan's walk and the bbolt reader's walk: c (the "
    "compiled extensions) or python.",
    ["version", "walk", "bolt_walk"],
)
REQUESTS = counter(
    "engine_requests",
    "Engine API requests sent since start, by endpoint (all are GET).",
    ["endpoint"],
)
SUCCESS = gauge("sampler_success", "1 if the sampler's last run succeeded, else 0.", ["sampler"])
DURATION = gauge("sampler_duration_seconds", "Wall time of the sampler's last run.", ["sampler"])
LAST_SUCCESS = gauge(
    "sampler_last_success_timestamp_seconds",
    "Unix time of the sampler's last successful run; its data is that old.",
    ["sampler"],
)
FAILURES = counter("sampler_failures", "Failed runs of the sampler since start.", ["sampler"])
RUNS = counter("sampler_runs", "Runs of the sampler since start.", ["sampler"])
AVAILABLE = gauge(
    "sampler_available",
    "0 if the sampler cannot work in this setup (e.g. the Docker root is not visible "
    "to the exporter); the reason is on the landing page and in the log.",
    ["sampler"],
)
ENGINE_UP = gauge("engine_up", "1 if the last Engine API sample succeeded, else 0.")


def exporter(request_counts: Mapping[str, int]) -> Iterator[Metric]:
    build = BUILD_INFO.new()
    build.add_metric([__version__, WALK_IMPL, BOLT_IMPL], 1)
    reqs = REQUESTS.new()
    for endpoint, n in sorted(request_counts.items()):
        reqs.add_metric([endpoint], n)
    yield from (build, reqs)


def samplers(statuses: Iterable[SamplerStatus]) -> Iterator[Metric]:
    ok, dur, last, fails, runs, available = (
        f.new() for f in (SUCCESS, DURATION, LAST_SUCCESS, FAILURES, RUNS, AVAILABLE)
    )
    for s in statuses:
        if not s.enabled:  # a sampler turned off by configuration has no health
            continue
        available.add_metric([s.name], 1 if s.available else 0)
        ok.add_metric([s.name], 1 if s.success else 0)
        dur.add_metric([s.name], s.duration_seconds)
        if s.last_success is not None:
            last.add_metric([s.name], s.last_success)
        fails.add_metric([s.name], s.failures)
        runs.add_metric([s.name], s.runs)
    yield from (ok, dur, last, fails, runs, available)


def engine_up(status: SamplerStatus | None) -> Iterator[Metric]:
    up = ENGINE_UP.new()
    up.add_metric([], 1 if status and status.success else 0)
    yield up
