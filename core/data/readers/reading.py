"""What reading gathers besides rows: a Problem for what could not be used, and the digest and notes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass
class Reading:
    """Filled in while the readers stream: the content digest, notes for the person, bytes read so far.

    bytes_read lets a caller (and a test) see that rows arrive before a big file has been read through.
    """

    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    warnings: list[str] = field(default_factory=list)
    bytes_read: int = 0
    file_types: set[str] = field(default_factory=set)


@dataclass
class Problem:
    """A row (or a whole file) that could not be used, and why; kind is "row" or "file"."""

    source: str  # file:line, file:row N, file#N, or just the file
    message: str
    kind: str = "row"

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


class FileProblem(Exception):
    """A file that cannot be read at all (empty, binary, broken JSON document): one sentence with the fix.

    The readers package turns it into a Problem for that file, so one bad file in a folder does not
    stop the others from loading.
    """

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message, self.line = message, line


def first_line(e: Exception) -> str:
    """An exception's message cut to its first line, for a reader's one sentence."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
