"""Numbers about token lengths, for the planner, `data inspect` and the data page's chart."""

from __future__ import annotations

import math
import statistics

HISTOGRAM_BINS = 20


def length_stats(lengths: list[int], seq_len: int | None = None) -> dict:
    """count, min, median, p95, max and total (what the history stores), plus a histogram; with a
    sequence length also how many rows it would cut and how many tokens survive."""
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)
    stats = {"count": len(ordered), "min": ordered[0], "median": int(statistics.median(ordered)),
             "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1],
             "total": sum(ordered), "mean": round(sum(ordered) / len(ordered), 1),
             "histogram": histogram(ordered)}
    if seq_len:
        stats.update(seq_len=seq_len, truncated_rows=sum(1 for n in ordered if n > seq_len),
                     total_kept=sum(min(n, seq_len) for n in ordered))
    return stats


def histogram(lengths: list[int], bins: int = HISTOGRAM_BINS) -> dict:
    """Counts over equal bins with round edges from 0: bin i holds edges[i] <= n < edges[i+1]."""
    if not lengths:
        return {"edges": [], "counts": []}
    width = _round_width(max(lengths) / bins)
    n_bins = max(lengths) // width + 1
    counts = [0] * n_bins
    for n in lengths:
        counts[n // width] += 1
    return {"edges": [i * width for i in range(n_bins + 1)], "counts": counts}


def _round_width(raw: float) -> int:
    """The smallest of 1, 2, 5 × 10^k at least `raw`, so the edges read well on an axis."""
    if raw <= 1:
        return 1
    power = 10 ** math.floor(math.log10(raw))
    return next(int(step * power) for step in (1, 2, 5, 10) if step * power >= raw)


def histogram_lines(hist: dict, width: int = 40) -> list[str]:
    """The histogram as text bars, one line per non-empty bin, for the terminal."""
    counts, edges = hist.get("counts") or [], hist.get("edges") or []
    top = max(counts, default=0)
    label = len(str(edges[-1])) if edges else 1
    return [f"  {edges[i]:>{label}}–{edges[i + 1] - 1:<{label}} {'█' * max(1, round(width * c / top))} {c}"
            for i, c in enumerate(counts) if c]
