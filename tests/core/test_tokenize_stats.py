"""Token statistics and the marked preview: numbers a person can check by hand."""

from core.data import tokenize
from core.data.dataset import Example
from core.data.token_report import marked_text, segments, token_report
from core.data.token_stats import histogram, histogram_lines, length_stats


def test_length_stats_keeps_its_keys_and_adds_truncation():
    stats = length_stats([10, 20, 30, 40, 100], seq_len=32)
    assert {k: stats[k] for k in ("count", "min", "median", "p95", "max", "total")} == {
        "count": 5, "min": 10, "median": 30, "p95": 100, "max": 100, "total": 200}
    assert stats["truncated_rows"] == 2 and stats["total_kept"] == 10 + 20 + 30 + 32 + 32
    assert length_stats([]) == {"count": 0}
    assert "truncated_rows" not in length_stats([5])


def test_histogram_has_round_edges_and_counts_every_row():
    lengths = [0, 1, 9, 10, 55, 99, 100, 250]
    h = histogram(lengths)
    width = h["edges"][1]
    assert width in (1, 2, 5, 10, 20, 50) and h["edges"][0] == 0
    assert sum(h["counts"]) == len(lengths) and len(h["edges"]) == len(h["counts"]) + 1
    assert all(h["edges"][i] <= n < h["edges"][i + 1] for n in lengths for i in [n // width])
    assert len(histogram_lines(h)) == sum(1 for c in h["counts"] if c)


ROWS = [Example(messages=[{"role": "user", "content": "What is 2 plus 2?"},
                          {"role": "assistant", "content": "Arr, four."}], source="d.jsonl:1"),
        Example(messages=[{"role": "system", "content": "Short."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Ahoy."}, {"role": "user", "content": "Bye"},
                          {"role": "assistant", "content": "Fair winds."}], source="d.jsonl:2"),
        Example(text="Just text.", source="d.jsonl:3")]


def test_report_counts_tokens_and_trained_tokens_per_epoch(tok):
    report = token_report(ROWS, tok, seq_len=None)
    encoded = [tokenize.encode(e, tok, 10**9) for e in ROWS]
    assert list(report["lengths"]) == [len(e.input_ids) for e in encoded]
    assert report["tokens_per_epoch"] == sum(report["lengths"])
    assert report["trained_tokens_per_epoch"] == sum(
        sum(1 for t in e.labels[1:] if t != tokenize.IGNORE) for e in encoded)
    cut = token_report(ROWS, tok, seq_len=30)
    assert cut["stats"]["truncated_rows"] == sum(1 for n in report["lengths"] if n > 30)
    assert cut["tokens_per_epoch"] == sum(min(n, 30) for n in report["lengths"])


def test_preview_segments_rebuild_the_rendered_text_and_mark_what_is_trained(tok):
    preview = token_report(ROWS, tok)["preview"]
    first = preview[0]
    assert "".join(s["text"] for s in first["segments"]) == tokenize.render_chat(tok, ROWS[0].messages)
    trained = "".join(s["text"] for s in first["segments"] if s["trained"])
    assert trained.startswith("Arr, four.") and "<|im_end|>" in trained and "2 plus 2" not in trained
    assert [s["text"] for s in preview[1]["segments"] if s["trained"]] == ["Ahoy.<|im_end|>\n",
                                                                           "Fair winds.<|im_end|>\n"]
    assert preview[2]["segments"] == [{"text": "Just text.", "trained": True}]
    assert "«Arr, four.<|im_end|>\n»" in marked_text(first["segments"])


def test_preview_shows_where_the_sequence_length_cuts(tok):
    row = tokenize.encode_rows(ROWS[:1], tok)[0]
    parts = segments(row, seq_len=len(row.input_ids) - 3)
    assert parts[-1]["cut"] and parts[-1]["text"].endswith("<|im_end|>\n")
    assert "".join(p["text"] for p in parts) == row.text
    assert "cut here" in marked_text(parts)
