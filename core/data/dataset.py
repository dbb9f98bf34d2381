"""Read a dataset file (or folder) into Examples, with every problem located by file:line.

The source is only ever read. A bad row becomes a Problem; with on_bad="stop" the first one is an
error, with "skip" (the default) it is counted and listed, and only a dataset with nothing usable
left is an error.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.data import formats
from core.errors import DatasetError, where

SUFFIXES = (".jsonl", ".json")


@dataclass
class Example:
    messages: list[dict] | None = None  # chat turns, rendered through the model's chat template
    text: str | None = None  # raw text, every token trained
    source: str = ""  # file:line, for messages about this example


@dataclass
class Problem:
    source: str  # file:line
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass
class Dataset:
    path: Path
    format: str
    examples: list[Example]
    problems: list[Problem] = field(default_factory=list)
    digest: str = ""
    duplicates: int = 0

    def split(self, eval_fraction: float, seed: int, max_eval: int = 64) -> tuple[list[Example], list[Example]]:
        """A fixed-seed train/validation split; tiny datasets get no validation set."""
        n_eval = min(max_eval, int(len(self.examples) * eval_fraction))
        if len(self.examples) < 20 or n_eval < 1:
            return list(self.examples), []
        order = list(range(len(self.examples)))
        random.Random(seed).shuffle(order)
        held = set(order[:n_eval])
        train = [e for i, e in enumerate(self.examples) if i not in held]
        return train, [self.examples[i] for i in sorted(held)]

    def summary(self) -> dict:
        return {"path": str(self.path), "format": self.format, "rows": len(self.examples),
                "problems": len(self.problems), "duplicates": self.duplicates, "digest": self.digest}


def load(path: str | Path, on_bad: str = "skip") -> Dataset:
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder; check the path.")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise DatasetError(f"{path}: no .jsonl or .json files in this folder.")
    digest = hashlib.sha256()
    rows: list[tuple[str, object]] = []
    for f in files:
        if f.suffix.lower() not in SUFFIXES:
            kind = f"'{f.suffix}' files are" if f.suffix else "files without an extension are"
            raise DatasetError(f"{f}: {kind} not read yet; use a .jsonl or .json file.")
        raw = f.read_bytes()
        digest.update(raw)
        rows.extend(_rows(f, raw))
    if not rows:
        raise DatasetError(f"{path}: the file is empty; add one example per line.")

    problems: list[Problem] = []
    usable = [(src, r) for src, r in rows if not isinstance(r, Problem)]
    problems.extend(r for _, r in rows if isinstance(r, Problem))
    votes = Counter(formats.detect(r) for _, r in usable if isinstance(r, dict))
    votes.pop(None, None)
    if not votes:
        raise DatasetError(
            f"{where(files[0], 1)}: no known schema; rows need 'messages', 'conversations', "
            "'instruction'+'output', 'prompt'+'completion' or 'text'."
        )
    fmt_name = votes.most_common(1)[0][0]
    fmt = formats.FORMATS[fmt_name]
    examples: list[Example] = []
    seen: set[str] = set()
    duplicates = 0
    for src, row in usable:
        if not isinstance(row, dict) or not fmt.detect(row):
            problems.append(Problem(src, f"does not look like {fmt.DESCRIPTION} like the other rows"))
            continue
        try:
            fields = fmt.convert(row)
        except ValueError as e:
            problems.append(Problem(src, str(e)))
            continue
        key = json.dumps(fields, sort_keys=True)
        if key in seen:
            duplicates += 1
        seen.add(key)
        examples.append(Example(source=src, **fields))
    if problems and on_bad == "stop":
        raise DatasetError(f"{problems[0]}; fix the row or choose to skip bad rows.")
    if not examples:
        first = f" (first: {problems[0]})" if problems else ""
        raise DatasetError(f"{path}: no usable rows{first}; fix the file and try again.")
    return Dataset(path, fmt_name, examples, problems, digest.hexdigest()[:16], duplicates)


def _rows(f: Path, raw: bytes) -> list[tuple[str, object]]:
    if b"\x00" in raw[:4096]:
        raise DatasetError(f"{f}: this is a binary file, not JSON text; export the data as .jsonl.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DatasetError(f"{where(f, line)}: not UTF-8 text; save the file as UTF-8.") from None
    if f.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where(f, e.lineno)}: broken JSON ({e.msg}); fix the file.") from None
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DatasetError(f"{f}: expected a JSON array of examples (or an object holding one list).")
            data = lists[0]
        if not isinstance(data, list):
            raise DatasetError(f"{f}: expected a JSON array of examples.")
        return [(f"{f.name}#{i}", r) for i, r in enumerate(data, 1)]
    out: list[tuple[str, object]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        src = where(f.name, n)
        try:
            out.append((src, json.loads(line)))
        except json.JSONDecodeError as e:
            out.append((src, Problem(src, f"broken JSON ({e.msg})")))
    return out
