"""Byte counts for people: SI as the Docker CLI prints them, binary as Desktop and `ls -lh`."""

from __future__ import annotations


def scaled(n: float | None, base: int, units: tuple[str, ...], fmt: str) -> str:
    """`n` in the largest of `units` (each `base` times the last) that keeps it at least 1;
    whole bytes as such."""
    if n is None:
        return "?"
    i = 0
    while abs(n) >= base and i < len(units) - 1:
        n /= base
        i += 1
    return fmt.format(n, units[i]) if i else f"{n:.0f}{units[0]}"
