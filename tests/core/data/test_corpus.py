"""The test corpus, one table each for the good files and the malformed ones (tests/corpus/make_corpus.py)."""

from pathlib import Path

import pytest

from core.data import dataset
from core.errors import DatasetError

CORPUS = Path(__file__).parents[2] / "corpus"
FIRST_Q = [{"role": "user", "content": "What is the capital of Peru?"}, {"role": "assistant", "content": "Lima."}]

# file, file type, schema, rows, the first example's messages (a list) or text (a str), a warning it gives
GOOD = [
    ("messages.jsonl", "jsonl", "messages", 3, FIRST_Q, None),
    ("messages_system_tools.jsonl", "jsonl", "messages", 2,  # OpenAI's function-calling form, kept
     [{"role": "system", "content": "You are terse."}, FIRST_Q[0],
      {"role": "assistant", "content": "", "tool_calls": [
          {"type": "function", "function": {"name": "capital", "arguments": {"country": "Peru"}}, "id": "1"}]},
      {"role": "tool", "content": "Lima", "tool_call_id": "1"}, FIRST_Q[1]], None),
    ("sharegpt.jsonl", "jsonl", "sharegpt", 3, FIRST_Q, None),
    ("alpaca.jsonl", "jsonl", "alpaca", 3, FIRST_Q, None),
    ("prompt_completion.jsonl", "jsonl", "prompt_completion", 3, FIRST_Q, None),
    ("question_answer.jsonl", "jsonl", "prompt_completion", 3, FIRST_Q, None),
    ("prompt_response.jsonl", "jsonl", "prompt_completion", 3, FIRST_Q, None),
    ("input_output.jsonl", "jsonl", "prompt_completion", 3, FIRST_Q, None),
    ("instruction_response.jsonl", "jsonl", "prompt_completion", 3, FIRST_Q, None),
    ("query_response.jsonl", "jsonl", "prompt_completion", 3, FIRST_Q, None),
    ("text.jsonl", "jsonl", "text", 3, "What is the capital of Peru? Lima.", None),
    ("preference.jsonl", "jsonl", "preference", 3, FIRST_Q, None),
    ("preference_question.jsonl", "jsonl", "preference", 3, FIRST_Q, None),
    ("preference_chat.parquet", "parquet", "preference", 3, FIRST_Q, None),
    ("preference_turns.jsonl", "jsonl", "preference", 3, FIRST_Q, None),
    ("preference_hh.jsonl", "jsonl", "preference", 3, FIRST_Q, None),
    ("rated.jsonl", "jsonl", "rated", 3, FIRST_Q, None),
    ("rated_turns.jsonl", "jsonl", "rated", 3, FIRST_Q, None),
    ("rated.csv", "csv", "rated", 3, FIRST_Q, None),
    ("scored.jsonl", "jsonl", "rated", 3, FIRST_Q, None),
    ("scored.csv", "csv", "rated", 3, FIRST_Q, None),
    ("bom_crlf.jsonl", "jsonl", "messages", 3, FIRST_Q, None),
    ("utf16.jsonl", "jsonl", "prompt_completion", 3, FIRST_Q, None),
    ("alpaca.json", "json", "alpaca", 3, FIRST_Q, None),
    ("sharegpt_wrapped.json", "json", "sharegpt", 3, FIRST_Q, None),
    ("prompt_completion.csv", "csv", "prompt_completion", 3, FIRST_Q, None),
    ("alpaca.csv", "csv", "alpaca", 3, FIRST_Q, None),
    ("messages.csv", "csv", "messages", 3, FIRST_Q, None),
    ("text_multiline.csv", "csv", "text", 2, "First line.\nSecond line.", None),
    ("semicolon.csv", "csv", "prompt_completion", 3, FIRST_Q, None),
    ("question_answer.tsv", "tsv", "prompt_completion", 3, FIRST_Q, None),
    ("cp1252.csv", "csv", "prompt_completion", 3,
     [{"role": "user", "content": "Qu'est-ce qu'un café crème ?"},
      {"role": "assistant", "content": "Un café avec de la crème, très apprécié à Paris."}],
     "cp1252.csv: decoded as cp1252 (a guess); save as UTF-8 to be sure"),
    ("messages.parquet", "parquet", "messages", 3, FIRST_Q, None),
    ("alpaca.parquet", "parquet", "alpaca", 3, FIRST_Q, None),
    ("text.parquet", "parquet", "text", 3, "What is the capital of Peru? Lima.", None),
    ("messages.arrow", "arrow", "messages", 3, FIRST_Q, None),  # the streaming format, as `datasets` writes it
    ("alpaca_file.arrow", "arrow", "alpaca", 3, FIRST_Q, None),  # the random-access file format
    ("saved_to_disk", "arrow", "prompt_completion", 3, FIRST_Q, None),  # its metadata files are not read as data
    ("essay.txt", "txt", "text", 1, "A title\n\nThe first paragraph,\nover two lines.\n\nThe second paragraph.", None),
    ("notes.md", "md", "text", 1, "# Notes\n\nSome *markdown* text.", None),
    ("folder", "csv+jsonl", "messages", 3, FIRST_Q,
     "left out LICENSE, README.md (the folder's documentation, not data)"),
]


