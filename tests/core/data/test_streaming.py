"""A big JSONL streams: rows arrive before the file is read through, and reading holds one line at a time."""

import tracemalloc

import pytest

from core.data import readers

LINE = b'{"text": "' + b"streamed " * 500 + b'"}\n'  # about 4.5 KB


@pytest.fixture(scope="module")
def big_jsonl(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    block = LINE * 1000
    with open(path, "wb") as f:
        for _ in range(11):  # about 50 MB
            f.write(block)
    return path


def test_the_first_row_arrives_before_the_file_is_read(big_jsonl):
    reading = readers.Reading()
    rows = readers.read(big_jsonl, reading)
    source, row = next(rows)
    assert source == "big.jsonl:1" and row["text"].startswith("streamed")
    assert reading.bytes_read < 1024 * 1024 < big_jsonl.stat().st_size // 40
    rows.close()


def test_reading_a_big_file_holds_one_line_at_a_time(big_jsonl):
    size = big_jsonl.stat().st_size
    tracemalloc.start()
    try:
        reading = readers.Reading()
        count = sum(1 for _ in readers.read(big_jsonl, reading))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 11000 and reading.bytes_read == size
    assert peak < size / 20  # a whole-file read would peak above the file's size


# --- A dataset too big to keep: its examples are read again, and behave exactly like kept ones. ---

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from core.data import dataset, split  # noqa: E402
from core.errors import DatasetError  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "corpus"
SOURCES = sorted(p for p in (CORPUS / "good").iterdir()) + [CORPUS / "bad" / n for n in
                                                           ("mixed.jsonl", "rows.jsonl", "duplicates.jsonl")]


def _same(kept, streamed):
    assert not streamed.examples.in_memory and kept.examples.in_memory
    assert list(streamed.examples) == list(kept.examples) and len(streamed.examples) == len(kept.examples)
    assert streamed.examples.digest == kept.examples.digest
    for field in ("format", "problems", "problem_count", "duplicates", "duplicate_rows", "warnings", "digest",
                  "confidence", "runner_up", "schema_reason"):
        assert getattr(streamed, field) == getattr(kept, field), field


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_a_streamed_dataset_reads_the_same_rows_as_a_kept_one(path):
    _same(dataset.load(path), dataset.load(path, keep_bytes=0))


def test_indexing_slicing_and_splitting_agree(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(300)))
    kept, streamed = dataset.load(path), dataset.load(path, keep_bytes=0)
    assert streamed.examples[7] == kept.examples[7] and streamed.examples[-1] == kept.examples[-1]
    assert streamed.examples[5:9] == kept.examples[5:9]
    a, b = kept.split(None, seed=3), streamed.split(None, seed=3)
    assert list(a[0]) == list(b[0]) and a[1] == b[1] and a[2] == b[2] == "15 of 300 rows held out for validation " \
        "(the rule for 300 rows)"
    assert a[0].digest == b[0].digest != kept.examples.digest  # a split is other rows: another cache entry
    assert len(a[0]) == 285 and not {e.source for e in a[0]} & {e.source for e in a[1]}


def test_a_file_changed_between_passes_is_refused(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(10)))
    ds = dataset.load(path, keep_bytes=0)
    path.write_text(path.read_text().replace("row 3", "row three"))
    with pytest.raises(DatasetError, match="changed while it was in use"):
        list(ds.examples)


def test_a_big_file_is_read_without_keeping_its_rows(big_jsonl):
    size = big_jsonl.stat().st_size
    fractions = []
    tracemalloc.start()
    try:
        ds = dataset.load(big_jsonl, keep_bytes=size // 10, on_progress=fractions.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ds.examples) == 11000 and ds.duplicates == 10999  # every line is the same text
    assert peak < size / 20  # the rows alone are the file's size
    assert fractions == sorted(fractions) and 0 < fractions[0] and fractions[-1] <= 1 and len(fractions) >= 2
    assert sum(1 for _ in ds.examples) == 11000


def test_problems_past_the_list_cap_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "LIST_CAP", 10)
    path = tmp_path / "d.jsonl"
    path.write_text("".join("{broken\n" if i % 2 else json.dumps({"text": "same"}) + "\n" for i in range(60)))
    ds = dataset.load(path)
    assert ds.problem_count == 30 and len(ds.problems) == 10 and str(ds.problems[0]).startswith("d.jsonl:2:")
    assert ds.duplicates == 29 and len(ds.duplicate_rows) == 10 and ds.summary()["problems"] == 30


@pytest.mark.parametrize("rows, fraction, held", [
    (5, None, 0), (19, None, 0), (20, None, 2), (150, None, 15), (199, None, 20), (200, None, 10),
    (1000, None, 50), (100_000, None, 256), (10, 0.1, 1), (3, 0.4, 1), (2, 0.45, 1), (1, 0.3, 0),
    (1000, 0.0, 0), (100_000, 0.2, 20_000),
])
def test_validation_size_rule(rows, fraction, held):
    assert split.validation_size(rows, fraction)[0] == held
