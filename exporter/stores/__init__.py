"""Store readers: one module per storage layout, behind one protocol (inventory.StoreReader).

A reader registers itself here, as node_exporter's collectors do; `reader_for` picks the first
registered reader that applies to an engine. A new layout is one new module, imported below.
"""

from __future__ import annotations

from exporter.model import EngineInfo
from exporter.stores.inventory import StoreReader

READERS: list[type[StoreReader]] = []


def register(reader: type[StoreReader]) -> type[StoreReader]:
    """Class decorator: make a reader known. Readers registered first are asked first."""
    READERS.append(reader)
    return reader


def reader_for(info: EngineInfo) -> type[StoreReader]:
    """The reader for an engine's layout: the first that applies, else the catch-all."""
    for reader in READERS:
        if reader.applies(info) and reader.name != CATCH_ALL:
            return reader
    return next(r for r in READERS if r.name == CATCH_ALL)


CATCH_ALL = "overlay2"  # reads any Docker root (attributed on overlay2 only)


# Registration happens at import; the order here is the order readers are asked in (the
# catch-all, overlay2, last; containerd imports it for Docker's own dirs, so it registers first).
from exporter.stores import overlay2  # noqa: E402, F401, I001
from exporter.stores import containerd  # noqa: E402, F401
