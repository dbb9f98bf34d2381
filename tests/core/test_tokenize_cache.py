"""Tokenized data is reused only for exactly the same work, and a damaged file is never trusted."""

import pytest

from core.data import token_cache, tokenize
from core.data.dataset import Example

ROWS = [Example(messages=[{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer {i}. " * (i % 5 + 1)}], source=f"d.jsonl:{i}")
        for i in range(1, 13)]


def test_second_call_reads_the_file(tok, tmp_path, monkeypatch):
    first = token_cache.encode_all_cached(ROWS, tok, 24, "assistant", tmp_path, digest="abc")
    assert first == tokenize.encode_all(ROWS, tok, 24, "assistant")
    assert len(first) < len(ROWS)  # some rows lose every trained token at 24, and the cache keeps that
    monkeypatch.setattr(token_cache, "iter_encoded", lambda *a: pytest.fail("tokenized again"))
    assert token_cache.encode_all_cached(ROWS, tok, 24, "assistant", tmp_path, digest="abc") == first


@pytest.mark.parametrize("change", ["seq_len", "train_on", "digest", "rows", "template"])
def test_any_change_in_the_inputs_misses(tok, tmp_path, change):
    import copy

    args = {"examples": ROWS, "tokenizer": tok, "seq_len": 24, "train_on": "assistant", "digest": "abc"}
    key = token_cache.cache_key(**args)
    if change == "seq_len":
        args["seq_len"] = 25
    elif change == "train_on":
        args["train_on"] = "all"
    elif change == "digest":
        args["digest"] = "abd"
    elif change == "rows":
        args["examples"] = ROWS[:-1]
    else:
        args["tokenizer"] = copy.deepcopy(tok)
        args["tokenizer"].chat_template = tok.chat_template.replace("helpful", "useful")
    assert token_cache.cache_key(**args) != key


def _entry(tmp_path):
    (folder,) = tmp_path.glob("tokens-*")
    return folder


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "missing", "other_key"])
def test_a_damaged_entry_is_ignored_and_rewritten(tok, tmp_path, damage):
    expected = list(token_cache.encode_all_cached(ROWS, tok, 64, "assistant", tmp_path))
    folder = _entry(tmp_path)
    good = {p.name: p.read_bytes() for p in folder.iterdir()}
    ids = folder / "input_ids.bin"
    if damage == "truncate":
        ids.write_bytes(good["input_ids.bin"][: len(good["input_ids.bin"]) // 2])
    elif damage == "garbage":
        (folder / "meta.json").write_bytes(b"\x93NUMPY not really" * 10)
    elif damage == "empty":
        ids.write_bytes(b"")
    elif damage == "missing":
        (folder / "labels.bin").unlink()
    else:  # a sound entry for other work, under this name
        token_cache.save(folder, "0" * 64, expected)
    assert token_cache.load(folder, token_cache.cache_key(ROWS, tok, 64, "assistant", "")) is None
    assert token_cache.encode_all_cached(ROWS, tok, 64, "assistant", tmp_path) == expected
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == good
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no temporary folders left beside it


def test_the_entry_holds_plain_arrays(tok, tmp_path):
    import json

    token_cache.encode_all_cached(ROWS, tok, 64, "all", tmp_path)
    folder = _entry(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{n}.bin" for n in token_cache.ARRAYS] + ["meta.json"])
    assert json.loads((folder / "meta.json").read_text())["rows"] == len(ROWS)


def test_rows_are_written_as_they_are_tokenized(tok, tmp_path, monkeypatch):
    """A big dataset is written a batch at a time: the buffers never hold more than FLUSH_TOKENS and a bit."""
    monkeypatch.setattr(token_cache, "FLUSH_TOKENS", 50)
    seen = []
    real_flush = token_cache._flush

    def flush(buffers, files):
        seen.append(len(buffers["input_ids"]))
        real_flush(buffers, files)

    monkeypatch.setattr(token_cache, "_flush", flush)
    stored = token_cache.encode_all_cached(ROWS * 5, tok, 64, "all", tmp_path)
    assert len(seen) > 5 and max(seen) < 50 + 64
    assert stored == tokenize.encode_all(ROWS * 5, tok, 64, "all")
    assert stored.total_tokens() == sum(stored.lengths()) == sum(len(r.input_ids) for r in stored)
