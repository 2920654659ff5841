"""Samplers: sources -> frozen snapshots, each with its own health.

A sampler's `run()` never raises. On failure it keeps the last good snapshot and records
the failure in its status, which the collector turns into `sampler_*` metrics. Odd single
objects are skipped and counted inside the snapshot, never fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, Protocol, TypeVar

import structlog

from exporter.errors import cause
from exporter.model import SamplerStatus

log = structlog.get_logger("exporter.samplers")


class _Published(Protocol):
    sampler: ClassVar[str]


S = TypeVar("S", bound=_Published)


class NotDue(Exception):
    """Raised by a sampler that has nothing to do this time; the status stays as it was."""


class Unavailable(Exception):
    """The sampler cannot work in this setup (e.g. the Docker root is not visible here).
    The sampler logs the reason once itself; its status says unavailable."""


class Store:
    """The latest snapshot and status of each sampler.

    Samplers replace whole immutable objects; the collector reads without locking and sees
    either the old or the new object, never half of one.
    """

    def __init__(self) -> None:
        self._snapshots: dict[str, Any] = {}
        self._status: dict[str, SamplerStatus] = {}
        self._lock = threading.Lock()

    def publish(self, status: SamplerStatus, snapshot: Any = None) -> None:
        with self._lock:
            if snapshot is not None:
                self._snapshots = {**self._snapshots, status.name: snapshot}
            self._status = {**self._status, status.name: status}

    def snapshot(self, name: str) -> Any:
        return self._snapshots.get(name)

    def latest(self, kind: type[S]) -> S | None:
        """The latest snapshot of a type (published by the sampler it names), typed. Anything
        else under that sampler's name is a bug, raised for the caller to count."""
        snap = self._snapshots.get(kind.sampler)
        if snap is None or isinstance(snap, kind):
            return snap
        raise TypeError(f"sampler {kind.sampler} published a {type(snap).__name__}, not a {kind.__name__}")

    def status(self, name: str) -> SamplerStatus | None:
        return self._status.get(name)

    def statuses(self) -> list[SamplerStatus]:
        return sorted(self._status.values(), key=lambda s: s.name)


class Sampler:
    name = "sampler"

    def __init__(self, store: Store, clock: Callable[[], float] = time.time, publish: bool = True) -> None:
        """publish=False: no status until the first run that is not NotDue (a sampler with
        nothing to watch on this host, e.g. no Docker Desktop, shows nowhere)."""
        self.store = store
        self.clock = clock
        self._status = SamplerStatus(name=self.name)
        if publish:
            store.publish(self._status)

    def sample(self) -> Any:
        raise NotImplementedError

    def summary(self, snapshot: Any) -> dict[str, Any]:
        return {}

    def context(self) -> dict[str, Any]:
        """Fields that help read a failure, e.g. which engine address was tried."""
        return {}

    def run(self) -> bool:
        """One sample. Never raises: returns whether it succeeded."""
        started = time.monotonic()
        try:
            snapshot = self.sample()
        except NotDue:
            return self._status.success
        except Exception as exc:  # noqa: BLE001 - a sampler must survive anything
            duration = time.monotonic() - started
            why = reason(exc)
            unavailable = isinstance(exc, Unavailable)
            self._status = replace(
                self._status,
                available=not unavailable,
                success=False,
                duration_seconds=duration,
                last_error=why,
                runs=self._status.runs + 1,
                failures=self._status.failures + 1,
            )
            self.store.publish(self._status)
            if unavailable:
                return False
            log.warning(
                "sample failed",
                sampler=self.name,
                duration_seconds=round(duration, 3),
                error=why,
                **self.context(),
            )
            return False
        duration = time.monotonic() - started
        self._status = replace(
            self._status,
            available=True,
            success=True,
            duration_seconds=duration,
            last_success=self.clock(),
            last_error="",
            runs=self._status.runs + 1,
        )
        self.store.publish(self._status, snapshot)
        log.info(
            "sample",
            sampler=self.name,
            duration_seconds=round(duration, 3),
            **self.summary(snapshot),
        )
        return True


def root_oserror(exc: BaseException) -> OSError | None:
    """The OSError at the bottom of requests/urllib3 wrappers, which says what really failed."""
    found = cause(exc, lambda e: isinstance(e, OSError) and bool(e.strerror))
    return found if isinstance(found, OSError) else None


def reason(exc: BaseException) -> str:
    if getattr(exc, "explained", False) is True:  # says the cause itself, in one line
        return str(exc).strip().replace("\n", " ")[:300]
    root = root_oserror(exc)
    if root is not None:
        return f"{type(exc).__name__}: {root.strerror}"[:300]
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300]
