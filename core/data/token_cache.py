"""Tokenized data kept on disk by content hash, so a second run over the same data starts at once.

The key covers everything the ids and labels depend on: the dataset digest and the rows themselves
(the caller may pass a split of the dataset, and a reader change can turn the same bytes into
different rows), the tokenizer (its tokenizer.json, chat template and special tokens), the sequence
length and what is trained. A file is one .npz of plain arrays, loaded with pickling off, written
atomically; one that is unreadable, partial or for another key counts as absent and is rewritten.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from core import atomic
from core.data.dataset import Example
from core.data.tokenize import Encoded, encode_all

FORMAT = 1  # bump when what is stored, or how encode_all computes it, changes


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


def cache_key(examples: list[Example], tokenizer, seq_len: int, train_on: str, digest: str) -> str:
    h = hashlib.sha256(json.dumps([FORMAT, digest, tokenizer_identity(tokenizer), seq_len, train_on]).encode())
    for e in examples:
        h.update(json.dumps([e.source, e.messages, e.text], ensure_ascii=False, sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def encode_all_cached(examples: list[Example], tokenizer, seq_len: int, train_on: str, cache_dir: str | Path,
                      digest: str = "") -> list[Encoded]:
    """encode_all's result, read from cache_dir when this exact work was done before, else computed and stored."""
    key = cache_key(examples, tokenizer, seq_len, train_on, digest)
    path = Path(cache_dir) / f"tokens-{key[:32]}.npz"
    found = load(path, key, examples)
    if found is not None:
        return found
    encoded = encode_all(examples, tokenizer, seq_len, train_on)
    save(path, key, examples, encoded)
    return encoded


def save(path: Path, key: str, examples: list[Example], encoded: list[Encoded]) -> None:
    # encode_all keeps rows in order and drops some, so each kept row is found by walking forward.
    index, at = [], 0
    for enc in encoded:
        while examples[at].source != enc.source:
            at += 1
        index.append(at)
        at += 1
    bounds = np.cumsum([0] + [len(e.input_ids) for e in encoded], dtype=np.int64)
    buf = io.BytesIO()
    np.savez(buf, key=np.array(key), rows=np.array(index, dtype=np.int64), bounds=bounds,
             truncated=np.array([e.truncated for e in encoded], dtype=bool),
             input_ids=np.fromiter((t for e in encoded for t in e.input_ids), dtype=np.int64, count=int(bounds[-1])),
             labels=np.fromiter((t for e in encoded for t in e.labels), dtype=np.int64, count=int(bounds[-1])))
    atomic.write_bytes(path, buf.getvalue())


def load(path: Path, key: str, examples: list[Example]) -> list[Encoded] | None:
    """The stored rows, or None when the file is missing, damaged or not for this key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in ("key", "rows", "bounds", "truncated", "input_ids", "labels")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    rows, bounds = arrays["rows"], arrays["bounds"]
    sound = (str(arrays["key"]) == key and len(bounds) == len(rows) + 1 == len(arrays["truncated"]) + 1
             and bounds[0] == 0 and bool(np.all(np.diff(bounds) >= 0))
             and bounds[-1] == len(arrays["input_ids"]) == len(arrays["labels"])
             and bool(np.all((rows >= 0) & (rows < len(examples)))))
    if not sound:
        return None
    ids, labels = arrays["input_ids"].tolist(), arrays["labels"].tolist()
    edges = bounds.tolist()
    return [Encoded(ids[edges[i]:edges[i + 1]], labels[edges[i]:edges[i + 1]], bool(t), examples[r].source)
            for i, (r, t) in enumerate(zip(rows.tolist(), arrays["truncated"].tolist()))]
