"""A .json document: an array of examples, or an object holding exactly one list of them.

A JSON document has to be parsed whole (the json module has no streaming parser), so this reader holds
the file's text once; big datasets belong in JSON Lines, which streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from core.data.readers import textfile
from core.data.readers.jsonl import kind
from core.data.readers.reading import FileProblem, Problem, Reading

SUFFIXES = (".json",)
HINT = "write a JSON array of examples"


def read(path: Path, name: str, reading: Reading) -> Iterator[tuple[str, object]]:
    parts = []
    for n, line, bad in textfile.lines(path, name, reading, HINT):
        if bad:
            raise FileProblem(bad, line=n)
        parts.append(line)
    text = "".join(parts)
    if not text.strip():
        raise FileProblem(f"the file holds only blank space; {HINT}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FileProblem(f"broken JSON ({e.msg} at column {e.colno}); fix the file", line=e.lineno) from None
    except RecursionError:
        raise FileProblem("broken JSON (nested too deeply to read); fix the file") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if len(lists) != 1:
            found = f"{len(lists)} lists ({', '.join(map(repr, lists))})" if lists else "no list"
            raise FileProblem(f"the JSON object holds {found}; {HINT}, or an object holding exactly one list")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise FileProblem(f"the file holds {kind(data)}; {HINT}")
    if not data:
        raise FileProblem(f"the JSON array is empty; {HINT}")
    for i, value in enumerate(data, 1):
        src = f"{name}#{i}"
        if isinstance(value, dict):
            yield src, value
        else:
            yield src, Problem(src, f"is {kind(value)}, not an object with fields")
