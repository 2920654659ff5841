"""Samplers: sources -> frozen snapshots, each with its own health.

A sampler's `run()` never raises. On failure it keeps the last good snapshot and records
the failure in its status, which the collector turns into `sampler_*` metrics. Odd single
objects are skipped and counted inside the snapshot, never fatal.
"""

from exporter.samplers.base import NotDue, Sampler, Store, Unavailable
from exporter.samplers.build_cache import BuildCacheSampler
from exporter.samplers.desktop import DesktopSampler
from exporter.samplers.engine import EngineSampler
from exporter.samplers.filesystem import FilesystemSampler
from exporter.samplers.registry import RegistrySampler

__all__ = [
    "BuildCacheSampler",
    "DesktopSampler",
    "EngineSampler",
    "FilesystemSampler",
    "NotDue",
    "RegistrySampler",
    "Sampler",
    "Store",
    "Unavailable",
]
