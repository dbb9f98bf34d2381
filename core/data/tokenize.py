"""Turn Examples into token ids and labels: the loss falls on exactly the tokens that should teach.

Chat examples go through the model's own chat template (transformers renders it in a Jinja sandbox).
With train_on="assistant" only the assistant turns are labelled, their end-of-turn token included,
so the tuned model learns to stop. The spans are found on the rendered text (see chat_spans.py) and
mapped to tokens through the tokenizer's character offsets, which is exact even where a template's
pieces would tokenize differently on their own.

`encode` does one row and is the reference; `encode_many` gives the same result for many rows at
once: rows are rendered in batches, their spans found from one render each, and the batches are
tokenized by the Rust tokenizer on worker threads (it releases the GIL) while the next batch renders.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice

from core.data.chat_spans import ChatRenderer, render_chat, render_many
from core.data.chat_spans import trained_spans as _trained_spans
from core.data.dataset import Example
from core.data.token_stats import length_stats

IGNORE = -100
CHUNK = 1024  # rows per batch: big enough to amortise each call, small enough to overlap the stages

__all__ = ["IGNORE", "Encoded", "FullRow", "collate", "encode", "encode_all", "encode_many", "encode_rows",
           "iter_encoded", "iter_rows", "length_stats", "trains", "render_chat", "token_lengths"]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    source: str


@dataclass
class FullRow:
    """One row before truncation, with what a preview needs: the text the tokens came from and their offsets."""

    input_ids: list[int]
    labels: list[int]
    text: str
    offsets: list[tuple[int, int]] | None  # None where the tokenizer cannot give them (slow tokenizers, text rows)


def encode(example: Example, tokenizer, seq_len: int, train_on: str = "assistant") -> Encoded:
    if example.text is not None:
        ids = tokenizer(example.text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        labels = list(ids)
    else:
        full = render_chat(tokenizer, example.messages)
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if train_on == "all":
            labels = list(ids)
        else:
            spans = _trained_spans(tokenizer, example.messages, full)
            labels = [tid if any(s <= a < e for s, e in spans) and b > a else IGNORE
                      for tid, (a, b) in zip(ids, enc["offset_mapping"])]
    truncated = len(ids) > seq_len
    return Encoded(ids[:seq_len], labels[:seq_len], truncated, example.source)


def encode_many(examples: Iterable[Example], tokenizer, seq_len: int, train_on: str = "assistant") -> list[Encoded]:
    """[encode(e, tokenizer, seq_len, train_on) for e in examples], the same ids and labels, in batches."""
    return list(iter_encoded(examples, tokenizer, seq_len, train_on))


def iter_encoded(examples: Iterable[Example], tokenizer, seq_len: int, train_on: str = "assistant",
                 on_progress: Callable[[int], None] | None = None) -> Iterator[Encoded]:
    """encode_many, streamed: rows are read from `examples` one batch at a time and yielded in order."""
    for e, r in iter_rows(examples, tokenizer, train_on, on_progress):
        yield Encoded(r.input_ids[:seq_len], r.labels[:seq_len], len(r.input_ids) > seq_len, e.source)


def encode_all(examples: Iterable[Example], tokenizer, seq_len: int, train_on: str = "assistant") -> list[Encoded]:
    """Encode, dropping examples whose trained tokens were all cut off by truncation."""
    return [e for e in iter_encoded(examples, tokenizer, seq_len, train_on) if trains(e)]


def trains(row: Encoded) -> bool:
    """Whether any token of the row is a target (the first never is: nothing comes before it)."""
    return any(t != IGNORE for t in row.labels[1:])


def encode_rows(examples: Iterable[Example], tokenizer, train_on: str = "assistant") -> list[FullRow]:
    """Every row untruncated, in order, labelled as `encode` labels it."""
    return [r for _, r in iter_rows(examples, tokenizer, train_on)]


def iter_rows(examples: Iterable[Example], tokenizer, train_on: str = "assistant",
              on_progress: Callable[[int], None] | None = None) -> Iterator[tuple[Example, FullRow]]:
    """(example, its FullRow) for every example, in order, holding only a few batches at a time.

    on_progress(rows done so far) is called after each batch, for a progress bar.
    """
    tokenize_batch, workers = _batch_tokenizer(tokenizer)
    renderer = None
    done = 0
    pending: deque = deque()
    source = iter(examples)
    with ThreadPoolExecutor(workers) as pool:
        while chunk := list(islice(source, CHUNK)):
            chats = [e.messages for e in chunk if e.text is None]
            if renderer is None and chats and train_on != "all":
                renderer = ChatRenderer(tokenizer)
            rendered = render_many(tokenizer, chats)
            texts = [e.text for e in chunk if e.text is not None]
            jobs = (pool.submit(tokenize_batch, rendered, False), pool.submit(tokenize_batch, texts, True))
            # While the tokenizer works, find the spans on the rendered text (Python, holding the GIL).
            spans = [renderer.spans(m, full) for m, full in zip(chats, rendered)] if train_on != "all" else None
            pending.append((chunk, rendered, texts, spans, jobs))
            while len(pending) > workers:
                done = yield from _emit(tokenizer, pending.popleft(), done, on_progress)
        while pending:
            done = yield from _emit(tokenizer, pending.popleft(), done, on_progress)


def _emit(tokenizer, batch, done: int, on_progress) -> Iterator[tuple[Example, FullRow]]:
    chunk = batch[0]
    yield from zip(chunk, _finish(tokenizer, *batch))
    done += len(chunk)
    if on_progress is not None:
        on_progress(done)
    return done


def token_lengths(examples: Iterable[Example], tokenizer,
                  on_progress: Callable[[int], None] | None = None) -> list[int]:
    """Full lengths (before truncation) of each example as the model will see it."""
    return [len(r.input_ids) for _, r in iter_rows(examples, tokenizer, "all", on_progress)]


def collate(batch: list[Encoded], pad_id: int):
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _finish(tokenizer, chunk, rendered, texts, spans, jobs) -> list[FullRow]:
    chat_enc, text_enc = (iter(j.result()) for j in jobs)
    chats, plain, found = iter(rendered), iter(texts), iter(spans or ())
    eos = tokenizer.eos_token_id
    rows = []
    for e in chunk:
        if e.text is None:
            ids, offsets = next(chat_enc)
            labels = list(ids) if spans is None else _labels(ids, offsets, next(found))
            rows.append(FullRow(ids, labels, next(chats), offsets))
        else:
            ids, offsets = next(text_enc)
            if eos is not None:
                ids = ids + [eos]
            rows.append(FullRow(ids, list(ids), next(plain), offsets))
    return rows


def _labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """`encode`'s rule (a token is trained when it starts inside a span and is not empty), by bisection."""
    starts = [a for a, _ in offsets]
    if starts != sorted(starts):  # no tokenizer we know does this, but the rule must not depend on it
        return [t if any(s <= a < e for s, e in spans) and b > a else IGNORE for t, (a, b) in zip(ids, offsets)]
    labels = [IGNORE] * len(ids)
    for s, e in spans:
        for j in range(bisect_left(starts, s), bisect_left(starts, e)):
            a, b = offsets[j]
            if b > a:
                labels[j] = ids[j]
    return labels


