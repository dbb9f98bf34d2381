"""Dataset formats, table-driven, and problems reported by file:line."""

import json

import pytest

from core.data import dataset, tokenize
from core.errors import DatasetError
from tests.conftest import DEMO, write_jsonl

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
CASES = [
    ("messages", {"messages": CHAT}, CHAT),
    ("sharegpt", {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}, CHAT),
    ("alpaca", {"instruction": "hi", "input": "", "output": "hello"}, CHAT),
    ("prompt_completion", {"prompt": "hi", "completion": "hello"}, CHAT),
    ("prompt_completion", {"question": "hi", "answer": "hello"}, CHAT),
    ("text", {"text": "just some text"}, None),
]


@pytest.mark.parametrize("name,row,messages", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_each_format_is_detected_and_converted(tmp_path, name, row, messages):
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", [row, row]))
    assert ds.format == name
    assert len(ds.examples) == 2 and ds.duplicates == 1
    if messages:
        assert ds.examples[0].messages == messages
    else:
        assert ds.examples[0].text == "just some text"


def test_json_array_and_bom_are_read(tmp_path):
    path = tmp_path / "d.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"prompt": "a", "completion": "b"}]).encode())
    assert dataset.load(path).format == "prompt_completion"


def test_bad_rows_are_located_and_skipped(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"messages": CHAT},
        "{broken json",
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
    ])
    ds = dataset.load(path)
    assert len(ds.examples) == 1
    found = [str(p) for p in ds.problems]
    assert any(p.startswith("d.jsonl:2: broken JSON") for p in found)
    assert any(p.startswith("d.jsonl:3:") and "no assistant" in p for p in found)
    assert any(p.startswith("d.jsonl:4:") and "empty" in p for p in found)
    with pytest.raises(DatasetError, match=r"d.jsonl:2"):
        dataset.load(path, on_bad="stop")


@pytest.mark.parametrize("content,message", [
    (b"", "empty"),
    (b"\x00\x01\x02binary", "binary"),
    (b'{"foo": 1}\n', "no known schema"),
    (b'{"messages": [{"role": "user", "content": "q"}]}\n', "no usable rows"),
])
def test_unusable_files_are_one_sentence(tmp_path, content, message):
    path = tmp_path / "d.jsonl"
    path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(DatasetError, match=message):
        dataset.load(path)
    assert path.read_bytes() == before  # the source is never touched


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        dataset.load(tmp_path / "nope.jsonl")


def test_split_is_fixed_by_seed():
    ds = dataset.load(DEMO)
    a = ds.split(0.05, seed=1)[:2]
    b = ds.split(0.05, seed=1)[:2]
    c = ds.split(0.05, seed=2)[:2]
    assert [e.source for e in a[1]] == [e.source for e in b[1]] != [e.source for e in c[1]]
    assert len(a[0]) + len(a[1]) == len(ds.examples) and len(a[1]) == 10


def test_only_assistant_tokens_are_trained(default_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    ex = dataset.Example(messages=[{"role": "user", "content": "What is 2 plus 2?"},
                                   {"role": "assistant", "content": "Arr, four."}])
    enc = tokenize.encode(ex, tok, seq_len=512)
    trained = tok.decode([t for t, label in zip(enc.input_ids, enc.labels) if label != tokenize.IGNORE])
    assert trained.startswith("Arr, four.") and "<|im_end|>" in trained  # the end-of-turn token is learned
    assert "2 plus 2" not in trained and "system" not in trained
    all_tokens = tokenize.encode(ex, tok, seq_len=512, train_on="all")
    assert all(label != tokenize.IGNORE for label in all_tokens.labels)
    short = tokenize.encode(ex, tok, seq_len=16)
    assert short.truncated and len(short.input_ids) == 16


@pytest.mark.parametrize("keep_bytes", [dataset.KEEP_BYTES, 0], ids=["kept", "streamed"])
def test_a_held_out_row_s_copies_stay_out_of_training_so_validation_is_unseen(tmp_path, keep_bytes):
    """A dataset that repeats rows: every copy of a held-out row is left out of training with it; the rows and the
    seed that give the split are as before."""
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": f"q{i % 100}", "completion": f"a{i % 100}"} for i in range(300)]  # each row thrice
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = dataset.load(path, keep_bytes=keep_bytes)
    assert ds.duplicates == 200
    train, held, why = ds.split(None, seed=3)
    content = lambda e: json.dumps(e.messages)  # noqa: E731
    held_content = {content(e) for e in held}
    assert len(held) == 15 and not {content(e) for e in train} & held_content
    assert len(train) == 300 - 3 * len(held_content)  # each held-out row's two other copies went with it
    assert why.startswith("15 of 300 rows held out for validation (the rule for 300 rows); ")
    assert f"{300 - 15 - len(train)} copies of held-out rows left out of training too" in why


def test_a_few_rows_repeated_still_train_and_the_note_says_validation_reads_low(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i % 3}", "completion": "a"}) + "\n" for i in range(60)))
    train, held, why = dataset.load(path).split(None, seed=1)
    assert len(train) + len(held) == 60  # leaving the copies out would leave almost nothing to train on
    assert "the validation loss reads lower than on new rows" in why
