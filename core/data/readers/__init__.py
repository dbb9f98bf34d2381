"""Readers, one module per file type, registered here by suffix; a folder is read file by file.

Each reader module has SUFFIXES and `read(path, name, reading)`, which yields `(source, row)` lazily,
where row is a dict of fields or a Problem located at file:line ("file:row N" for CSV and Parquet rows,
"file#N" for the items of a JSON array). A reader raises FileProblem for a file it cannot read at all;
this module turns that into a Problem for the file, so one bad file in a folder is listed, not fatal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from core.data.readers import arrow, delimited, json_doc, jsonl, parquet, plain_text
from core.data.readers.reading import FileProblem, Problem, Reading
from core.errors import where

READERS = {suffix: m for m in (jsonl, json_doc, delimited, parquet, arrow, plain_text) for suffix in m.SUFFIXES}
# What the `datasets` library writes beside the data (save_to_disk) is not data: a folder's reading skips it.
METADATA = ("dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json")
# A folder's own documentation (a dataset card, a licence: what a clone of a hub dataset or any shared folder
# carries) describes the data and is not part of it, whatever its suffix; a file named on its own is still read.
DOCS = ("readme", "license", "licence", "notice", "copying", "changelog", "citation")
SHEETS = (".xlsx", ".xls", ".ods", ".numbers")

__all__ = ["DOCS", "METADATA", "READERS", "FileProblem", "Problem", "Reading", "docs_in", "files_in", "read"]


def read(path: Path, reading: Reading, files: list[Path] | None = None) -> Iterator[tuple[str, object]]:
    """Every row of a file, or of every file under a folder (sorted, hidden ones skipped) or of `files` in it,
    lazily."""
    folder = path.is_dir()
    for f in files if files is not None else files_in(path) if folder else [path]:
        name = f.relative_to(path).as_posix() if folder else f.name
        reader = READERS.get(f.suffix.lower())
        if reader is None:
            yield name, Problem(name, unsupported(f), "file")
            continue
        reading.file_types.add(f.suffix.lower().lstrip("."))
        try:
            yield from reader.read(f, name, reading)
        except FileProblem as e:
            src = where(name, e.line)
            yield src, Problem(src, e.message, "file")
        except OSError as e:
            yield name, Problem(name, f"cannot be read ({e.strerror or e}); check that the file is readable",
                                "file")


def files_in(folder: Path) -> list[Path]:
    """Files under a folder, recursively, in a stable order; hidden files and folders, the `datasets`
    library's METADATA files and the folder's DOCS are skipped."""
    return [f for f in _visible(folder) if f.name.lower() not in METADATA and not _is_doc(f.name)]


def docs_in(folder: Path) -> list[str]:
    """The folder's DOCS files that files_in leaves out, as paths relative to it, in the same order."""
    return [f.relative_to(folder).as_posix() for f in _visible(folder) if _is_doc(f.name)]


def _visible(folder: Path) -> list[Path]:
    """Every file under a folder but hidden ones (and those in hidden folders), in a stable order."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # pruned in place, so .git is never walked
        found += [Path(root) / f for f in files if not f.startswith(".")]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _is_doc(name: str) -> bool:
    return name.lower().split(".")[0] in DOCS


def unsupported(f: Path) -> str:
    kinds = ", ".join(sorted(READERS))
    what = f"'{f.suffix}' files are" if f.suffix else "files without an extension are"
    fix = "save the sheet as .csv" if f.suffix.lower() in SHEETS else f"use one of {kinds}"
    return f"{what} not read; {fix}"