def _batch_tokenizer(tokenizer):
    """(tokenize(texts, add_special_tokens) -> [(ids, offsets)], worker count).

    The Rust tokenizer's encode_batch is what `tokenizer(...)` calls underneath; calling it directly
    skips building dicts we do not need and lets two threads tokenize at once. It is only used when
    the wrapper would not change anything on the way (no truncation, padding or split special tokens
    configured); otherwise the wrapper does each batch on one thread, exactly as `encode` does.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    direct = (backend is not None and backend.truncation is None and backend.padding is None
              and not getattr(tokenizer, "split_special_tokens", False)
              and not getattr(backend, "encode_special_tokens", False))
    if direct:
        def tokenize_batch(texts: list[str], add_special_tokens: bool):
            encodings = backend.encode_batch(texts, add_special_tokens=add_special_tokens) if texts else []
            return [(e.ids, e.offsets) for e in encodings]

        return tokenize_batch, max(1, min(4, os.cpu_count() or 1))

    def wrapped(texts: list[str], add_special_tokens: bool):
        if not texts:
            return []
        if add_special_tokens:  # text rows: `encode` asks no offsets, and slow tokenizers have none
            return [(ids, None) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        return list(zip(enc["input_ids"], enc["offset_mapping"]))

    return wrapped, 1
