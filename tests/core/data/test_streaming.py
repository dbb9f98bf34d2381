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
