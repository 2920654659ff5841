"""A scan's results: what it measured this time beside chunks it took whole from last time.

A rescan of an unchanged host reuses most of its figures (every image layer, every blob):
the plan hands those over as `settled` chunks, the same objects scan after scan while nothing
in them changed, so what is summed over them is summed once per chunk, not once per scan
(exporter.scan.attribute). `live` holds the rest: walked or stat'ed by this scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

from exporter.model import Usage
from exporter.stores.inventory import Key


class Results:
    __slots__ = ("_flat", "live", "settled")

    def __init__(self, live: Mapping[Key, Usage], settled: tuple[Mapping[Key, Usage], ...] = ()) -> None:
        self.live = live
        self.settled = settled
        self._flat: dict[Key, Usage] | None = None

    @overload
    def get(self, key: Key) -> Usage | None: ...
    @overload
    def get(self, key: Key, default: Usage) -> Usage: ...
    def get(self, key: Key, default: Usage | None = None) -> Usage | None:
        hit = self.live.get(key)
        if hit is not None:
            return hit
        for chunk in self.settled:
            hit = chunk.get(key)
            if hit is not None:
                return hit
        return default

    def __getitem__(self, key: Key) -> Usage:
        hit = self.get(key)
        if hit is None:
            raise KeyError(key)
        return hit

    def flat(self) -> dict[Key, Usage]:
        """Everything as one dict (made once: a results object is one scan's, never changed)."""
        if self._flat is None:
            out: dict[Key, Usage] = {}
            for chunk in reversed(self.settled):
                out.update(chunk)
            out.update(self.live)
            self._flat = out
        return self._flat
