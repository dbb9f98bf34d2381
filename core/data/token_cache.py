"""Tokenized data kept on disk by content hash, so a second run over the same data starts at once.

The key covers everything the ids and labels depend on: the rows themselves (their digest when the
caller has one, as a dataset's Rows do, else a hash of each row), the dataset digest, the tokenizer
(its tokenizer.json, chat template and special tokens), the sequence length and what is trained.

An entry is a folder of flat little-endian arrays plus meta.json, written as rows are tokenized (a
batch at a time, so a 1 GB dataset never sits in memory as Python lists) into a temporary folder
that is renamed at the end. It is read back memory-mapped: `TokenRows` hands out one row at a time.
Nothing is ever unpickled; an entry that is unreadable, partial or for another key counts as absent
and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from array import array
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from core import atomic
from core.data.example import Example
from core.data.tokenize import Encoded, iter_encoded, trains

FORMAT = 3  # bump when what is stored, or how encode_all computes it, changes (3: chat_spans.asked)
FLUSH_TOKENS = 1 << 20  # tokens buffered before a write
# name -> (numpy dtype, array typecode); ids and labels fit int32 (vocabularies are far below 2**31)
ARRAYS = {"input_ids": ("<i4", "i"), "labels": ("<i4", "i"), "bounds": ("<i8", "q"), "truncated": ("u1", "B"),
          "source_bounds": ("<i8", "q"), "sources": ("u1", "B")}


def tokenizer_identity(tokenizer) -> str:
    """A hash of what decides how text becomes ids: the tokenizer's definition and its chat template."""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:  # a slow tokenizer: its class and vocabulary stand for the definition
        h.update(type(tokenizer).__name__.encode())
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps([getattr(tokenizer, "chat_template", None), tokenizer.special_tokens_map,
                         tokenizer.eos_token_id], sort_keys=True, default=str).encode())
    return h.hexdigest()


def rows_digest(examples: Iterable[Example]) -> str:
    """The rows' own identity; a dataset's Rows carry it already (see rows.py), a plain list is hashed."""
    digest = getattr(examples, "digest", None)
    if digest:
        return digest
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.source, e.messages, e.text, *([e.tools] if e.tools else [])], ensure_ascii=False,
                            sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def cache_key(examples: Iterable[Example], tokenizer, seq_len: int, train_on: str, digest: str) -> str:
    parts = [FORMAT, digest, rows_digest(examples), tokenizer_identity(tokenizer), seq_len, train_on]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class TokenRows:
    """The stored rows of one entry, as a read-only sequence of Encoded (memory-mapped, one row at a time)."""

    def __init__(self, folder: Path, arrays: dict[str, np.ndarray]):
        self.folder = folder
        self._a = arrays

    def __len__(self) -> int:
        return len(self._a["truncated"])

    def __getitem__(self, i: int) -> Encoded:
        if not -len(self) <= i < len(self):
            raise IndexError("row index out of range")
        i %= len(self)
        a, b = int(self._a["bounds"][i]), int(self._a["bounds"][i + 1])
        s, e = int(self._a["source_bounds"][i]), int(self._a["source_bounds"][i + 1])
        return Encoded(self._a["input_ids"][a:b].tolist(), self._a["labels"][a:b].tolist(),
                       bool(self._a["truncated"][i]), bytes(self._a["sources"][s:e]).decode("utf-8"))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other) -> bool:
        return isinstance(other, (TokenRows, list)) and len(self) == len(other) and all(
            x == y for x, y in zip(self, other))

    def lengths(self) -> list[int]:
        return np.diff(self._a["bounds"]).tolist()

    def sources(self) -> list[str]:
        """Each row's source (file:line), without reading its tokens."""
        cut, text = self._a["source_bounds"], bytes(self._a["sources"])
        return [text[int(a):int(b)].decode("utf-8") for a, b in zip(cut[:-1], cut[1:])]

    def total_tokens(self) -> int:
        return int(self._a["bounds"][-1])


def encode_all_cached(examples: Iterable[Example], tokenizer, seq_len: int, train_on: str, cache_dir: str | Path,
                      digest: str = "", on_progress: Callable[[int], None] | None = None) -> TokenRows:
    """encode_all's rows, read from cache_dir when this exact work was done before, else computed and stored.

    on_progress(rows tokenized so far) is called after each batch while tokenizing.
    """
    key = cache_key(examples, tokenizer, seq_len, train_on, digest)
    folder = Path(cache_dir) / f"tokens-{key[:32]}"
    found = load(folder, key)
    if found is not None:
        return found
    rows = (e for e in iter_encoded(examples, tokenizer, seq_len, train_on, on_progress) if trains(e))
    save(folder, key, rows)
    stored = load(folder, key)
    if stored is None:  # only a disk that does not keep what was written gets here
        raise OSError(f"{folder}: the tokenized data just written cannot be read back; check the disk.")
    return stored


def save(folder: Path, key: str, rows: Iterable[Encoded]) -> None:
    """Write rows as an entry (replacing any there), streaming: a batch of tokens at a time."""
    with atomic.folder(folder, replace=True) as tmp:
        files = {name: open(tmp / f"{name}.bin", "wb") for name in ARRAYS}
        try:
            buffers = {name: array(code) for name, (_, code) in ARRAYS.items()}
            buffers["bounds"].append(0)
            buffers["source_bounds"].append(0)
            tokens = source_bytes = count = 0
            for row in rows:
                buffers["input_ids"].extend(row.input_ids)
                buffers["labels"].extend(row.labels)
                tokens += len(row.input_ids)
                buffers["bounds"].append(tokens)
                buffers["truncated"].append(row.truncated)
                name = row.source.encode("utf-8")
                buffers["sources"].extend(name)
                source_bytes += len(name)
                buffers["source_bounds"].append(source_bytes)
                count += 1
                if len(buffers["input_ids"]) >= FLUSH_TOKENS:
                    _flush(buffers, files)
            _flush(buffers, files)
        finally:
            for f in files.values():
                f.close()
        meta = {"format": FORMAT, "key": key, "rows": count, "tokens": tokens, "source_bytes": source_bytes}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")


def _flush(buffers: dict[str, array], files: dict) -> None:
    for name, buf in buffers.items():
        np.frombuffer(buf, dtype=buf.typecode).astype(ARRAYS[name][0], copy=False).tofile(files[name])
        del buf[:]


def load(folder: Path, key: str) -> TokenRows | None:
    """The stored rows, or None when the entry is missing, damaged or not for this key (then it is removed)."""
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        sizes = {"input_ids": meta["tokens"], "labels": meta["tokens"], "bounds": meta["rows"] + 1,
                 "truncated": meta["rows"], "source_bounds": meta["rows"] + 1, "sources": meta["source_bytes"]}
        if meta.get("format") != FORMAT or meta.get("key") != key:
            raise ValueError("another entry")
        arrays = {}
        for name, (dtype, _) in ARRAYS.items():
            path = folder / f"{name}.bin"
            if path.stat().st_size != sizes[name] * np.dtype(dtype).itemsize:
                raise ValueError(f"{name} is partial")
            arrays[name] = (np.memmap(path, dtype=dtype, mode="r") if sizes[name]
                            else np.zeros(0, dtype=dtype))
        bounds = arrays["bounds"]
        if bounds[0] != 0 or bounds[-1] != meta["tokens"] or bool(np.any(np.diff(bounds) < 0)):
            raise ValueError("bounds are not in order")
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return TokenRows(folder, arrays)
