"""Read a dataset file (or folder) into Examples, with every problem located by file:line or row.

The source is only ever read, and streamed: readers/ yields rows one at a time and the schema is
chosen in the same pass. Each row is converted by the schema it looks like; at the end the schema most
rows match wins, and rows of any other schema become Problems ("mixed schemas" is also a warning). A
column mapping skips detection and names the schema's columns instead.

A bad row becomes a Problem; with on_bad="stop" the first one is an error, with "skip" (the default) it
is counted and listed, and only a dataset with nothing usable left is an error. Duplicate rows are
kept, counted and listed: repeating an example can be deliberate (upsampling), and dropping rows
silently would change the dataset behind the person's back.

Big files are never held whole: the examples of a file over KEEP_BYTES are not kept by the first
pass, which holds an 8-byte hash per row (duplicates are found from them at the end; a collision
between two different rows is about a one-in-a-million chance for ten million rows) and the first
LIST_CAP problems by name (all are counted). `Dataset.examples` then reads the file again when
iterated (see rows.py), and that pass checks the file has not changed since.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from core.data import formats, readers, scores
from core.data import source as data_source
from core.data import split as split_mod
from core.data.example import Example
from core.data.formats import mapping as column_mapping
from core.data import reasoning, tool_render
from core.data.formats import tool_calls
from core.data.readers.reading import Problem, Reading
from core.data.rows import Rows
from core.errors import DatasetError

SUFFIXES = tuple(readers.READERS)  # every file type a dataset can be, for file pickers
NEEDS = ("rows need 'messages', 'conversations', 'instruction'+'output', 'prompt'+'completion', "
         "'chosen'+'rejected', 'prompt'+'completion'+'label' (or 'score') or 'text', or a column mapping such as "
         "{'prompt': 'question', 'completion': 'answer'}")
KEEP_BYTES = 64 << 20  # sources up to this size keep their examples in memory; bigger ones are read again
LIST_CAP = 1000  # problems and duplicate rows listed by name; every one is counted
PROGRESS_EVERY = 4096  # rows between progress reports while reading

__all__ = ["Dataset", "Example", "Problem", "Rows", "SUFFIXES", "load"]


@dataclass
class Dataset:
    path: Path
    format: str  # the schema: a key of formats.FORMATS
    examples: Rows
    problems: list[Problem] = field(default_factory=list)  # the first LIST_CAP, in file order
    digest: str = ""  # of the source bytes
    duplicates: int = 0
    warnings: list[str] = field(default_factory=list)  # notes that are not about one row: encodings, mixed schemas
    file_type: str = ""  # "jsonl", "csv", ... ("csv+jsonl" for a mixed folder)
    confidence: float = 1.0  # share of the rows read as objects that match the chosen schema
    runner_up: str | None = None  # the next most common schema when rows are mixed
    schema_reason: str = ""  # why this schema: the votes, or the column mapping
    duplicate_pairs: list[tuple[int, int]] = field(default_factory=list)  # (row, the earlier row it repeats)
    problem_count: int = 0  # every problem, listed or not
    label: str = ""  # what to call the source when it is not a path: "org/name:train" for a cached hub dataset
    scores: dict | None = None  # scored answers: their range and the line drawn (scores.Scale.summary)
    tool_use: dict | None = None  # {"rows", "calls", "tools"}: conversations that use tools, the calls they make,
    # the first row's tools (None if none has any); tool_render.note says how the model's text holds them
    reasoning_rows: int = 0  # conversations with an answer that carries its reasoning (reasoning.note says how)
    # each row's 8-byte content hash, in row order (numpy uint64): the split keeps a held-out row's copies out of
    # training with it (split.split); None where not read
    row_hashes: object = None

    @cached_property
    def duplicate_rows(self) -> list[str]:
        """"d.jsonl:9 repeats d.jsonl:2" for the first LIST_CAP duplicates (a big file is read again for the names)."""
        wanted = {i for pair in self.duplicate_pairs for i in pair}
        last = max(wanted, default=-1)
        names = {i: e.source for i, e in enumerate(self.examples[:last + 1]) if i in wanted}
        return [f"{names[i]} repeats {names[first]}" for i, first in self.duplicate_pairs]

    def template_notes(self, tokenizer) -> list[str]:
        """How this model's text holds the rows' tool calls and reasoning: its template's own way, or ours."""
        return ([tool_render.note(tokenizer, self.tool_use)] if self.tool_use else []) + (
            [reasoning.note(tokenizer, self.reasoning_rows)] if self.reasoning_rows else [])

    def split(self, eval_fraction: float | None, seed: int) -> tuple[Rows, list[Example], str]:
        """(training rows, validation rows, why): a fixed-seed split, sized by split.validation_size."""
        return split_mod.split(self.examples, eval_fraction, seed, self.row_hashes)

    def summary(self) -> dict:
        return {"path": self.label or str(self.path), "format": self.format, "rows": len(self.examples),
                "problems": self.problem_count, "duplicates": self.duplicates, "digest": self.digest,
                "file_type": self.file_type, "confidence": round(self.confidence, 3), "runner_up": self.runner_up,
                "schema_reason": self.schema_reason, "warnings": list(self.warnings),
                **({"scores": self.scores} if self.scores else {}),
                **({"tool_use": self.tool_use} if self.tool_use else {}),
                **({"reasoning_rows": self.reasoning_rows} if self.reasoning_rows else {})}


