"""CSV and TSV from a spreadsheet: the header row names the columns, each later row is one example.

Cells are text. A cell holding JSON (a messages list, say) stays a string here; the chat schemas parse
it. Rows are numbered as a spreadsheet shows them, the header being row 1, so "row 5" is the row a
person sees as 5 even when a quoted cell spans several lines. Rows with fewer cells than the header are
padded with empty cells (spreadsheets drop trailing empty cells); rows with more are a problem, as the
usual cause is an unquoted delimiter inside a cell. Blank rows are skipped.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from core.data.readers import textfile
from core.data.readers.reading import FileProblem, Problem, Reading

SUFFIXES = (".csv", ".tsv")
HINT = "put a header row first and one example per row under it"
ROWS_HINT = "add one example per row under the header"

# A long document in one cell is normal for text datasets; the csv default (128 KiB) would refuse it.
csv.field_size_limit(min(sys.maxsize, 1 << 30))


def read(path: Path, name: str, reading: Reading) -> Iterator[tuple[str, object]]:
    undecodable: dict[int, str] = {}

    def text():
        for n, line, bad in textfile.lines(path, name, reading, HINT):
            if bad:
                undecodable[n] = bad
            yield line

    lines = text()
    first = next(lines, "")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _comma_or_semicolon(first)
    records = csv.reader(chain([first], lines), delimiter=delimiter)
    header, row_no, last_line = None, 0, 0
    while True:
        try:
            cells = next(records)
        except StopIteration:
            break
        except csv.Error as e:
            row_no += 1
            if header is None:
                raise FileProblem(f"the header row cannot be read ({e}); {HINT}", line=records.line_num) from None
            src = f"{name}:row {row_no}"
            yield src, Problem(src, f"cannot be read as {_kind(delimiter)} ({e})")
            last_line = records.line_num
            continue
        row_no += 1
        spanned = [undecodable[n] for n in range(last_line + 1, records.line_num + 1) if n in undecodable]
        last_line = records.line_num
        if header is None:
            if spanned:
                raise FileProblem(spanned[0], line=1)
            if not any(c.strip() for c in cells):
                row_no -= 1  # blank lines above the header do not count as rows
                continue
            header = [c.strip() for c in cells]
            _check_header(header)
            continue
        src = f"{name}:row {row_no}"
        if spanned:
            yield src, Problem(src, spanned[0])
        elif not any(c.strip() for c in cells):
            continue
        elif len(cells) > len(header) and any(c.strip() for c in cells[len(header):]):
            yield src, Problem(src, f"has {len(cells)} cells but the header has {len(header)} columns; "
                                    f"quote cells that contain '{_shown(delimiter)}'")
        else:
            cells = cells + [""] * (len(header) - len(cells))
            yield src, {h: c for h, c in zip(header, cells) if h}
    if header is None:
        raise FileProblem(f"the file holds only blank lines; {HINT}")
    if row_no < 2:
        raise FileProblem(f"the file has a header row but no rows under it; {ROWS_HINT}")


def _check_header(header: list[str]) -> None:
    named = [h for h in header if h]
    if not named:
        raise FileProblem(f"the header row has no column names; {HINT}", line=1)
    twice = sorted({h for h in named if named.count(h) > 1})
    if twice:
        raise FileProblem(f"the header names {', '.join(map(repr, twice))} more than once; give each column "
                          "its own name", line=1)


def _comma_or_semicolon(header_line: str) -> str:
    # Spreadsheets in locales with a decimal comma save "CSV" with semicolons.
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _kind(delimiter: str) -> str:
    return "TSV" if delimiter == "\t" else "CSV"


def _shown(delimiter: str) -> str:
    return "\\t" if delimiter == "\t" else delimiter
