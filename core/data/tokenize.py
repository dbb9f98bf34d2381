"""Turn Examples into token ids and labels: the loss falls on exactly the tokens that should teach.

Chat examples go through the model's own chat template (transformers renders it in a Jinja sandbox).
With train_on="assistant" only the assistant turns are labelled, their end-of-turn token included,
so the tuned model learns to stop; with train_on="last" only the final one (the answer a preference pair or a
rating is about: the turns before it are its prompt). The spans are found on the rendered text (see
chat_spans.py) and mapped to tokens through the tokenizer's character offsets, which is exact even where a
template's pieces would tokenize differently on their own. An answer that calls a tool trains like any other,
and a tool's result is read like a user turn; tool_render.py decides how they are written for the model. An
answer's reasoning trains with it, written where the template reads it or as <think> text (reasoning.py).

`encode` does one row and is the reference; `encode_many` gives the same result for many rows at
once, in batches, each step exact on its own terms (the argument for each is in its module):
- a row that calls tools through the template's own tool format, or whose reasoning is in a field the template
  reads, is rendered alone (its tools are its own; a shape is keyed on a message's fields and their values);
- a row's text and spans come from its shape's skeleton (chat_spans.py), with no render of the row
  where the template is proven to copy contents verbatim (template_check.py), else from one render;
- the text is cut at the tokenizer's added tokens and each distinct piece is encoded once
  (piece_tokenize.py), by the Rust tokenizer on worker threads (it releases the GIL) while the next
  batch is prepared; tokenizers it cannot vouch for encode whole texts, as before;
- labels are worked out a piece at a time (token_labels.py), offsets only when a preview asks.
"""

from __future__ import annotations

import gc
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice

from core.data import tool_render
from core.data.chat_spans import ChatRenderer, render_chat, render_many
from core.data.chat_spans import trained_spans as _trained_spans
from core.data.dataset import Example
from core.data.formats.tool_calls import uses_tools
from core.data.piece_tokenize import Piece, PieceTokenizer, ids_of, offsets_of
from core.data.token_labels import IGNORE, by_offsets, by_pieces
from core.data.token_stats import length_stats
from core.errors import DatasetError

CHUNK = 1024  # rows per batch: big enough to amortise each call, small enough to overlap the stages

__all__ = ["IGNORE", "Encoded", "FullRow", "chat_text", "collate", "encode", "encode_all", "encode_many",
           "encode_rows", "iter_encoded", "iter_rows", "length_stats", "trains", "render_chat", "token_lengths"]


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    source: str


class FullRow:
    """One row before truncation, with what a preview needs: the text the tokens came from and their offsets.

    `offsets` is None where the tokenizer cannot give them (slow tokenizers, text rows). Rows tokenized
    by pieces work them out on first use, since only a preview reads them.
    """

    __slots__ = ("input_ids", "labels", "text", "_offsets", "_pieces")

    def __init__(self, input_ids: list[int], labels: list[int], text: str,
                 offsets: list[tuple[int, int]] | None = None, pieces: list[Piece] | None = None):
        self.input_ids, self.labels, self.text = input_ids, labels, text
        self._offsets, self._pieces = offsets, pieces

    @property
    def offsets(self) -> list[tuple[int, int]] | None:
        if self._pieces is not None:
            self._offsets, self._pieces = offsets_of(self._pieces), None
        return self._offsets

    def __eq__(self, other) -> bool:
        return isinstance(other, FullRow) and (self.input_ids, self.labels, self.text, self.offsets) == (
            other.input_ids, other.labels, other.text, other.offsets)

    def __repr__(self) -> str:
        return f"FullRow(input_ids={self.input_ids!r}, labels={self.labels!r}, text={self.text!r})"


