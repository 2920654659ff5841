"""Records made by the ten thousand (a scan's snapshot records, a bolt file's rows), without
their dataclass __init__'s cost."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TypeVar

try:  # the setter lives beside the C bolt walk (setup.py builds both where a compiler is found)
    from exporter.sources import _bolt as _native
except ImportError:
    _native = None
if os.environ.get("DSE_BOLT") == "python":  # as the bolt walk: to compare, or to rule C out
    _native = None

T = TypeVar("T")


def maker(cls: type[T]) -> Callable[..., T]:
    """A constructor of `cls`, a frozen slots dataclass whose __init__ only sets its fields,
    called with every field, positionally. In C it sets the slots as their descriptors do, at
    a fifth of the cost of __init__'s object.__setattr__ per field; without the C extension,
    it is `cls` itself."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = tuple(f.name for f in fields)
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if (
        not params.frozen
        or getattr(cls, "__slots__", None) != names
        or hasattr(cls, "__post_init__")
        or any(not f.init for f in fields)
    ):
        raise TypeError(f"{cls.__name__}: not a frozen slots dataclass whose __init__ only sets its fields")
    return cls if _native is None else _native.maker(cls, names)
