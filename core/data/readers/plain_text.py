"""Raw text (.txt, .md) for continued pre-training, cut into chunks of whole paragraphs.

Why chunks and not one example per file: an example longer than the sequence length is truncated when
it is tokenized, so a whole book as one example would train on its first page only. Cutting at blank
lines keeps paragraphs (and the sentences in them) whole, and packing consecutive paragraphs up to
CHUNK_CHARS keeps some context per example instead of thousands of one-line examples. A paragraph longer
than CHUNK_CHARS is cut at line ends; a single line longer than that stays whole. Each chunk's source is
the line where it starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from pathlib import Path

from core.data.readers import textfile
from core.data.readers.reading import FileProblem, Problem, Reading
from core.errors import where

SUFFIXES = (".txt", ".md")
HINT = "put the text in it, paragraphs separated by blank lines"
CHUNK_CHARS = 4000  # about 1,000 tokens: fits the usual sequence lengths with little truncation


def read(path: Path, name: str, reading: Reading) -> Iterator[tuple[str, object]]:
    chunk: list[str] = []  # whole paragraphs
    para: list[str] = []  # lines of the paragraph being read
    chunk_start = para_start = chunk_size = para_size = 0
    found = False
    for n, line, bad in chain(textfile.lines(path, name, reading, HINT), [(0, "", None)]):  # a blank line at the end
        if bad:
            yield where(name, n), Problem(where(name, n), f"{bad}; the line is left out")
            continue
        line = line.rstrip("\r\n")
        if line.strip():
            found = True
            if para and para_size + len(line) + 1 > CHUNK_CHARS:
                # A paragraph too long for one chunk: flush what came before it, then cut it at this line end.
                if chunk:
                    yield _example(name, chunk_start, chunk)
                yield _example(name, para_start, ["\n".join(para)])
                chunk, para, chunk_size, para_size = [], [], 0, 0
            para_start = para_start if para else n
            para.append(line)
            para_size += len(line) + 1
        elif para:
            if chunk and chunk_size + para_size > CHUNK_CHARS:
                yield _example(name, chunk_start, chunk)
                chunk, chunk_size = [], 0
            chunk_start = chunk_start if chunk else para_start
            chunk.append("\n".join(para))
            chunk_size += para_size + 1
            para, para_size = [], 0
    if chunk:
        yield _example(name, chunk_start, chunk)
    elif not found:
        raise FileProblem(f"the file holds only blank space; {HINT}")


def _example(name: str, start: int, paragraphs: list[str]) -> tuple[str, dict]:
    return where(name, start), {"text": "\n\n".join(paragraphs)}
