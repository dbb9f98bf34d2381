"""Column mappings, chat turn rules, encodings found mid-file, folders and the streamed digest."""

import csv
import hashlib
import json

import pytest

from core.data import dataset, scores
from core.errors import DatasetError
from tests.conftest import write_jsonl

CHAT = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *rows])
    return path


@pytest.mark.parametrize("mapping,header,row,expect", [
    ({"prompt": "question_text", "completion": "answer_text"}, ["question_text", "answer_text"], ["hi", "hello"],
     ("prompt_completion", CHAT)),
    ({"instruction": "task", "output": "result"}, ["task", "input", "result"], ["hi", "", "hello"], ("alpaca", CHAT)),
    ({"text": "body"}, ["title", "body"], ["t", "some text"], ("text", "some text")),
    ({"messages": "dialog"}, ["dialog"], [json.dumps(CHAT)], ("messages", CHAT)),
    ({"prompt": "q", "chosen": "good", "rejected": "bad"}, ["q", "good", "bad"], ["hi", "hello", "go away"],
     ("preference", CHAT)),  # 'prompt' is prompt/completion's field too: the fields named together decide
])
def test_a_mapping_overrides_detection(tmp_path, mapping, header, row, expect):
    ds = dataset.load(write_csv(tmp_path / "d.csv", header, [row]), mapping=mapping)
    first = ds.examples[0].messages if ds.examples[0].messages else ds.examples[0].text
    assert (ds.format, first) == expect
    assert ds.schema_reason.startswith("set by the column mapping")


def test_a_mapped_column_that_is_missing_is_located(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["q", "a"], [["hi", "hello"]])
    with pytest.raises(DatasetError, match=r"d.csv:row 2: has no column 'question' \(mapped to prompt\); its "
                                           r"columns are 'q', 'a'\); fix the file"):
        dataset.load(path, mapping={"prompt": "question", "completion": "a"})


@pytest.mark.parametrize("mapping,message", [
    ({"foo": "bar"}, "'foo' is not a field of any schema"),
    ({"prompt": "a", "output": "b"}, "belong to different schemas"),
    ({"text": ""}, "give the column's name"),
    ({}, "is not a mapping of fields to columns"),
])
def test_a_wrong_mapping_is_one_sentence(tmp_path, mapping, message):
    with pytest.raises(DatasetError, match=message):
        dataset.load(write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}]), mapping=mapping)


@pytest.mark.parametrize("row,problem", [
    ({"chosen": "Lima.", "rejected": "Quito."}, "'chosen' is an answer alone and the row has no prompt; add a "
                                                "'prompt' column, or give 'chosen' as the whole conversation"),
    ({"prompt": "hi", "chosen": " ", "rejected": "go away"}, "'chosen' is empty"),
    ({"chosen": [], "rejected": []}, "'chosen' is an empty list of turns"),
    ({"chosen": [{"role": "assistant", "content": "hello"}], "rejected": "x", "prompt": [{"role": "user"}]},
     "'chosen': message 1 (user) has no content"),
    ({"prompt": "hi", "chosen": "hello", "rejected": [{"role": "user", "content": "hi"}]},
     "'rejected': no assistant message to learn from"),
])
def test_a_bad_preference_pair_is_a_located_problem(tmp_path, row, problem):
    good = {"prompt": "hi", "chosen": "hello", "rejected": "go away"}
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", [good, row]))
    assert ds.examples[0].messages == CHAT and [str(p) for p in ds.problems] == [f"d.jsonl:2: {problem}"]
    assert ds.examples[0].rejected == [CHAT[0], {"role": "assistant", "content": "go away"}]


@pytest.mark.parametrize("label,problem", [
    (3, "'label' is 3; rate each answer true (one to learn from) or false (one to move away from), or read the "
        "column as a score (map 'score' to it)"),
    ("maybe", "'label' is 'maybe'; rate each answer true (one to learn from) or false (one to move away from)"),
    (None, "'label' is None; rate each answer true (one to learn from) or false (one to move away from)"),
])
def test_a_rated_answer_without_a_true_or_false_rating_is_a_located_problem(tmp_path, label, problem):
    rows = [{"prompt": "hi", "completion": "hello", "label": "FALSE"},
            {"prompt": "hi", "completion": "yo", "label": label}, {"messages": CHAT, "label": 1}]
    # A bad label is a problem, never a row read as plain prompt/completion: that would train on a bad answer.
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", rows))
    assert (ds.format, [str(p) for p in ds.problems]) == ("rated", [f"d.jsonl:2: {problem}"])
    assert [(e.messages, e.desirable) for e in ds.examples] == [(CHAT, False), (CHAT, True)]


def test_a_mapping_with_a_label_reads_rated_answers(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["q", "a", "thumbs_up"], [["hi", "hello", "true"]])
    ds = dataset.load(path, mapping={"prompt": "q", "completion": "a", "label": "thumbs_up"})
    assert (ds.format, ds.examples[0].messages, ds.examples[0].desirable) == ("rated", CHAT, True)


def test_a_label_column_of_stars_is_read_as_scores_when_mapped_to_score(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "hi", "completion": "hello", "label": n} for n in (5, 2)])
    with pytest.raises(DatasetError, match="map 'score' to it"):  # a number that is no rating: never a guess
        dataset.load(path)
    ds = dataset.load(path, mapping={"prompt": "prompt", "completion": "completion", "score": "label"})
    assert [(e.score, e.desirable) for e in ds.examples] == [(5.0, True), (2.0, False)]


