"""Tokenized data is reused only for exactly the same work, and a damaged file is never trusted."""

import pytest

from core.data import token_cache, tokenize
from core.data.dataset import Example

ROWS = [Example(messages=[{"role": "user", "content": f"Question {i}?"},
                          {"role": "assistant", "content": f"Answer {i}. " * (i % 5 + 1)}], source=f"d.jsonl:{i}")
        for i in range(1, 13)]


@pytest.fixture(scope="module")
def tok(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


def test_second_call_reads_the_file(tok, tmp_path, monkeypatch):
    first = token_cache.encode_all_cached(ROWS, tok, 24, "assistant", tmp_path, digest="abc")
    assert first == tokenize.encode_all(ROWS, tok, 24, "assistant")
    assert len(first) < len(ROWS)  # some rows lose every trained token at 24, and the cache keeps that
    monkeypatch.setattr(token_cache, "encode_all", lambda *a: pytest.fail("tokenized again"))
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


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "other_key"])
def test_a_damaged_file_is_ignored_and_rewritten(tok, tmp_path, damage):
    expected = token_cache.encode_all_cached(ROWS, tok, 64, "assistant", tmp_path)
    (path,) = tmp_path.glob("tokens-*.npz")
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x93NUMPY not really" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a sound file for other work, under this name
        token_cache.save(path, "0" * 64, ROWS, expected)
    assert token_cache.load(path, token_cache.cache_key(ROWS, tok, 64, "assistant", ""), ROWS) is None
    assert token_cache.encode_all_cached(ROWS, tok, 64, "assistant", tmp_path) == expected
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left beside it


def test_the_file_holds_no_pickle(tok, tmp_path):
    import numpy as np

    token_cache.encode_all_cached(ROWS, tok, 64, "all", tmp_path)
    (path,) = tmp_path.glob("tokens-*.npz")
    with np.load(path, allow_pickle=False) as f:
        assert {f[name].dtype.kind for name in f.files} <= {"i", "b", "U"}
