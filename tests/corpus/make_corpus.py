"""Writes the dataset test corpus: good/ holds one small file per file type and schema, bad/ the malformed ones.

The files are kept in git; this script is how they were made (the binary and odd-encoding ones cannot be
written by hand) and remakes them all: `python tests/corpus/make_corpus.py`. What each file should load
as is the table in tests/core/data/test_corpus.py.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

HERE = Path(__file__).parent
Q = ["What is the capital of Peru?", "How many legs has a spider?", "What colour is the sky?"]
A = ["Lima.", "Eight.", "Blue, on a clear day."]
CHAT = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in zip(Q, A)]


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


def table(header, rows, delimiter=",", newline="\n") -> str:
    out = io.StringIO()
    w = csv.writer(out, delimiter=delimiter, lineterminator=newline)
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)  # several row groups, as the reader batches


def arrow(path: Path, rows: list[dict], stream: bool = True) -> None:
    """An Arrow file: the streaming format, as `datasets` writes it, or the random-access file format."""
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink:
        with (pa.ipc.new_stream if stream else pa.ipc.new_file)(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=2):  # several batches, as the reader takes them
                writer.write_batch(batch)


def arrow_files(good: Path, bad: Path) -> None:
    """The Arrow files, in both folders."""
    arrow(good / "messages.arrow", [{"messages": c} for c in CHAT])
    arrow(good / "alpaca_file.arrow", [{"instruction": q, "input": "", "output": a} for q, a in zip(Q, A)], False)
    saved = good / "saved_to_disk"  # what datasets' save_to_disk leaves: the data, and metadata that is not data
    saved.mkdir(exist_ok=True)
    arrow(saved / "data-00000-of-00001.arrow", [{"prompt": q, "completion": a} for q, a in zip(Q, A)])
    (saved / "dataset_info.json").write_text(json.dumps({"features": {"prompt": {"dtype": "string"}}}, indent=2))
    (saved / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (bad / "not_arrow.arrow").write_text('{"text": "hello"}\n')


def good(d: Path) -> None:
    sharegpt = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in zip(Q, A)]
    alpaca = [{"instruction": q, "input": "", "output": a} for q, a in zip(Q, A)]
    (d / "messages.jsonl").write_bytes(jsonl({"messages": c} for c in CHAT))
    (d / "messages_system_tools.jsonl").write_bytes(jsonl([{"messages": [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": Q[0]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "capital", "arguments": '{"country": "Peru"}'}}]},
        {"role": "tool", "tool_call_id": "1", "content": "Lima"}, {"role": "assistant", "content": A[0]}],
        "tools": [{"type": "function", "function": {"name": "capital", "parameters": {"type": "object"}}}]},
        {"messages": CHAT[1]}]))
    (d / "sharegpt.jsonl").write_bytes(jsonl(sharegpt))
    (d / "alpaca.jsonl").write_bytes(jsonl(alpaca))
    (d / "prompt_completion.jsonl").write_bytes(jsonl({"prompt": q, "completion": a} for q, a in zip(Q, A)))
    for p, c in [("question", "answer"), ("prompt", "response"), ("input", "output"), ("instruction", "response"),
                 ("query", "response")]:
        (d / f"{p}_{c}.jsonl").write_bytes(jsonl({p: q, c: a} for q, a in zip(Q, A)))
    (d / "text.jsonl").write_bytes(jsonl({"text": f"{q} {a}"} for q, a in zip(Q, A)))
    preference(d)
    rated(d)
    (d / "bom_crlf.jsonl").write_bytes(b"\xef\xbb\xbf" + jsonl({"messages": c} for c in CHAT).replace(b"\n", b"\r\n"))
    (d / "utf16.jsonl").write_bytes(jsonl({"prompt": q, "completion": a} for q, a in zip(Q, A)).decode()
                                    .encode("utf-16"))
    (d / "alpaca.json").write_text(json.dumps(alpaca, indent=2))
    (d / "sharegpt_wrapped.json").write_text(json.dumps({"version": 2, "data": sharegpt}, indent=2))
    (d / "prompt_completion.csv").write_text(table(["prompt", "completion"], zip(Q, A)))
    (d / "alpaca.csv").write_bytes(table(["instruction", "input", "output"], [[q, "", a] for q, a in zip(Q, A)],
                                         newline="\r\n").encode("utf-8-sig"))  # what Excel writes
    (d / "messages.csv").write_text(table(["id", "messages"], [[i, json.dumps(c)] for i, c in enumerate(CHAT)]))
    (d / "text_multiline.csv").write_text(table(["title", "text"], [["one", "First line.\nSecond line."],
                                                                    ["two", "Another, with a comma."]]))
    (d / "semicolon.csv").write_text(table(["question", "answer"], zip(Q, A), delimiter=";"))
    (d / "question_answer.tsv").write_text(table(["question", "answer"], zip(Q, A), delimiter="\t"))
    (d / "cp1252.csv").write_bytes(table(["prompt", "completion"], [
        ["Qu'est-ce qu'un café crème ?", "Un café avec de la crème, très apprécié à Paris."],
        ["Où se trouve la tour Eiffel ?", "À Paris, près de la Seine — on la voit de loin."],
        ["Quel est le plat préféré des élèves ?", "Les crêpes, évidemment, avec du sucre."]]).encode("cp1252"))
    parquet(d / "messages.parquet", [{"messages": c} for c in CHAT])
    parquet(d / "alpaca.parquet", alpaca)
    parquet(d / "text.parquet", [{"text": f"{q} {a}", "id": i} for i, (q, a) in enumerate(zip(Q, A))])
    (d / "essay.txt").write_text("A title\n\nThe first paragraph,\nover two lines.\n\n\nThe second paragraph.\n")
    (d / "notes.md").write_text("# Notes\n\nSome *markdown* text.\n")
    folder = d / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(jsonl({"messages": c} for c in CHAT[:2]))
    (folder / "sub" / "b.csv").write_text(table(["messages"], [[json.dumps(CHAT[2])]]))
    (folder / ".hidden.jsonl").write_text("not read\n")
    (folder / "notes.docx").write_bytes(b"PK\x03\x04 not read either")
    (folder / "README.md").write_text("# Capitals\n\nA question per capital.\n")  # documentation, not data
    (folder / "LICENSE").write_text("CC0 1.0\n")


def preference(d: Path) -> None:
    """Preference pairs in the four shapes the hub has them (core/data/formats/preference.py)."""
    worse = {"role": "assistant", "content": "I do not know."}
    (d / "preference.jsonl").write_bytes(jsonl({"prompt": q, "chosen": a, "rejected": worse["content"]}
                                               for q, a in zip(Q, A)))
    (d / "preference_question.jsonl").write_bytes(jsonl({"question": q, "chosen": a, "rejected": worse["content"]}
                                                        for q, a in zip(Q, A)))  # as orca_dpo_pairs
    parquet(d / "preference_chat.parquet", [{"chosen": c, "rejected": [c[0], worse]} for c in CHAT])  # UltraFeedback
    (d / "preference_turns.jsonl").write_bytes(jsonl({"prompt": c[:1], "chosen": c[1:], "rejected": [worse]}
                                                     for c in CHAT))  # TRL's conversational form
    (d / "preference_hh.jsonl").write_bytes(jsonl({"chosen": f"\n\nHuman: {q}\n\nAssistant: {a}",
                                                   "rejected": f"\n\nHuman: {q}\n\nAssistant: {worse['content']}"}
                                                  for q, a in zip(Q, A)))  # Anthropic HH


def rated(d: Path) -> None:
    """Rated answers (core/data/formats/rated.py): the first and last rated good, the middle one bad."""
    labels = [True, False, True]
    (d / "rated.jsonl").write_bytes(jsonl({"prompt": q, "completion": a, "label": g} for q, a, g in zip(Q, A, labels)))
    (d / "rated_turns.jsonl").write_bytes(jsonl({"prompt": c[:1], "completion": c[1:], "label": g}
                                                for c, g in zip(CHAT, labels)))  # TRL's conversational form
    (d / "rated.csv").write_text(table(["question", "answer", "label"], [[q, a, str(g)] for q, a, g in
                                                                        zip(Q, A, labels)]))  # "True"/"False" text
    # Scored instead of labelled (stars; the line falls in the middle, 3): 5 and 4 good, 1 bad, as the labels above.
    stars = [5, 1, 4]
    (d / "scored.jsonl").write_bytes(jsonl({"prompt": q, "completion": a, "score": n} for q, a, n in zip(Q, A, stars)))
    (d / "scored.csv").write_text(table(["question", "answer", "score"], [[q, a, str(n)] for q, a, n in
                                                                         zip(Q, A, stars)]))


def bad(d: Path) -> None:
    (d / "empty.jsonl").write_bytes(b"")
    (d / "blank_lines.jsonl").write_text("\n  \n\n")
    (d / "binary.jsonl").write_bytes(b"\x00\x01\x02\x03binary\x00")
    (d / "zip.csv").write_bytes(b"PK\x03\x04\x14\x00\x06\x00")
    (d / "undecodable.txt").write_bytes(bytes(range(128, 256)) * 4)
    (d / "array.jsonl").write_text(json.dumps([{"messages": c} for c in CHAT], indent=2))
    (d / "unknown_schema.jsonl").write_bytes(jsonl([{"foo": 1, "bar": 2}]))
    (d / "broken.json").write_text('[\n  {"prompt": "a", "completion": "b"},\n  {"prompt": "c" "completion": "d"}\n]\n')
    (d / "two_lists.json").write_text(json.dumps({"train": [{"text": "a"}], "test": [{"text": "b"}]}))
    (d / "header_only.csv").write_text("prompt,completion\n")
    (d / "not_parquet.parquet").write_text('{"text": "hello"}\n')
    (d / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (d / "rows.jsonl").write_bytes(jsonl([{"messages": CHAT[0]}]) + b"{broken json\n" + jsonl([
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                      {"role": "assistant", "content": "c"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]},
        ["not", "an", "object"]]))
    (d / "mixed.jsonl").write_bytes(jsonl([{"instruction": q, "output": a} for q, a in zip(Q, A)]
                                          + [{"prompt": Q[0], "completion": A[0]}]))
    (d / "duplicates.jsonl").write_bytes(jsonl([{"text": "same"}, {"text": "other"}, {"text": "same"}]))
    (d / "cells.csv").write_text(table(["prompt", "completion"], [[Q[0], A[0]], [Q[1], ""], [Q[2], A[2], "extra"]])
                                 + ",\n")  # a row of empty cells, skipped
    (d / "bad_messages_cell.csv").write_text(table(["messages"], [[json.dumps(CHAT[0])], ["[not json"]]))


if __name__ == "__main__":
    for name, make in (("good", good), ("bad", bad)):
        shutil.rmtree(HERE / name, ignore_errors=True)
        (HERE / name).mkdir()
        make(HERE / name)
    arrow_files(HERE / "good", HERE / "bad")
    print(f"wrote {sum(1 for p in HERE.rglob('*') if p.is_file())} files under {HERE}")