def load(path: str | Path, on_bad: str = "skip", mapping: dict | None = None, keep_bytes: int = KEEP_BYTES,
         on_progress: Callable[[float], None] | None = None, good_above: float | None = None) -> Dataset:
    """Read path (a file or a folder); mapping, e.g. {"prompt": "q", "completion": "a"}, overrides detection.

    on_progress(fraction of the bytes read) is called now and then, for a progress bar. good_above is the line
    for scored answers (scores.py; None: the middle of the file's scores); files without scores ignore it.
    """
    if on_bad not in ("skip", "stop"):
        raise ValueError(f"on_bad must be 'skip' or 'stop', not {on_bad!r}")
    source = data_source.locate(path)
    schema = column_mapping.schema_for(mapping) if mapping is not None else None
    total = source.size()
    tally = _Tally(schema, mapping, on_bad == "stop", keep=total <= keep_bytes, good_above=good_above)
    reading = Reading()
    if source.note:
        reading.warnings.append(source.note)
    for src, row in readers.read(source.root, reading, source.files):
        tally.add(src, row)
        if on_progress is not None and tally.seq % PROGRESS_EVERY == 0:
            on_progress(min(1.0, reading.bytes_read / max(1, total)))
    return tally.finish(source, reading)


def _convert(name: str, mapping: dict | None, row: dict) -> dict:
    """The schema's fields for a row (ValueError says what is wrong with it)."""
    return formats.FORMATS[name].convert(column_mapping.apply(row, mapping) if mapping else row)


def _identity(example: Example) -> bytes:
    return json.dumps([example.messages, example.text, *([example.rejected] if example.rejected else []),
                       *([example.tools] if example.tools else []),
                       *([example.desirable] if example.desirable is not None else []),
                       *([example.score] if example.score is not None else [])], sort_keys=True).encode()


def _reread(source: data_source.Source, name: str, schema: str | None, mapping: dict | None,
            digest: str, line: float | None) -> Iterator[Example]:
    """The examples of schema `name` again, by the first pass's rules (scored answers rated by its `line`); an
    error if the file changed since."""
    reading = Reading()
    for src, row in readers.read(source.root, reading, source.files):
        if isinstance(row, Problem) or (schema or formats.detect(row)) != name:
            continue
        try:
            fields = _convert(name, mapping, row)
        except ValueError:
            continue
        example = Example(source=src, **fields)
        yield scores.rate(example, line) if line is not None else example
    if reading.digest.hexdigest()[:16] != digest:
        raise DatasetError(f"{source.root} changed while it was in use; read it again (inspect or plan again) before "
                           "training on it.")


