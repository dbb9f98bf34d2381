"""Counts and durations in words: "1 step", "3 steps", "12 min". What people read in status lines should not
say "1 steps"; what they type as a duration ("45m", "1h30m") is read here too."""

from __future__ import annotations

import re

NUMBER = r"\d+(?:\.\d+)?"
DURATION = re.compile(rf"^(?:(?P<h>{NUMBER})h(?:ours?|rs?)?)?(?:(?P<m>{NUMBER})m(?:in(?:ute)?s?)?)?"
                      rf"(?:(?P<s>{NUMBER})s(?:ec(?:ond)?s?)?)?$")


def counted(n: int | float, noun: str, plural: str | None = None) -> str:
    """`n` and the noun, singular for exactly one (thousands separated: "12,000 rows"; "3 epochs", "2.5 epochs")."""
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def short_count(n: int) -> str:
    """A parameter count at a glance: '8.0B', '135M', '46K'; '' when unknown."""
    if not n:
        return ""
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def duration(seconds: float | None) -> str:
    """'4.5 s', '45 s', '12 min', '3.5 h', '4 days' for estimates, ETAs and the history; '—' when unknown;
    'under 0.1 s' for a tiny model's step rather than '0.0 s'."""
    if seconds is None:
        return "—"
    if seconds < 0.05:
        return "under 0.1 s"
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"
    return f"{seconds / 86400:.0f} days"


def seconds_of(text: str) -> float | None:
    """A duration as people type it, in seconds: '45m', '2h', '1h30m', '1.5h', '90s', '45 min', '2 hours'; a bare
    number is minutes. None when it is not one (or not above zero)."""
    text = text.strip().lower().replace(" ", "")
    if re.fullmatch(NUMBER, text):
        text += "m"
    m = DURATION.match(text)  # (an empty text matches, as zero seconds)
    if m is None:
        return None
    seconds = float(m["h"] or 0) * 3600 + float(m["m"] or 0) * 60 + float(m["s"] or 0)
    return seconds or None


def when(timestamp: float | None) -> str:
    """'2026-03-01 09:15', local time, for the history's lists; '—' when unknown."""
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp)) if timestamp else "—"
