"""Finding what really failed under the wrappers requests, urllib3 and docker-py put around it."""

from __future__ import annotations

from collections.abc import Callable


def cause(
    exc: BaseException, wanted: Callable[[BaseException], bool], depth: int = 0
) -> BaseException | None:
    """The first exception that is `wanted`, from `exc` down through its args, __cause__ and
    __context__ (bounded: a chain is a few levels deep; a cycle is not followed forever)."""
    if wanted(exc):
        return exc
    if depth > 8:
        return None
    for inner in (*[a for a in exc.args if isinstance(a, BaseException)], exc.__cause__, exc.__context__):
        if inner is not None and inner is not exc:
            found = cause(inner, wanted, depth + 1)
            if found is not None:
                return found
    return None
