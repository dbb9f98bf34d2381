"""Property-based: whatever bytes a file holds, loading it gives a Dataset or a DatasetError, nothing else;
and rows we write in JSONL, JSON, CSV or TSV come back as they were."""

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data import dataset
from core.errors import DatasetError

SUFFIXES = [".jsonl", ".json", ".csv", ".tsv", ".txt", ".parquet"]
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Cell text as people have it: any characters but NUL (which makes a file binary), not blank.
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1,
               max_size=40).filter(str.strip)
ROWS = st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=8)
# Bytes that look a little like data, so the readers get past their first checks more often than noise would.
NEAR_DATA = st.lists(st.sampled_from([b"{", b"}", b"[", b"]", b'"text"', b'"prompt"', b":", b",", b'"', b"\n",
                                      b"\r\n", b"prompt,completion\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\xe9", b" ",
                                      b"a", b"\t", b"null", b"1"]), max_size=40).map(b"".join)


def load_bytes(data: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"d{suffix}"
        path.write_bytes(data)
        try:
            return dataset.load(path)
        except DatasetError as e:
            assert str(e) and "\n" not in str(e) and "Traceback" not in str(e)
            return None


@FAST
@given(st.one_of(st.binary(max_size=300), NEAR_DATA), st.sampled_from(SUFFIXES))
def test_any_bytes_give_a_dataset_or_a_dataset_error(data, suffix):
    ds = load_bytes(data, suffix)
    if ds is not None:
        assert ds.examples and all(e.messages or e.text for e in ds.examples)


@FAST
@given(st.text(max_size=300), st.sampled_from(SUFFIXES[:5]))
def test_any_text_gives_a_dataset_or_a_dataset_error(text, suffix):
    load_bytes(text.encode("utf-8", "surrogatepass"), suffix)


def expected(rows):
    return [[{"role": "user", "content": p}, {"role": "assistant", "content": c}] for p, c in rows]


@FAST
@given(ROWS, st.booleans())
def test_jsonl_and_json_rows_round_trip(rows, ascii_only):
    objects = [{"prompt": p, "completion": c} for p, c in rows]
    jsonl = "".join(json.dumps(o, ensure_ascii=ascii_only) + "\n" for o in objects).encode()
    for data, suffix in ((jsonl, ".jsonl"), (json.dumps(objects, ensure_ascii=ascii_only).encode(), ".json")):
        ds = load_bytes(data, suffix)
        assert [e.messages for e in ds.examples] == expected(rows) and not ds.problems


@FAST
# csv's minimal quoting leaves a lone "\r" unquoted when lines end in "\n" alone, which no reader can undo;
# spreadsheets quote such cells, and so do these dialects.
@given(ROWS, st.sampled_from([(",", ".csv", "\r\n", csv.QUOTE_MINIMAL), (",", ".csv", "\n", csv.QUOTE_ALL),
                              (";", ".csv", "\r\n", csv.QUOTE_MINIMAL), ("\t", ".tsv", "\n", csv.QUOTE_ALL)]),
       st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_csv_rows_round_trip(rows, dialect, encoding):
    delimiter, suffix, newline, quoting = dialect
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator=newline, quoting=quoting)
    writer.writerows([("question", "answer"), *rows])
    ds = load_bytes(out.getvalue().encode(encoding), suffix)
    assert [e.messages for e in ds.examples] == expected(rows) and not ds.problems
    assert [e.source for e in ds.examples] == [f"d{suffix}:row {i}" for i in range(2, len(rows) + 2)]
