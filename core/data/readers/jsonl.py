"""JSON Lines: one JSON object per line, streamed, so a file of any size is never held whole."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from core.data.readers import textfile
from core.data.readers.reading import FileProblem, Problem, Reading
from core.errors import where

SUFFIXES = (".jsonl", ".jsonlines", ".ndjson")
HINT = "add one example per line"


def read(path: Path, name: str, reading: Reading) -> Iterator[tuple[str, object]]:
    rows = 0
    for n, line, bad in textfile.lines(path, name, reading, HINT):
        src = where(name, n)
        if bad:
            rows += 1
            yield src, Problem(src, bad)
            continue
        line = line.strip()
        if not line:
            continue
        rows += 1
        value, error = parse(line)
        if error and rows == 1 and line.startswith("["):
            # The common mix-up: a pretty-printed JSON array saved under a .jsonl name.
            raise FileProblem("this starts like a JSON array, not one JSON object per line; "
                              "rename the file to .json", line=n)
        if error:
            yield src, Problem(src, error)
        elif not isinstance(value, dict):
            yield src, Problem(src, f"is {kind(value)}, not an object with fields; write one {{...}} per line")
        else:
            yield src, value
    if not rows:
        raise FileProblem(f"the file holds only blank lines; {HINT}")


def parse(text: str) -> tuple[object, str | None]:
    """(value, None) or (None, what is wrong), for the JSON readers."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"broken JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, "broken JSON (nested too deeply to read)"


def kind(value: object) -> str:
    """'a JSON list', 'a JSON number', ... for messages about a value that should be an object."""
    names = {list: "a JSON list", str: "a JSON string", bool: "a JSON true/false", type(None): "JSON null"}
    return names.get(type(value), "a JSON number")
