"""Metric family definitions, and the families several groups add samples to.

Every family is defined once, at import, as a `Family` (name, HELP, label names); a scrape
makes fresh, empty instances with `new()`. Defining a name twice raises at import, so two
groups can never serve one family with two HELP texts or label sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

P = "docker_storage_"


@dataclass(frozen=True)
class Family:
    name: str  # the full name, prefix included (a counter's without _total)
    doc: str
    labels: tuple[str, ...]
    kind: str  # "gauge" or "counter"

    def new(self) -> GaugeMetricFamily | CounterMetricFamily:
        cls = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        return cls(self.name, self.doc, labels=list(self.labels))


DEFINED: dict[str, Family] = {}  # name -> definition, for the tests and nothing else


def _define(name: str, doc: str, labels: Sequence[str], kind: str) -> Family:
    family = Family(P + name, doc, tuple(labels), kind)
    if family.name in DEFINED:
        raise ValueError(f"metric family {family.name} is defined twice")
    DEFINED[family.name] = family
    return family


def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Family:
    return _define(name, doc, labels, "gauge")


def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Family:
    return _define(name, doc, labels, "counter")


# -- families that more than one group adds samples to (the collector merges them by name) --

SKIPPED = gauge(
    "sampler_skipped_items",
    "Objects the sampler's last successful run could not read or size and left out (each is logged).",
    ["sampler"],
)
USED = gauge(
    "used_bytes",
    "Disk used by Docker objects of a type, as `docker system df` SIZE.",
    ["object"],
)
RECLAIMABLE = gauge(
    "reclaimable_bytes",
    "Bytes a prune of that object type would free, as `docker system df` RECLAIMABLE.",
    ["object"],
)
FOLDED = gauge(
    "series_folded",
    "Items left out of a per-item family by --metrics.top-n and summed into its __other__ series.",
    ["family"],
)


def skipped(sampler: str, n: int) -> Metric:
    fam = SKIPPED.new()
    fam.add_metric([sampler], n)
    return fam


def usage(obj: str, used: int, reclaimable: int) -> Iterator[Metric]:
    u = USED.new()
    u.add_metric([obj], used)
    r = RECLAIMABLE.new()
    r.add_metric([obj], reclaimable)
    yield from (u, r)


def folded(families: Iterable[Metric], n: int) -> Metric:
    """series_folded for each of the per-item families, all folded alike."""
    fam = FOLDED.new()
    for f in families:
        fam.add_metric([f.name], n)
    return fam