def encode(example: Example, tokenizer, seq_len: int, train_on: str = "assistant") -> Encoded:
    if example.text is not None:
        ids = tokenizer(example.text, add_special_tokens=True)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        labels = list(ids)
    else:
        messages, tools = tool_render.written(tokenizer, example.messages, example.tools)
        full = _rendered(tokenizer, messages, tools, example.source)
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        if train_on == "all":
            labels = list(ids)
        else:
            spans = kept(_trained_spans(tokenizer, messages, full, tools), train_on)
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
    def cut(e: Example, r: FullRow) -> Encoded:  # a row's lists are its own (FullRow is not kept): no copy
        if len(r.input_ids) <= seq_len:
            return Encoded(r.input_ids, r.labels, False, e.source)
        return Encoded(r.input_ids[:seq_len], r.labels[:seq_len], True, e.source)

    for batch in _batches(examples, tokenizer, train_on, on_progress, cut):
        yield from batch


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
    for batch in _batches(examples, tokenizer, train_on, on_progress, lambda e, r: (e, r)):
        yield from batch


def _batches(examples: Iterable[Example], tokenizer, train_on: str, on_progress: Callable[[int], None] | None,
             make: Callable[[Example, FullRow], object]) -> Iterator[list]:
    """make(example, its FullRow) for every example, a batch at a time."""
    tokenize_batch, workers = _batch_tokenizer(tokenizer)
    chat: _ChatPath | None = None
    done = 0
    pending: deque = deque()
    source = iter(examples)
    with ThreadPoolExecutor(workers) as pool:
        while chunk := list(islice(source, CHUNK)):
            if chat is None and any(e.text is None for e in chunk):
                chat = _ChatPath(tokenizer, train_on)
            with _gc_paused():
                chats = [e for e in chunk if e.text is None]
                texts = [e.text for e in chunk if e.text is not None]
                # Python work (rendering, spans, cutting into pieces) while the tokenizer works on earlier batches.
                rendered, spans = chat.render(chats) if chats else ([], None)
                pieces, chat_job = chat.tokenize(rendered, pool, tokenize_batch) if chats else (None, None)
                jobs = (chat_job, pool.submit(tokenize_batch, texts, True))
                pending.append((chunk, rendered, texts, spans, pieces, jobs))
            while len(pending) > workers:
                done = yield from _emit(tokenizer, pending.popleft(), done, on_progress, make)
        while pending:
            done = yield from _emit(tokenizer, pending.popleft(), done, on_progress, make)


def _emit(tokenizer, batch, done: int, on_progress, make) -> Iterator[list]:
    with _gc_paused():
        out = [make(e, r) for e, r in zip(batch[0], _finish(tokenizer, *batch))]
        del batch  # the batch's texts, spans and FullRows go now, before the collector is back
    yield out
    done += len(out)
    if on_progress is not None:
        on_progress(done)
    return done


