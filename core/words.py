"""Counts in words: "1 step", "3 steps". What people read in status lines should not say "1 steps"."""

from __future__ import annotations


def counted(n: int | float, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for exactly one (thousands separated: "12,000 rows"; "3 epochs", "2.5 epochs")."""
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
