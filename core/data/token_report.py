"""What a dataset looks like to the model: token statistics per epoch and a marked preview of rows.

The preview is cut from the same encoding training uses, so the marked parts are exactly the tokens
the loss falls on (a token's text runs from its first character to the next token's first).
"""

from __future__ import annotations

from core.data.dataset import Example
from core.data.token_stats import length_stats
from core.data.tokenize import IGNORE, FullRow, encode_rows

PREVIEW_CHARS = 4000  # per row: enough to see a template's shape, short enough for a terminal
TRAINED_MARKS = ("«", "»")


def token_report(examples: list[Example], tokenizer, seq_len: int | None = None, train_on: str = "assistant",
                 preview_rows: int = 3) -> dict:
    """Length statistics, tokens and trained tokens per epoch (after truncation at seq_len when given),
    and the first rows as segments marked trained or not."""
    rows = encode_rows(examples, tokenizer, train_on)
    lengths = [len(r.input_ids) for r in rows]
    cut = seq_len or max(lengths, default=0)
    # The loss never falls on a row's first token (it has nothing before it), so neither does this count.
    trained = [sum(1 for t in r.labels[1:cut] if t != IGNORE) for r in rows]
    return {
        "lengths": lengths,
        "stats": length_stats(lengths, seq_len),
        "tokens_per_epoch": sum(min(n, cut) for n in lengths),
        "trained_tokens_per_epoch": sum(trained),
        "rows_without_trained_tokens": sum(1 for n in trained if n == 0),
        "preview": [{"source": e.source, "truncated": len(r.input_ids) > cut, "segments": segments(r, cut)}
                    for e, r in zip(examples[:preview_rows], rows[:preview_rows])],
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
