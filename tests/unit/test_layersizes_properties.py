"""Property test (hypothesis) of the API 1.41 size math over generated hosts.

A host is generated from the truth: a tree of layers with sizes (many of them 0, some the
empty tar), images that are paths in it (tagged, untagged, intermediate), containers, and
for each image the history Docker would give — one entry per layer with its size, and empty
steps (ENV, LABEL, CMD) with 0 anywhere between — with or without the config's
`empty_layer` flags, or no history at all. The reference computes `docker system df` from
the truth the way dockerd does (every distinct layer of the top-level images; shared layers;
containers' images), and decides on its own which figures the given facts fix: every way
each history can be aligned (brute force), and exact linear algebra over the equations that
follow (each image's Size is the sum of its layers; the layers and prefix sums every
alignment agrees on).

Checked: every figure we give equals Docker's; every figure the facts fix, we give.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exporter.imagesizes import EMPTY_LAYER, RawImage, layer_chain, sizes_from_layers
from exporter.sources.layout import chain_ids

SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SIZES = st.sampled_from([0, 0, 0, 1, 2, 3, 5, 8, 40])


@dataclass
class Host:
    images: list[RawImage]
    diffs: dict[str, list[str]]  # image -> its diff IDs, bottom-up
    truth: dict[str, int]  # chain ID -> the layer's size
    entries: dict[str, list[tuple[int, bool]]]  # image -> its true history: (size, empty_layer)
    history: dict[str, list[int]]  # image -> the history's sizes the API gives, oldest first
    empty: dict[str, tuple[bool, ...] | None]  # image -> the config's flags, if readable
    containers: Counter[str]

    def all_configs_readable(self) -> None:
        for iid, entries in self.entries.items():
            self.history[iid] = [s for s, _ in entries]
            self.empty[iid] = tuple(e for _, e in entries)


@st.composite
def hosts(draw: st.DrawFn) -> Host:
    # The layer tree: node k extends node parent[k] (-1: the bottom) by one diff.
    nodes: list[tuple[int, str, int]] = []
    for k in range(draw(st.integers(1, 9))):
        parent = draw(st.integers(-1, k - 1))
        if draw(st.integers(0, 4)) == 0:
            nodes.append((parent, EMPTY_LAYER, 0))
        else:
            nodes.append((parent, f"sha256:{hashlib.sha256(str(k).encode()).hexdigest()}", draw(SIZES)))

    def path(k: int) -> list[int]:
        out = []
        while k >= 0:
            out.append(k)
            k = nodes[k][0]
        return out[::-1]

    truth: dict[str, int] = {}
    images: list[RawImage] = []
    diffs: dict[str, list[str]] = {}
    all_entries: dict[str, list[tuple[int, bool]]] = {}
    history: dict[str, list[int]] = {}
    empty: dict[str, tuple[bool, ...] | None] = {}
    tops: dict[str, int] = {}
    for n in range(draw(st.integers(1, 5))):
        iid = f"img{n}"
        # Mostly at a leaf (as built images are); now and then anywhere, or no layers at all.
        leaves = [k for k in range(len(nodes)) if all(p != k for p, _, _ in nodes)]
        top = (
            draw(st.sampled_from(leaves))
            if draw(st.integers(0, 2))
            else draw(st.integers(-1, len(nodes) - 1))
        )
        layers = path(top) if top >= 0 else []
        diffs[iid] = [nodes[k][1] for k in layers]
        for c, k in zip(chain_ids(diffs[iid]), layers, strict=True):
            truth[c] = nodes[k][2]
        # The classic builder's parent: an image whose layers are a prefix of these.
        candidates = [p for p, t in tops.items() if t == -1 or t in layers]
        parent = draw(st.sampled_from(["", *candidates]))
        tops[iid] = top
        size = sum(nodes[k][2] for k in layers)
        tags = draw(st.sampled_from([(), ("a:1",), ("ghcr.io/x/y:2", "z:1")]))
        images.append(RawImage(iid, tags, parent, 0.0, size))
        # History: each layer's entry, and empty steps (0) anywhere in between.
        entries: list[tuple[int, bool]] = []
        for k in layers:
            entries += [(0, True)] * draw(st.integers(0, 2)) + [(nodes[k][2], False)]
        entries += [(0, True)] * draw(st.integers(0, 2))
        all_entries[iid] = entries
        mode = draw(st.sampled_from(["api", "api", "config", "none", "none", "none"]))
        history[iid] = [s for s, _ in entries] if mode != "none" else []
        empty[iid] = tuple(e for _, e in entries) if mode == "config" else None
    containers = Counter({i.id: draw(st.integers(1, 2)) for i in images if draw(st.booleans())})
    return Host(images, diffs, truth, all_entries, history, empty, containers)


def exporter_image_host() -> Host:
    """The exporter's own image on its base: the base, the COPY of the venv, and a RUN whose
    layer has 0 bytes (its history entry says 0, like the ENV, LABEL and CMD steps)."""
    d1, d2, d3 = ("sha256:" + c * 64 for c in "123")
    base = [(100, False)]
    app = [(100, False), (0, True), (10, False), (0, True), (0, False), (0, True), (0, True)]
    return Host(
        images=[RawImage("base", ("b:1",), "", 0.0, 100), RawImage("app", ("a:1",), "", 0.0, 110)],
        diffs={"base": [d1], "app": [d1, d2, d3]},
        truth=dict(zip(chain_ids([d1, d2, d3]), (100, 10, 0), strict=True)),
        entries={"base": base, "app": app},
        history={"base": [100], "app": [s for s, _ in app]},
        empty={"base": None, "app": None},
        containers=Counter({"app": 1}),
    )


# --- the reference -----------------------------------------------------------------------


def docker_df(host: Host) -> tuple[int, dict[str, int], int, list[str]]:
    """`docker system df` from the truth, as dockerd computes it: (SIZE, unique sizes,
    RECLAIMABLE, the top-level images)."""
    chains = {i.id: chain_ids(host.diffs[i.id]) for i in host.images}
    parents = {i.parent_id for i in host.images if i.parent_id}
    tops = [i.id for i in host.images if i.tags or i.id not in parents]
    refs = Counter(c for t in tops for c in chains[t])
    used = sum(host.truth[c] for c in refs)
    unique = {}
    for img in host.images:
        self_ref = 1 if img.id in tops else 0
        unique[img.id] = img.size - sum(host.truth[c] for c in chains[img.id] if refs[c] - self_ref > 0)
    in_use = sum(unique[t] for t in tops if host.containers[t] > 0)
    return used, unique, used - in_use, tops


class Equations:
    """Linear equations over the layer sizes, in exact arithmetic; which forms they fix."""

    def __init__(self, variables: list[str]) -> None:
        self.index = {v: i for i, v in enumerate(variables)}
        self.rows: list[list[Fraction]] = []  # reduced, each with its own pivot column

    def _vector(self, coefs: dict[str, int]) -> list[Fraction]:
        row = [Fraction(0)] * len(self.index)
        for v, k in coefs.items():
            row[self.index[v]] += k
        return row

    def _reduce(self, row: list[Fraction]) -> list[Fraction]:
        for r in self.rows:
            p = next(i for i, x in enumerate(r) if x)
            if row[p]:
                f = row[p] / r[p]
                row = [a - f * b for a, b in zip(row, r, strict=True)]
        return row

    def add(self, coefs: dict[str, int]) -> None:
        row = self._reduce(self._vector(coefs))
        if any(row):
            self.rows.append(row)

    def fixes(self, coefs: dict[str, int]) -> bool:
        return not any(self._reduce(self._vector(coefs)))


def facts(host: Host) -> Equations:
    """What is given: the image sizes and what every alignment of a history agrees on."""
    variables = sorted({c for i in host.images for c in chain_ids(host.diffs[i.id])})
    eq = Equations(variables)
    for img in host.images:
        chain = chain_ids(host.diffs[img.id])
        if not chain:
            continue
        eq.add({c: 1 for c in chain})  # = img.size
        if img.size == 0:
            for c in chain:
                eq.add({c: 1})  # sizes are not negative
            continue
        steps, flags = host.history[img.id], host.empty[img.id]
        if flags is not None:
            for c in chain:
                eq.add({c: 1})
            continue
        ways = [
            w
            for w in combinations(range(len(steps)), len(chain))
            if all(j in w for j, s in enumerate(steps) if s)
            and all(steps[j] == 0 for j, d in zip(w, host.diffs[img.id], strict=True) if d == EMPTY_LAYER)
        ]
        if not ways:
            continue
        for i, c in enumerate(chain):
            if len({steps[w[i]] for w in ways}) == 1:
                eq.add({c: 1})
            if len({sum(steps[: w[i] + 1]) for w in ways}) == 1:
                eq.add({x: 1 for x in chain[: i + 1]})
    return eq


def ours(host: Host):
    chains = {}
    for img in host.images:
        inspect = {"RootFS": {"Type": "layers", "Layers": host.diffs[img.id]}}
        api_history = [{"Size": s} for s in reversed(host.history[img.id])]
        chains[img.id] = layer_chain(inspect, api_history, img.size, host.empty[img.id])
    return sizes_from_layers(host.images, chains, host.containers)


@SETTINGS
@given(host=hosts())
@example(host=exporter_image_host())
def test_figures_equal_dockers_and_exist_whenever_the_facts_fix_them(host: Host) -> None:
    used, unique, reclaimable, tops = docker_df(host)
    got = ours(host)
    eq = facts(host)
    chains = {i.id: chain_ids(host.diffs[i.id]) for i in host.images}
    refs = Counter(c for t in tops for c in chains[t])
    total_form = dict.fromkeys(refs, 1)
    for img in host.images:
        self_ref = 1 if img.id in tops else 0
        shared = {c: 1 for c in chains[img.id] if refs[c] - self_ref > 0}
        if eq.fixes(shared):
            assert got.unique[img.id] == unique[img.id], (img.id, host)
        else:
            assert got.unique[img.id] in (None, unique[img.id]), (img.id, host)
    in_use_form = Counter(total_form)
    for t in tops:
        if host.containers[t] > 0:
            for c in chains[t]:
                if refs[c] - 1 > 0:
                    in_use_form[c] += 1  # reclaimable = total - Σ (size - shared)
    if eq.fixes(total_form) and eq.fixes(dict(in_use_form)):
        assert got.usage is not None, host
    if got.usage is not None:
        assert (got.usage.used, got.usage.reclaimable) == (used, reclaimable), host
    assert got.unknown == sum(1 for u in got.unique.values() if u is None)


@SETTINGS
@given(host=hosts())
@example(host=exporter_image_host())
def test_with_every_config_readable_every_figure_is_known(host: Host) -> None:
    """The config's flags settle every layer: nothing is unknown then, everything is Docker's."""
    host.all_configs_readable()
    used, unique, reclaimable, _ = docker_df(host)
    got = ours(host)
    assert got.unique == unique and got.unknown == 0
    assert got.usage is not None and (got.usage.used, got.usage.reclaimable) == (used, reclaimable)
