"""What the API tells about layer sizes on API 1.41, and what follows from it.

Docker 20.10 gives no layer sizes, only each image's Size (the sum of its layers) and its
history: one entry per build step, oldest last, with the size of the layer the step made and
0 for a step that made none. A step can also make a real layer of 0 bytes (a RUN that only
made dirs or deleted files), so a 0 in history may or may not be a layer. Three facts settle
most of it:

- Order and sum: the layers are, in order, some of the history entries, every non-zero entry
  among them (`align`). Where every alignment gives a layer the same size, or the same
  cumulative size, that is known. The image config's `empty_layer` flags, where the Docker
  root is readable, say exactly which entries made layers.
- Chain IDs name prefixes: layers form a tree, and an image is a path from the root to its
  top layer, so an image's Size is the cumulative size at its top node. A sum of layers is
  known when, written in cumulative sizes, it needs only nodes whose cumulative size is known
  or whose differences are (`LayerSizes.evaluate`), whatever the single layers are.
- Sizes are not negative: between two nodes of one path with the same cumulative size every
  layer is 0.
`LayerSizes` combines them, across images, until nothing more follows.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from itertools import accumulate
from typing import NamedTuple

ROOT = ""  # the node below every first layer: cumulative size 0


class LayerChain(NamedTuple):
    """An image's layers: chain IDs bottom-up, each layer's size (None: unknown) and, when
    its history did not settle every layer alone, the history's sizes (oldest first) to align
    again once other images tell more."""

    chain: tuple[str, ...]
    sizes: tuple[int | None, ...]
    steps: tuple[int, ...] = ()


class Alignment(NamedTuple):
    sizes: list[frozenset[int]]  # per layer: the sizes it can have
    cumulative: list[frozenset[int]]  # per layer: the cumulative sizes up to it


def align(
    steps: Sequence[int],
    layers: int,
    fixed: Sequence[int | None] = (),
    cumulative: Sequence[int | None] = (),
) -> Alignment | None:
    """Every way `layers` layers can be made by the history entries `steps` (oldest first):
    increasing entries, every non-zero one taken; layer i's size is `fixed[i]` and its
    cumulative size `cumulative[i]` where those are given. None when there is no way."""
    m = len(steps)
    if layers == 0:
        return Alignment([], []) if not any(steps) else None
    if layers > m:
        return None
    fixed = list(fixed) or [None] * layers
    cumulative = list(cumulative) or [None] * layers
    prefix = list(accumulate(steps))
    # hi[j]: the last entry the next layer may take after entry j (no non-zero one skipped).
    hi = [m - 1] * m
    nxt = m - 1
    for j in range(m - 1, -1, -1):
        hi[j] = nxt
        if steps[j]:
            nxt = j
    first = nxt  # the first non-zero entry (or the last entry): no layer may start later
    last = max((j for j in range(m) if steps[j]), default=0)

    def fits(i: int, j: int) -> bool:
        f, c = fixed[i], cumulative[i]
        return (f is None or steps[j] == f) and (c is None or prefix[j] == c)

    reach = [[j for j in range(first + 1) if fits(0, j)]]
    for i in range(1, layers):
        marks = [0] * (m + 1)
        for j in reach[-1]:
            if j + 1 <= hi[j]:
                marks[j + 1] += 1
                marks[hi[j] + 1] -= 1
        run, here = 0, []
        for j in range(m):
            run += marks[j]
            if run and fits(i, j):
                here.append(j)
        reach.append(here)
    back = [j for j in reach[-1] if j >= last]
    kept = [back]
    for i in range(layers - 2, -1, -1):
        after = kept[-1]
        ok = []
        for j in reach[i]:
            k = bisect_right(after, j)
            if k < len(after) and after[k] <= hi[j]:
                ok.append(j)
        kept.append(ok)
    kept.reverse()
    if not kept[0] or not kept[-1]:
        return None
    return Alignment(
        [frozenset(steps[j] for j in js) for js in kept],
        [frozenset(prefix[j] for j in js) for js in kept],
    )


class _Groups:
    """Cumulative sizes S(node) known absolutely or relative to each other: a union-find with
    offsets (S(node) = S(group root) + offset) and, per group, S(root) when known. A fact that
    contradicts the others marks its group bad: nothing about it is known then."""

    def __init__(self) -> None:
        self.up: dict[str, str] = {}
        self.off: dict[str, int] = {}
        self.count: dict[str, int] = {}
        self.value: dict[str, int] = {}
        self.bad: set[str] = set()

    def find(self, a: str) -> tuple[str, int]:
        up = self.up
        if a not in up:
            up[a], self.off[a], self.count[a] = a, 0, 1
            return a, 0
        path = []
        while up[a] != a:
            path.append(a)
            a = up[a]
        total = 0
        for node in reversed(path):  # nearest the root first
            total += self.off[node]
            up[node], self.off[node] = a, total
        return a, (self.off[path[0]] if path else 0)

    def link(self, a: str, b: str, d: int) -> bool:
        """S(b) - S(a) = d. True if that was not known before."""
        ra, oa = self.find(a)
        rb, ob = self.find(b)
        if ra == rb:
            if ob - oa != d:
                self.bad.add(ra)
            return False
        delta = oa + d - ob  # S(rb) = S(ra) + delta
        if self.count[ra] < self.count[rb]:
            ra, rb, delta = rb, ra, -delta
        self.up[rb], self.off[rb] = ra, delta
        self.count[ra] += self.count[rb]
        if rb in self.bad:
            self.bad.add(ra)
        if rb in self.value:
            implied = self.value.pop(rb) - delta
            if self.value.setdefault(ra, implied) != implied:
                self.bad.add(ra)
        return True

    def anchor(self, a: str, v: int) -> bool:
        """S(a) = v. True if that was not known before."""
        ra, oa = self.find(a)
        want = v - oa
        if ra in self.value:
            if self.value[ra] != want:
                self.bad.add(ra)
            return False
        self.value[ra] = want
        return True

    def absolute(self, a: str) -> int | None:
        ra, oa = self.find(a)
        if ra in self.bad or ra not in self.value:
            return None
        return self.value[ra] + oa

    def relative(self, a: str, b: str) -> int | None:
        """S(b) - S(a) when known."""
        ra, oa = self.find(a)
        rb, ob = self.find(b)
        if ra in self.bad or rb in self.bad:
            return None
        if ra == rb:
            return ob - oa
        if ra in self.value and rb in self.value:
            return self.value[rb] + ob - self.value[ra] - oa
        return None


class LayerSizes:
    """Everything the chains, their histories and the images' sizes settle about layer sizes.

    `chains` by image ID, `sizes` the images' Size (cumulative at their top layer). Facts that
    contradict each other (not on a real engine) make what they touch unknown, never wrong."""

    def __init__(self, chains: Mapping[str, LayerChain], sizes: Mapping[str, int]) -> None:
        g = self._g = _Groups()
        g.anchor(ROOT, 0)
        self.parent: dict[str, str] = {}
        self._doubtful: set[str] = set()  # chain IDs with two parents: not from chain_ids
        for lc in chains.values():
            below = ROOT
            for c in lc.chain:
                if self.parent.setdefault(c, below) != below:
                    self._doubtful.add(c)
                below = c
        usable = {iid: lc for iid, lc in chains.items() if lc.chain and self._doubtful.isdisjoint(lc.chain)}
        for iid, lc in usable.items():
            below = ROOT
            for c, x in zip(lc.chain, lc.sizes, strict=False):
                if x is not None:
                    g.link(below, c, x)
                below = c
            if iid in sizes:
                g.anchor(below, sizes[iid])
        paths = [lc.chain for lc in usable.values()]
        pending = [lc for lc in usable.values() if lc.steps and None in lc.sizes]
        for _ in range(2 * len(self.parent) + 2):  # each round that goes on learns a fact
            progress = self._pin(paths)
            still = []
            for lc in pending:
                learned, done = self._realign(lc)
                progress |= learned
                if not done:
                    still.append(lc)
            pending = still
            if not progress:
                break

    def _realign(self, lc: LayerChain) -> tuple[bool, bool]:
        """Align one image's history again with what is known now: (learned, nothing left)."""
        g, below = self._g, [ROOT, *lc.chain[:-1]]
        fixed = [g.relative(p, c) for p, c in zip(below, lc.chain, strict=True)]
        cumulative = [g.absolute(c) for c in lc.chain]
        found = align(lc.steps, len(lc.chain), fixed, cumulative)
        if found is None:
            return False, True  # contradicts what other images say: it tells nothing
        learned = False
        for i, c in enumerate(lc.chain):
            if fixed[i] is None and len(found.sizes[i]) == 1:
                learned |= g.link(below[i], c, next(iter(found.sizes[i])))
            if cumulative[i] is None and len(found.cumulative[i]) == 1:
                learned |= g.anchor(c, next(iter(found.cumulative[i])))
        done = all(len(s) == 1 for s in found.sizes)
        return learned, done

    def _pin(self, paths: Iterable[tuple[str, ...]]) -> bool:
        """Between two nodes of a path with the same known cumulative size, every layer is 0."""
        g, learned = self._g, False
        for path in paths:
            values = [g.absolute(c) for c in path]
            if None not in values:
                continue
            lo, lows = 0, []
            for v in values:
                lo = v if v is not None and v > lo else lo
                lows.append(lo)
            hi = None
            for i in range(len(path) - 1, -1, -1):
                v = values[i]
                hi = v if v is not None and (hi is None or v < hi) else hi
                if v is None and hi is not None and hi == lows[i]:
                    learned |= g.anchor(path[i], hi)
        return learned

    def cumulative(self, node: str) -> int | None:
        """The sum of the layers from the bottom up to `node` (ROOT: 0)."""
        return None if node in self._doubtful else self._g.absolute(node)

    def layer(self, node: str) -> int | None:
        below = self.parent.get(node)
        if below is None or node in self._doubtful:
            return None
        return self._g.relative(below, node)

    def evaluate(self, coefs: Mapping[str, int]) -> int | None:
        """Σ coef * cumulative(node), when what is known fixes it."""
        g = self._g
        per_group: dict[str, int] = {}
        total = 0
        for node, k in coefs.items():
            if not k:
                continue
            if node in self._doubtful:
                return None
            r, o = g.find(node)
            if r in g.bad:
                return None
            per_group[r] = per_group.get(r, 0) + k
            total += k * o
        for r, k in per_group.items():
            if k:
                if r not in g.value:
                    return None
                total += k * g.value[r]
        return total

    def sum_of_layers(self, nodes: Iterable[str]) -> int | None:
        """The sum of the sizes of `nodes` (distinct chain IDs), when what is known fixes it."""
        coefs: dict[str, int] = {}
        for c in set(nodes):
            below = self.parent.get(c)
            if below is None or c in self._doubtful:
                return None
            coefs[c] = coefs.get(c, 0) + 1
            coefs[below] = coefs.get(below, 0) - 1
        return self.evaluate(coefs)