class _Schema:
    """What the first pass gathers about the rows of one schema."""

    def __init__(self, keep: bool):
        self.kept: list[tuple[int, Example]] | None = [] if keep else None
        self.count = 0
        self.sources: list[tuple[int, str]] = []  # (seq, source) of the first LIST_CAP rows
        self.failed: list[tuple[int, Problem]] = []
        self.failed_count = 0
        self.rows_digest = hashlib.sha256()
        self.hashes = array("Q")  # 8 bytes per row, whatever the row
        self.scores = array("d")  # scored answers' scores, 8 bytes each
        self.tool_rows = self.tool_calls = 0  # conversations that use tools, and the calls they make
        self.first_tools: list | None = None  # the first row's tools: what trying the tuned model offers
        self.reasoning_rows = 0  # conversations with an answer that carries its reasoning

    def add(self, seq: int, example: Example) -> None:
        self.count += 1
        if example.score is not None:
            self.scores.append(example.score)
        if tool_calls.uses_tools(example.messages, example.tools):
            self.tool_rows += 1
            self.tool_calls += sum(len(m.get("tool_calls", ())) for m in example.messages)
            self.first_tools = self.first_tools or example.tools
        self.reasoning_rows += reasoning.carried(example.messages)
        if self.kept is not None:
            self.kept.append((seq, example))
        if len(self.sources) < LIST_CAP:
            self.sources.append((seq, example.source))
        content = _identity(example)
        self.rows_digest.update(json.dumps(example.source).encode() + b"\0" + content + b"\n")
        self.hashes.append(int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "little"))

    def duplicates(self) -> tuple[int, list[tuple[int, int]]]:
        """(how many rows repeat an earlier one, (row, first row) for the first LIST_CAP of them)."""
        h = np.frombuffer(self.hashes, dtype=np.uint64)
        if len(h) < 2:
            return 0, []
        order = np.argsort(h, kind="stable")  # equal hashes stay in row order: a group starts at its first row
        ranked = h[order]
        repeat = np.concatenate([[False], ranked[1:] == ranked[:-1]])
        group_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(h))))
        rows, firsts = order[repeat], order[group_start][repeat]
        listed = np.argsort(rows, kind="stable")[:LIST_CAP]
        return int(repeat.sum()), list(zip(rows[listed].tolist(), firsts[listed].tolist()))


