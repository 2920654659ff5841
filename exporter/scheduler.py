"""APScheduler background jobs: one per sampler, first run at start, never overlapping."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

from exporter.samplers import Sampler


@dataclass(frozen=True)
class Job:
    sampler: Sampler
    interval: float  # seconds
    first_delay: float = 0.0


def jitter_for(interval: float) -> float:
    # Spread a fleet's samples (and ours against each other) without drifting far.
    return min(interval * 0.1, 30.0)


def create() -> BackgroundScheduler:
    return BackgroundScheduler(
        timezone=UTC,
        job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
    )


def start(
    scheduler: BackgroundScheduler,
    jobs: list[Job],
    runners: dict[str, Callable[[], object]] | None = None,
) -> BackgroundScheduler:
    """Add one job per sampler and start; `runners` may replace a sampler's `run` by name."""
    now = datetime.now(UTC)
    for job in jobs:
        scheduler.add_job(
            (runners or {}).get(job.sampler.name, job.sampler.run),
            "interval",
            seconds=job.interval,
            jitter=jitter_for(job.interval),
            id=job.sampler.name,
            name=f"sampler {job.sampler.name}",
            next_run_time=now + timedelta(seconds=job.first_delay),
        )
    scheduler.start()
    return scheduler


def run_soon(scheduler: BackgroundScheduler, name: str) -> None:
    """Bring a job's next run forward to now (e.g. the filesystem after the first engine sample)."""
    job = scheduler.get_job(name)
    if job is not None:
        job.modify(next_run_time=datetime.now(UTC))
