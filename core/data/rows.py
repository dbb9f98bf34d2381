"""A dataset's examples, in order: held in memory for small files, read again from the source for big ones.

A 1 GB JSONL would take several GB as Python objects, so past a size (dataset.KEEP_BYTES) the first
pass keeps only counts and hashes, and every later pass (token statistics, tokenizing for training)
reads the file again, converting rows with the schema the first pass chose. Both kinds behave the
same: len(), iteration, indexing and slicing (which read from the start for a big file; use them for
previews), `without` for a train split and `pick` for a small held-out one.

`digest` identifies the rows themselves (sources and contents, in order), so a token cache can be
keyed on it without another pass over the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from itertools import islice

from core.data.example import Example


class Rows:
    def __init__(self, count: int, digest: str, kept: list[Example] | None = None,
                 reread: Callable[[], Iterator[Example]] | None = None, leave_out: frozenset[int] = frozenset()):
        if (kept is None) == (reread is None):
            raise ValueError("Rows needs either the kept examples or a way to read them again")
        self._count, self.digest = count, digest
        self._kept, self._reread, self._leave_out = kept, reread, leave_out

    @property
    def in_memory(self) -> bool:
        return self._kept is not None

    def __len__(self) -> int:
        return self._count - len(self._leave_out)

    def __iter__(self) -> Iterator[Example]:
        source = iter(self._kept) if self._kept is not None else self._reread()
        if not self._leave_out:
            yield from source
            return
        for i, example in enumerate(source):
            if i not in self._leave_out:
                yield example

    def __getitem__(self, index):
        if isinstance(index, slice):
            if self._kept is not None and not self._leave_out:
                return self._kept[index]
            return list(islice(self, index.start, index.stop, index.step))
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("row index out of range")
        if self._kept is not None and not self._leave_out:
            return self._kept[index]
        return next(islice(self, index, None))

    def __repr__(self) -> str:
        where = "in memory" if self.in_memory else "read from the file when needed"
        return f"<Rows: {len(self)} examples, {where}>"

    def without(self, indices: set[int]) -> Rows:
        """These rows but those at `indices` (positions in this set of rows, which must be the full set)."""
        if self._leave_out:
            raise ValueError("rows are split once, from the full set")
        digest = hashlib.sha256(f"{self.digest} without {sorted(indices)}".encode()).hexdigest()
        return Rows(self._count, digest, self._kept, self._reread, frozenset(indices))

    def pick(self, indices: set[int]) -> list[Example]:
        """The rows at `indices`, in order, as a list (for a held-out set: small)."""
        last = max(indices, default=-1)
        return [e for i, e in enumerate(islice(self, last + 1)) if i in indices]


class Filtered:
    """The rows `keep` accepts, in order, read afresh each time they are iterated (as big Rows are); len counts
    them, once."""

    def __init__(self, rows, keep: Callable[[Example], bool]):
        self.rows, self.keep, self._count = rows, keep, None

    def __iter__(self) -> Iterator[Example]:
        return (e for e in self.rows if self.keep(e))

    def __len__(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self)
        return self._count