class _Tally:
    """Rows sorted by the schema they look like, in one pass; finish() keeps the most common schema."""

    def __init__(self, schema: str | None, mapping: dict | None, stop: bool, keep: bool,
                 good_above: float | None = None):
        self.schema, self.mapping, self.stop, self.keep, self.good_above = schema, mapping, stop, keep, good_above
        self.seq = 0  # reading order, so problems are listed as they appear in the file
        self.problems: list[tuple[int, Problem]] = []  # unreadable rows and files (the first LIST_CAP)
        self.unknown: list[tuple[int, Problem]] = []  # rows of no known schema (the first LIST_CAP)
        self.problem_count = 0
        self.unknown_count = 0
        self.schemas: dict[str, _Schema] = {}
        self.votes: Counter = Counter()
        self.unknown_columns = ""  # of the first row with no known schema, for the error when no row has one

    def add(self, src: str, row) -> None:
        self.seq += 1
        if isinstance(row, Problem):
            self.problem_count += 1
            return self._problem(self.problems, row)
        name = self.schema or formats.detect(row)
        if name is None:
            columns = "its columns: " + (", ".join(map(repr, list(row)[:12])) or "none")
            self.unknown_columns = self.unknown_columns or columns
            self.unknown_count += 1
            return self._problem(self.unknown, Problem(src, f"matches no known schema ({columns})"))
        self.votes[name] += 1
        rows = self.schemas.setdefault(name, _Schema(self.keep))
        try:
            fields = _convert(name, self.mapping, row)
        except ValueError as e:
            rows.failed_count += 1
            return self._problem(rows.failed, Problem(src, str(e)))
        rows.add(self.seq, Example(source=src, **fields))

    def _problem(self, into: list, problem: Problem) -> None:
        if self.stop:
            fix = "" if problem.kind == "file" else "; fix the row or choose to skip bad rows"
            raise DatasetError(f"{problem}{fix}.")
        if len(into) < LIST_CAP:
            into.append((self.seq, problem))

    def finish(self, source: data_source.Source, reading: Reading) -> Dataset:
        path = source.root
        if not self.votes:
            self._nothing_usable(path, self.problems + self.unknown)
        # Most votes wins, but a schema none of whose rows converted cannot win over one that has examples.
        ranked = sorted(self.votes, key=lambda n: (self.schemas[n].count > 0, self.votes[n]), reverse=True)
        name, won = ranked[0], self.schemas[ranked[0]]
        total = sum(self.votes.values()) + self.unknown_count
        problems = self.problems + self.unknown + won.failed
        count = self.problem_count + self.unknown_count + won.failed_count
        for other in ranked[1:]:
            why = f"looks like {_label(other)}, but most rows are {_label(name)}; make the rows alike"
            rows = self.schemas[other]
            problems += [(seq, Problem(src, why)) for seq, src in rows.sources]
            problems += [(seq, Problem(p.source, why)) for seq, p in rows.failed]
            count += rows.count + rows.failed_count
        problems.sort(key=lambda sp: sp[0])  # each list holds its first LIST_CAP, so these are the first overall
        if self.stop and problems:
            raise DatasetError(f"{problems[0][1]}; fix the row or choose to skip bad rows.")
        warnings = list(reading.warnings)
        if len(ranked) > 1:
            others = ", ".join(f"{self.votes[o]} like {_label(o)}" for o in ranked[1:])
            warnings.append(f"mixed schemas: {self.votes[name]} rows look like {_label(name)}, {others}; "
                            f"using {_label(name)}")
        if not won.count:
            self._nothing_usable(path, problems)
        digest = reading.digest.hexdigest()[:16]
        scale = scores.scale(won.scores, self.good_above) if won.scores else None
        line = scale.line if scale else None
        if scale:  # the rows are rated by the line: another line is other data (for the token cache too)
            won.rows_digest.update(f"rated above {line!r}".encode())
        if won.kept is not None:
            examples = Rows(won.count, won.rows_digest.hexdigest(),
                            kept=[scores.rate(ex, line) if scale else ex for _, ex in won.kept])
        else:
            schema, mapping = self.schema, self.mapping
            examples = Rows(won.count, won.rows_digest.hexdigest(),
                            reread=lambda: _reread(source, name, schema, mapping, digest, line))
        reason = (f"set by the column mapping ({', '.join(f'{f} <- {c}' for f, c in self.mapping.items())})"
                  if self.schema else f"{self.votes[name]} of {total} rows look like "
                                      f"{formats.FORMATS[name].DESCRIPTION}")
        duplicates, pairs = won.duplicates()
        return Dataset(path, name, examples, [p for _, p in problems[:LIST_CAP]], digest, duplicates,
                       warnings, "+".join(sorted(reading.file_types)), self.votes[name] / total,
                       ranked[1] if len(ranked) > 1 else None, reason, pairs, count,
                       source.label, scale.summary() if scale else None,
                       {"rows": won.tool_rows, "calls": won.tool_calls, "tools": won.first_tools}
                       if won.tool_rows else None, won.reasoning_rows,
                       np.frombuffer(won.hashes, dtype=np.uint64) if len(won.hashes) else None)

    def _nothing_usable(self, path: Path, problems: list[tuple[int, Problem]]):
        problems = [p for _, p in sorted(problems, key=lambda sp: sp[0])]
        if self.unknown and not self.votes:
            first = self.unknown[0][1]
            raise DatasetError(f"{first.source}: no known schema ({self.unknown_columns}); {NEEDS}.")
        if len(problems) == 1 and problems[0].kind == "file":
            raise DatasetError(f"{problems[0]}.")  # the file's own sentence already says what to do
        first = f" (first: {problems[0]})" if problems else ""
        raise DatasetError(f"{path}: no usable rows{first}; fix the file and try again.")


def _label(schema: str) -> str:
    return schema.replace("_", "/")
