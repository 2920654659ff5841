"""The cyclic garbage collector paused over work that allocates much and makes no cycles.

A scan of a big store builds tens of thousands of small records (frozen dataclasses, tuples)
that hold no reference cycles: refcounting frees them. But every allocation counts towards
the cyclic GC's thresholds, and each of its full passes walks every live object, so a full
scan of 10,000 snapshots paid a third of its time in passes that freed nothing
(bench/containerd_store.py). Paused, and at the end of the pause what it made is moved to
the oldest generation, as if it had survived passes: a scan's records are long-lived (the
snapshot, the caches) or freed by refcounting, and the next young pass would only walk them
all once more to find that. The oldest generation is still collected in its own time
(CPython's full passes, rarer by design). Process-wide: another thread's cycles wait for
the end of the pause, which the scan's budget bounds, and then for a full pass.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            # freeze() moves every tracked object to the permanent generation and zeroes the
            # young count; unfreeze() hands them all to the oldest generation: no pass now.
            gc.freeze()
            gc.unfreeze()
            gc.enable()
