"""What a dataset looks like to the model: token statistics per epoch and a marked preview of rows.

The preview is cut from the same encoding training uses, so the marked parts are exactly the tokens
the loss falls on (a token's text runs from its first character to the next token's first).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable

from core.data.example import Example
from core.data.token_stats import length_stats
from core.data.tokenize import IGNORE, FullRow, iter_rows

PREVIEW_CHARS = 4000  # per row: enough to see a template's shape, short enough for a terminal
TRAINED_MARKS = ("«", "»")
LISTED = 20  # rows longer than the context listed by name


def token_report(examples: Iterable[Example], tokenizer, seq_len: int | None = None, train_on: str = "assistant",
                 preview_rows: int = 3, on_progress: Callable[[int], None] | None = None,
                 context: int | None = None) -> dict:
    """Length statistics, tokens and trained tokens per epoch (after truncation at seq_len when given),
    the first rows as segments marked trained or not, and the rows longer than `context` tokens (the
    model's context: "longer_than_context" counts them, "too_long" lists the first LISTED as (source,
    tokens)). Streams: only the first rows are kept whole."""
    lengths = array("l")  # 8 bytes a row, not a Python int object each: a big dataset has millions of rows
    too_long: list[tuple[str, int]] = []
    long_count = 0
    trained = array("l")  # per row, within seq_len
    preview: list[tuple[Example, FullRow]] = []
    for example, row in iter_rows(examples, tokenizer, train_on, on_progress):
        lengths.append(len(row.input_ids))
        if context and len(row.input_ids) > context:
            long_count += 1
            if len(too_long) < LISTED:
                too_long.append((example.source, len(row.input_ids)))
        # The loss never falls on a row's first token (it has nothing before it), so neither does this count.
        trained.append(sum(1 for t in row.labels[1:seq_len or None] if t != IGNORE))
        if len(preview) < preview_rows:
            preview.append((example, row))
    cut = seq_len or max(lengths, default=0)
    return {
        "lengths": lengths,
        "stats": length_stats(lengths, seq_len),
        "tokens_per_epoch": sum(min(n, cut) for n in lengths),
        "trained_tokens_per_epoch": sum(trained),
        "rows_without_trained_tokens": sum(1 for n in trained if n == 0),
        "preview": [{"source": e.source, "truncated": len(r.input_ids) > cut, "segments": segments(r, cut)}
                    for e, r in preview],
        "longer_than_context": long_count,
        "too_long": too_long,
    }


def segments(row: FullRow, seq_len: int | None = None) -> list[dict]:
    """The row's text in runs of {"text", "trained"}; text past seq_len comes last with "cut": True."""
    if row.offsets is None:  # no offsets: only text rows get here, and every token of those is trained
        return [{"text": row.text[:PREVIEW_CHARS], "trained": True}]
    n = len(row.offsets)
    keep = min(n, seq_len or n)
    starts = [a for a, _ in row.offsets]
    out: list[dict] = []
    at = 0
    for j in range(keep):
        end = starts[j + 1] if j + 1 < n else len(row.text)
        if end <= at:  # tokens sharing characters (one character split over several tokens)
            continue
        trained = row.labels[j] != IGNORE
        if out and out[-1]["trained"] == trained:
            out[-1]["text"] += row.text[at:end]
        else:
            out.append({"text": row.text[at:end], "trained": trained})
        at = end
    if at < len(row.text):
        out.append({"text": row.text[at:], "trained": False, "cut": True})
    return _clip(out)


def marked_text(parts: list[dict]) -> str:
    """Plain text with trained parts between « », and a line where truncation cuts the row."""
    opened, closed = TRAINED_MARKS
    return "".join(("\n✂ cut here by the sequence length:\n" + p["text"]) if p.get("cut")
                   else f"{opened}{p['text']}{closed}" if p["trained"] else p["text"] for p in parts)


def _clip(parts: list[dict]) -> list[dict]:
    left, out = PREVIEW_CHARS, []
    for p in parts:
        if left <= 0:
            break
        out.append(dict(p, text=p["text"][:left]))
        left -= len(p["text"])
    return out
