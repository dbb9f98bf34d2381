"""Read a dataset file (or folder) into Examples, with every problem located by file:line or row.

The source is only ever read, and streamed: readers/ yields rows one at a time and the schema is
chosen in the same pass. Each row is converted by the schema it looks like; at the end the schema most
rows match wins, and rows of any other schema become Problems ("mixed schemas" is also a warning). A
column mapping skips detection and names the schema's columns instead.

A bad row becomes a Problem; with on_bad="stop" the first one is an error, with "skip" (the default) it
is counted and listed, and only a dataset with nothing usable left is an error. Duplicate rows are
kept, counted and listed: repeating an example can be deliberate (upsampling), and dropping rows
silently would change the dataset behind the person's back.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from core.data import formats, readers
from core.data.formats import mapping as column_mapping
from core.data.readers.reading import Problem, Reading
from core.errors import DatasetError

SUFFIXES = tuple(readers.READERS)  # every file type a dataset can be, for file pickers
NEEDS = ("rows need 'messages', 'conversations', 'instruction'+'output', 'prompt'+'completion' or 'text', "
         "or a column mapping such as {'prompt': 'question', 'completion': 'answer'}")

__all__ = ["Dataset", "Example", "Problem", "SUFFIXES", "load"]


@dataclass
class Example:
    messages: list[dict] | None = None  # chat turns, rendered through the model's chat template
    text: str | None = None  # raw text, every token trained
    source: str = ""  # file:line, for messages about this example


@dataclass
class Dataset:
    path: Path
    format: str  # the schema: a key of formats.FORMATS
    examples: list[Example]
    problems: list[Problem] = field(default_factory=list)
    digest: str = ""
    duplicates: int = 0
    warnings: list[str] = field(default_factory=list)  # notes that are not about one row: encodings, tool turns
    file_type: str = ""  # "jsonl", "csv", ... ("csv+jsonl" for a mixed folder)
    confidence: float = 1.0  # share of the rows read as objects that match the chosen schema
    runner_up: str | None = None  # the next most common schema when rows are mixed
    schema_reason: str = ""  # why this schema: the votes, or the column mapping
    duplicate_rows: list[str] = field(default_factory=list)  # "d.jsonl:9 repeats d.jsonl:2"

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
                "problems": len(self.problems), "duplicates": self.duplicates, "digest": self.digest,
                "file_type": self.file_type, "confidence": round(self.confidence, 3), "runner_up": self.runner_up,
                "schema_reason": self.schema_reason, "warnings": list(self.warnings)}


def load(path: str | Path, on_bad: str = "skip", mapping: dict | None = None) -> Dataset:
    """Read path (a file or a folder); mapping, e.g. {"prompt": "q", "completion": "a"}, overrides detection."""
    if on_bad not in ("skip", "stop"):
        raise ValueError(f"on_bad must be 'skip' or 'stop', not {on_bad!r}")
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder; check the path.")
    if path.is_dir() and not readers.files_in(path):
        raise DatasetError(f"{path}: the folder holds no files; put {', '.join(SUFFIXES)} files in it.")
    schema = column_mapping.schema_for(mapping) if mapping is not None else None
    tally = _Tally(schema, mapping, on_bad == "stop")
    reading = Reading()
    for src, row in readers.read(path, reading):
        tally.add(src, row)
    return tally.finish(path, reading)


class _Tally:
    """Rows sorted by the schema they look like, in one pass; finish() keeps the most common schema."""

    def __init__(self, schema: str | None, mapping: dict | None, stop: bool):
        self.schema, self.mapping, self.stop = schema, mapping, stop
        self.seq = 0  # reading order, so problems are listed as they appear in the file
        self.problems: list[tuple[int, Problem]] = []
        self.unknown: list[tuple[int, Problem]] = []
        self.examples: dict[str, list[tuple[int, Example]]] = defaultdict(list)
        self.failed: dict[str, list[tuple[int, Problem]]] = defaultdict(list)
        self.votes: Counter = Counter()
        self.tool_turns: Counter = Counter()
        self.tool_rows: Counter = Counter()
        self.unknown_columns = ""  # of the first row with no known schema, for the error when no row has one

    def add(self, src: str, row) -> None:
        self.seq += 1
        if isinstance(row, Problem):
            return self._problem(self.problems, row)
        name = self.schema or formats.detect(row)
        if name is None:
            columns = "its columns: " + (", ".join(map(repr, list(row)[:12])) or "none")
            self.unknown_columns = self.unknown_columns or columns
            return self._problem(self.unknown, Problem(src, f"matches no known schema ({columns})"))
        self.votes[name] += 1
        try:
            fields = formats.FORMATS[name].convert(column_mapping.apply(row, self.mapping) if self.mapping else row)
        except ValueError as e:
            return self._problem(self.failed[name], Problem(src, str(e)))
        dropped = fields.pop("dropped", 0)
        if dropped:
            self.tool_turns[name] += dropped
            self.tool_rows[name] += 1
        self.examples[name].append((self.seq, Example(source=src, **fields)))

    def _problem(self, into: list, problem: Problem) -> None:
        if self.stop:
            fix = "" if problem.kind == "file" else "; fix the row or choose to skip bad rows"
            raise DatasetError(f"{problem}{fix}.")
        into.append((self.seq, problem))

    def finish(self, path: Path, reading: Reading) -> Dataset:
        if not self.votes:
            self._nothing_usable(path, self.problems + self.unknown)
        # Most votes wins, but a schema none of whose rows converted cannot win over one that has examples.
        ranked = sorted(self.votes, key=lambda n: (bool(self.examples[n]), self.votes[n]), reverse=True)
        name = ranked[0]
        total = sum(self.votes.values()) + len(self.unknown)
        problems = self.problems + self.unknown + self.failed[name]
        for other in ranked[1:]:
            why = f"looks like {_label(other)}, but most rows are {_label(name)}; make the rows alike"
            problems += [(seq, Problem(ex.source, why)) for seq, ex in self.examples[other]]
            problems += [(seq, Problem(p.source, why)) for seq, p in self.failed[other]]
        problems.sort(key=lambda sp: sp[0])
        if self.stop and problems:
            raise DatasetError(f"{problems[0][1]}; fix the row or choose to skip bad rows.")
        warnings = list(reading.warnings)
        if len(ranked) > 1:
            others = ", ".join(f"{self.votes[o]} like {_label(o)}" for o in ranked[1:])
            warnings.append(f"mixed schemas: {self.votes[name]} rows look like {_label(name)}, {others}; "
                            f"using {_label(name)}")
        if self.tool_turns[name]:
            warnings.append(f"{_count(self.tool_turns[name], 'tool or function-call turn')} dropped from "
                            f"{_count(self.tool_rows[name], 'conversation')}; only system, user and assistant "
                            "turns are trained")
        examples = [ex for _, ex in self.examples[name]]
        if not examples:
            self._nothing_usable(path, problems)
        duplicate_rows = _duplicates(examples)
        reason = (f"set by the column mapping ({', '.join(f'{f} <- {c}' for f, c in self.mapping.items())})"
                  if self.schema else f"{self.votes[name]} of {total} rows look like "
                                      f"{formats.FORMATS[name].DESCRIPTION}")
        return Dataset(path, name, examples, [p for _, p in problems], reading.digest.hexdigest()[:16],
                       len(duplicate_rows), warnings, "+".join(sorted(reading.file_types)),
                       self.votes[name] / total, ranked[1] if len(ranked) > 1 else None, reason, duplicate_rows)

    def _nothing_usable(self, path: Path, problems: list[tuple[int, Problem]]):
        problems = [p for _, p in sorted(problems, key=lambda sp: sp[0])]
        if self.unknown and not self.votes:
            first = self.unknown[0][1]
            raise DatasetError(f"{first.source}: no known schema ({self.unknown_columns}); {NEEDS}.")
        if len(problems) == 1 and problems[0].kind == "file":
            raise DatasetError(f"{problems[0]}.")  # the file's own sentence already says what to do
        first = f" (first: {problems[0]})" if problems else ""
        raise DatasetError(f"{path}: no usable rows{first}; fix the file and try again.")


def _duplicates(examples: list[Example]) -> list[str]:
    """'file:line repeats file:line' for every example whose content appeared before; a hash keeps memory small."""
    first: dict[bytes, str] = {}
    out = []
    for ex in examples:
        key = hashlib.blake2b(json.dumps([ex.messages, ex.text], sort_keys=True).encode(), digest_size=16).digest()
        if key in first:
            out.append(f"{ex.source} repeats {first[key]}")
        else:
            first[key] = ex.source
    return out


def _label(schema: str) -> str:
    return schema.replace("_", "/")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
