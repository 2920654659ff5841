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
    """The reader for an engine's layout (the last registered one is the catch-all)."""
    for reader in READERS:
        if reader.applies(info):
            return reader
    return READERS[-1]


# Registration happens at import; the order here is the order readers are asked in.
from exporter.stores import overlay2  # noqa: E402, F401