@contextmanager
def _gc_paused():
    """Build a batch without the cyclic garbage collector: what is built here holds no cycles, yet its
    allocations set off full collections that walk everything the caller has built so far (on 20,000
    rows they took about as long as the tokenizing). Never held across a yield, so the caller's own code
    runs with the collector as it was; other threads see it paused for one batch at most."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _ChatPath:
    """How chat rows are rendered and tokenized, chosen once per call (each choice exact, see the modules)."""

    def __init__(self, tokenizer, train_on: str):
        self.tokenizer = tokenizer
        self.train_on = train_on
        self.renderer = ChatRenderer(tokenizer)
        self.pieces, self.pieces_reason = PieceTokenizer.for_tokenizer(tokenizer)

    def render(self, chats: list[Example]) -> tuple[list[str], list | None]:
        """Each row's text and (unless training on everything) its trained spans."""
        texts: list = [None] * len(chats)
        spans: list = [None] * len(chats)
        rest, conversations = [], []
        for i, e in enumerate(chats):
            messages, tools = tool_render.written(self.tokenizer, e.messages, e.tools)
            conversations.append(messages)
            # The template's own tool or reasoning fields: a row at a time (a skeleton keys on a message's fields).
            if uses_tools(messages, tools) or any(len(m) > 2 for m in messages):  # (role and content are two)
                texts[i] = full = _rendered(self.tokenizer, messages, tools, e.source)
                if self.train_on != "all":
                    spans[i] = kept(_trained_spans(self.tokenizer, messages, full, tools), self.train_on)
                continue
            got = self.renderer.filled(messages)  # no render where the template is proven verbatim
            if got is None:
                rest.append(i)
            else:
                texts[i], spans[i] = got[0], kept(got[1], self.train_on)
        if rest:
            for i, full in zip(rest, render_many(self.tokenizer, [conversations[i] for i in rest])):
                texts[i] = full
                if self.train_on != "all":
                    spans[i] = kept(self.renderer.spans(conversations[i], full), self.train_on)
        return texts, (None if self.train_on == "all" else spans)

    def tokenize(self, texts: list[str], pool, tokenize_batch):
        """(each row's pieces or None, the job tokenizing what is new)."""
        if self.pieces is None:
            return None, pool.submit(tokenize_batch, texts, False)
        self.pieces.forget_if_full()
        new: list[Piece] = []
        rows = [self.pieces.split(t, new) for t in texts]
        return rows, pool.submit(self.pieces.encode, new)


def chat_text(tokenizer, example: Example) -> str:
    """A chat row's text as the model sees it (its tool calls written as tool_render.py says)."""
    messages, tools = tool_render.written(tokenizer, example.messages, example.tools)
    return _rendered(tokenizer, messages, tools, example.source)


def _rendered(tokenizer, messages: list[dict], tools: list[dict] | None, source: str) -> str:
    """render_chat, with a template's refusal of a row that calls tools said about that row (Llama 3.1's takes one
    call a turn, Mistral's wants call ids of nine characters)."""
    if not uses_tools(messages, tools):
        return render_chat(tokenizer, messages)
    try:
        return render_chat(tokenizer, messages, tools=tools)
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{source}: the model's chat template refuses this conversation's tool calls "
                           f"({str(e).strip() or type(e).__name__}); fix the row, or leave it out.") from None


def kept(spans: list[tuple[int, int]], train_on: str) -> list[tuple[int, int]]:
    """The assistant turns' spans that train: all of them, or the last one alone (train_on="last")."""
    return spans[-1:] if train_on == "last" else spans


def token_lengths(examples: Iterable[Example], tokenizer,
                  on_progress: Callable[[int], None] | None = None) -> list[int]:
    """Full lengths (before truncation) of each example as the model will see it."""
    return [len(r.input_ids) for _, r in iter_rows(examples, tokenizer, "all", on_progress)]


def pad_id_of(tokenizer) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its end of sequence (labels ignore it anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


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


def _finish(tokenizer, chunk, rendered, texts, spans, pieces, jobs) -> list[FullRow]:
    chat_job, text_job = jobs
    chat_enc = iter((chat_job.result() if chat_job else None) or ())  # with pieces, the job filled them in
    text_enc = iter(text_job.result())
    chats, plain, found, cut = iter(rendered), iter(texts), iter(spans or ()), iter(pieces or ())
    eos = tokenizer.eos_token_id
    rows = []
    for e in chunk:
        if e.text is None:
            if pieces is not None:
                parts = next(cut)
                if spans is None:
                    ids = ids_of(parts)
                    labels = list(ids)
                else:
                    ids, labels = by_pieces(parts, next(found))
                rows.append(FullRow(ids, labels, next(chats), pieces=parts))
            else:
                ids, offsets = next(chat_enc)
                labels = list(ids) if spans is None else by_offsets(ids, offsets, next(found))
                rows.append(FullRow(ids, labels, next(chats), offsets))
        else:
            ids, offsets = next(text_enc)
            if eos is not None:
                ids = ids + [eos]
            rows.append(FullRow(ids, list(ids), next(plain), offsets))
    return rows


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