@pytest.mark.parametrize("score", ["lots", True, None, "nan", float("inf")])
def test_a_scored_answer_without_a_number_is_a_located_problem(tmp_path, score):
    rows = [{"prompt": "hi", "completion": "hello", "score": 4}, {"prompt": "hi", "completion": "yo", "score": score},
            {"prompt": "hi", "completion": "hello", "score": "1.5"}]
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", rows))
    assert (ds.format, [str(p) for p in ds.problems]) == ("rated", [
        f"d.jsonl:2: 'score' is {score!r}; give each answer a number (stars, a grade), or rate it with a true/false "
        "'label'"])
    assert [(e.score, e.desirable) for e in ds.examples] == [(4.0, True), (1.5, False)]


@pytest.mark.parametrize("keep_bytes", [dataset.KEEP_BYTES, 0], ids=["kept", "read-again"])
def test_scored_answers_are_rated_above_the_middle_of_their_scores_or_above_the_line_given(tmp_path, keep_bytes):
    """HelpSteer's 0-4 grades under another name, through a mapping: the middle is 2, so 3 and 4 are good; a row's
    score wins over its label (a label column of stars is read as scores by mapping 'score' to it); a line given
    moves the ratings, and so the rows' digest (a token cache key)."""
    rows = [{"q": "hi", "a": f"answer {g}", "helpfulness": g} for g in (0, 2, 3, 4, 1)]
    rows.append({"q": "hi", "a": "labelled", "helpfulness": 4, "label": False})
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    mapping = {"prompt": "q", "completion": "a", "score": "helpfulness"}
    middle = dataset.load(path, mapping=mapping, keep_bytes=keep_bytes)
    assert middle.format == "rated" and middle.examples.in_memory == (keep_bytes > 0)
    assert [e.desirable for e in middle.examples] == [False, False, True, True, False, True]
    assert middle.scores == {"low": 0.0, "high": 4.0, "count": 6, "good_above": 2.0, "good": 3, "given": False}
    assert middle.summary()["scores"] == middle.scores
    assert scores.describe(middle.scores) == "scores from 0 to 4: above 2 good, the rest bad (the middle of the scores)"
    lower = dataset.load(path, mapping=mapping, keep_bytes=keep_bytes, good_above=1)
    assert [e.desirable for e in lower.examples] == [False, True, True, True, False, True]
    assert lower.scores["good"] == 4 and lower.scores["given"] and "(the line given)" in scores.describe(lower.scores)
    assert lower.examples.digest != middle.examples.digest
    labelled = dataset.load(write_jsonl(tmp_path / "l.jsonl", [{"prompt": "hi", "completion": "yo", "label": 0}]),
                            good_above=1)
    assert labelled.scores is None and "scores" not in labelled.summary()  # no scores: the line means nothing


def test_a_preference_pair_with_the_chosen_conversation_as_messages_too_is_a_pair(tmp_path):
    worse = [CHAT[0], {"role": "assistant", "content": "go away"}]
    row = {"prompt": "hi", "chosen": CHAT, "rejected": worse, "messages": CHAT, "score_chosen": 8.0}  # as H4 has it
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert (ds.format, ds.examples[0].messages, ds.examples[0].rejected) == ("preference", CHAT, worse)


def test_content_parts_and_numbers_are_text(tmp_path):
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]},
                          {"role": "assistant", "content": "hello"}]}
    assert dataset.load(write_jsonl(tmp_path / "a.jsonl", [parts])).examples[0].messages == CHAT
    ds = dataset.load(write_jsonl(tmp_path / "b.jsonl", [{"question": "2+2?", "answer": 4}]))
    assert ds.examples[0].messages[1] == {"role": "assistant", "content": "4"}
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, CHAT[1]]}
    with pytest.raises(DatasetError, match="message 1 \\(user\\) holds parts other than text"):
        dataset.load(write_jsonl(tmp_path / "c.jsonl", [image]))


def test_a_late_non_utf8_line_is_a_located_problem(tmp_path):
    # The encoding is chosen from the first 64 KiB, so a bad byte beyond it is reported for its own line.
    rows = [json.dumps({"text": f"row {i} " + "x" * 100}).encode() for i in range(1000)]
    rows.insert(900, b'{"text": "caf\xe9"}')
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    ds = dataset.load(path)
    assert len(ds.examples) == 1000
    assert [str(p) for p in ds.problems] == ["d.jsonl:901: not utf-8 text (byte 0xe9 at column 14); save the file "
                                             "as UTF-8"]


def test_digest_is_the_files_sha256_computed_while_streaming(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"messages": CHAT}] * 3)
    assert dataset.load(path).digest == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_a_folder_with_nothing_readable(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "b.jsonl").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"no usable rows \(first: a.pdf: '.pdf' files are not read"):
        dataset.load(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="the folder holds no files"):
        dataset.load(empty)


def test_long_text_is_cut_at_paragraphs(tmp_path):
    from core.data.readers import plain_text

    paragraph = ("word " * 150).strip()  # 749 characters
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(f"{i} {paragraph}" for i in range(20)) + "\n" + "line\n" * 2000)
    ds = dataset.load(path)
    texts = [e.text for e in ds.examples]
    assert all(len(t) <= plain_text.CHUNK_CHARS for t in texts)
    assert texts[0].startswith("0 word") and texts[1].startswith("5 word")  # whole paragraphs, 5 a chunk
    assert ds.examples[1].source == "book.txt:11"
    assert "".join(texts).count("line") == 2000  # a paragraph longer than a chunk is cut at line ends, not lost