@pytest.mark.parametrize("name,file_type,schema,rows,first,warning", GOOD, ids=[g[0] for g in GOOD])
def test_good_files(name, file_type, schema, rows, first, warning):
    ds = dataset.load(CORPUS / "good" / name)
    assert (ds.file_type, ds.format, len(ds.examples)) == (file_type, schema, rows)
    assert ds.confidence == 1.0 and ds.runner_up is None
    assert (ds.examples[0].messages if isinstance(first, list) else ds.examples[0].text) == first
    if schema == "preference":  # both sides whole conversations, whatever the shape
        assert ds.examples[0].rejected == [FIRST_Q[0], {"role": "assistant", "content": "I do not know."}]
    assert [e.desirable for e in ds.examples] == ([True, False, True] if schema == "rated" else [None] * rows)
    assert [w for w in ds.warnings if warning and w.startswith(warning)] == ([ds.warnings[0]] if warning else [])
    if name == "folder":  # hidden files are skipped; a file that is not data is listed, not fatal
        assert [str(p) for p in ds.problems] == ["notes.docx: '.docx' files are not read; use one of .arrow, .csv, "
                                                 ".json, .jsonl, .jsonlines, .md, .ndjson, .parquet, .tsv, .txt"]
        assert [e.source for e in ds.examples] == ["a.jsonl:1", "a.jsonl:2", "sub/b.csv:row 2"]
    else:
        assert ds.problems == [] and len(ds.warnings) == (1 if warning else 0)


# file, the error (nothing usable), or the problems and warnings of a file that still loads
BAD_FILES = [
    ("empty.jsonl", "empty.jsonl: the file is empty; add one example per line."),
    ("blank_lines.jsonl", "blank_lines.jsonl: the file holds only blank lines; add one example per line."),
    ("binary.jsonl", "binary.jsonl: this is a binary file, not text; export the data as .jsonl, .csv or .parquet."),
    ("zip.csv", "zip.csv: this is a ZIP archive (an .xlsx or .docx file?), not text; export the data as .jsonl, "
                ".csv or .parquet."),
    ("undecodable.txt", "undecodable.txt: this is not UTF-8 text and its encoding cannot be recognised with "
                        "confidence; save the file as UTF-8."),
    ("array.jsonl", "array.jsonl:1: this starts like a JSON array, not one JSON object per line; rename the file "
                    "to .json."),
    ("unknown_schema.jsonl", "unknown_schema.jsonl:1: no known schema (its columns: 'foo', 'bar'); rows need "),
    ("broken.json", "broken.json:3: broken JSON (Expecting ',' delimiter at column 18); fix the file."),
    ("two_lists.json", "two_lists.json: the JSON object holds 2 lists ('train', 'test'); write a JSON array"),
    ("header_only.csv", "header_only.csv: the file has a header row but no rows under it; add one example per "
                        "row under the header."),
    ("not_parquet.parquet", "not_parquet.parquet: this is not a readable Parquet file (Parquet magic bytes not "
                            "found in footer"),
    ("not_arrow.arrow", "not_arrow.arrow: this is not a readable Arrow file (Not an Arrow file); save it again with "
                        "the datasets library (save_to_disk) or use .parquet."),
    ("sheet.xlsx", "sheet.xlsx: '.xlsx' files are not read; save the sheet as .csv."),
]
BAD_ROWS = [
    ("rows.jsonl", [
        "rows.jsonl:2: broken JSON (Expecting property name enclosed in double quotes at column 2)",
        "rows.jsonl:3: no assistant message to learn from",
        "rows.jsonl:4: message 1 (user) is empty",
        "rows.jsonl:5: the conversation starts with the assistant; put a user message first",
        "rows.jsonl:6: message 2 (user) follows another user message; turns must alternate user and assistant",
        "rows.jsonl:7: message 2 has role 'bot'; use system, user or assistant",
        "rows.jsonl:8: message 2 (assistant) has no content",
        "rows.jsonl:9: is a JSON list, not an object with fields; write one {...} per line",
    ], []),
    ("mixed.jsonl", ["mixed.jsonl:4: looks like prompt/completion, but most rows are alpaca; make the rows alike"],
     ["mixed schemas: 3 rows look like alpaca, 1 like prompt/completion; using alpaca"]),
    ("cells.csv", ["cells.csv:row 3: 'completion' is empty",
                   "cells.csv:row 4: has 3 cells but the header has 2 columns; quote cells that contain ','"], []),
    ("bad_messages_cell.csv",
     ["bad_messages_cell.csv:row 3: 'messages' is text but not a JSON list of turns; write it as [{...}, ...]"], []),
]


@pytest.mark.parametrize("name,message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_unusable_files_are_one_located_sentence(name, message):
    path = CORPUS / "bad" / name
    before = path.read_bytes()
    with pytest.raises(DatasetError) as e:
        dataset.load(path)
    assert str(e.value).startswith(message) and str(e.value).endswith(".") and "\n" not in str(e.value)
    assert path.read_bytes() == before  # the source is never modified


@pytest.mark.parametrize("name,problems,warnings", BAD_ROWS, ids=[b[0] for b in BAD_ROWS])
def test_bad_rows_are_located_problems(name, problems, warnings):
    ds = dataset.load(CORPUS / "bad" / name)
    assert [str(p) for p in ds.problems] == problems and ds.warnings == warnings
    assert all(p.kind == "row" for p in ds.problems)
    with pytest.raises(DatasetError, match=f"^{problems[0][:len(name) + 2]}"):
        dataset.load(CORPUS / "bad" / name, on_bad="stop")


def test_duplicates_are_kept_counted_and_listed():
    ds = dataset.load(CORPUS / "bad" / "duplicates.jsonl")
    assert len(ds.examples) == 3 and ds.duplicates == 1
    assert ds.duplicate_rows == ["duplicates.jsonl:3 repeats duplicates.jsonl:1"]


def test_mixed_schemas_report_confidence_and_runner_up():
    ds = dataset.load(CORPUS / "bad" / "mixed.jsonl")
    assert (ds.format, ds.confidence, ds.runner_up) == ("alpaca", 0.75, "prompt_completion")
    assert ds.schema_reason == "3 of 4 rows look like Alpaca instruction/input/output"
    assert ds.summary()["warnings"] == ds.warnings
