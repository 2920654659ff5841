"""--metrics.top-n: per-item families keep the biggest items and fold the rest into __other__;
and the memo that computes such figures once per snapshot rather than on every scrape."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

OTHER = "__other__"

T = TypeVar("T")
S = TypeVar("S")


def fold_top(items: Sequence[T], limit: int) -> tuple[list[T], list[T]]:
    """Split items (already sorted biggest first) into the kept and the folded; a negative
    limit keeps everything."""
    if limit < 0 or len(items) <= limit:
        return list(items), []
    return list(items[:limit]), list(items[limit:])


@dataclass(frozen=True, slots=True)
class Fold(Generic[T, S]):
    """A per-item family's items after --metrics.top-n.

    `len(kept) + folded` is the number of items. `other` is `combine(the folded items)` (the
    __other__ series, summed field by field where the figure is a sum), None when nothing was
    folded: for a summed field, the kept items' values plus other's are the total of all."""

    kept: list[T]  # the first `limit` items, in order: one series each
    folded: int  # how many were folded: series_folded
    other: S | None


def fold(items: Sequence[T], limit: int, combine: Callable[[list[T]], S]) -> Fold[T, S]:
    kept, rest = fold_top(items, limit)
    return Fold(kept, len(rest), combine(rest) if rest else None)


class Memo:
    """Figures derived from one snapshot, computed by the first scrape that sees it and kept
    until the snapshot is replaced: a scrape then costs O(top-n), not O(images). Holds the
    snapshot only weakly; anything that cannot be weakly referenced is not memoised."""

    def __init__(self) -> None:
        self._ref: weakref.ref[Any] | None = None
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, snap: Any, key: str, compute: Callable[[], T]) -> T:
        with self._lock:
            if self._ref is None or self._ref() is not snap:
                try:
                    self._ref = weakref.ref(snap)
                except TypeError:
                    return compute()
                self._values = {}
            if key in self._values:
                return self._values[key]
        # Computed outside the lock: two first scrapes may both compute; either result is right.
        value = compute()
        with self._lock:
            if self._ref is not None and self._ref() is snap:
                self._values[key] = value
        return value
