"""Turn Examples into token ids and labels: the loss falls on exactly the tokens that should teach.

Chat examples go through the model's own chat template (transformers renders it in a Jinja sandbox).
With train_on="assistant" only the assistant turns are labelled, their end-of-turn token included,
so the tuned model learns to stop. The spans are found on the rendered text (render the conversation
up to each assistant turn) and mapped to tokens through the tokenizer's character offsets, which is
exact even where a template's pieces would tokenize differently on their own.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from core.data.dataset import Example
from core.errors import DatasetError

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    source: str


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise DatasetError("The model has no chat template, so chat data cannot be rendered; use a chat model "
                           "or a 'text' dataset.")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _trained_spans(tokenizer, messages: list[dict], full: str) -> list[tuple[int, int]]:
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(render_chat(tokenizer, messages[:i], add_generation_prompt=True))
        end = len(render_chat(tokenizer, messages[: i + 1]))
        if not full.startswith(render_chat(tokenizer, messages[: i + 1])):
            raise DatasetError("The model's chat template is not prefix-stable, so assistant turns cannot be "
                               "located; train on all tokens instead (train_on='all').")
        spans.append((start, end))
    return spans


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


def encode_all(examples: list[Example], tokenizer, seq_len: int, train_on: str = "assistant") -> list[Encoded]:
    """Encode, dropping examples whose trained tokens were all cut off by truncation."""
    out = [encode(e, tokenizer, seq_len, train_on) for e in examples]
    return [e for e in out if any(t != IGNORE for t in e.labels[1:])]


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


def length_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {"count": 0}
    ordered = sorted(lengths)
    return {"count": len(ordered), "min": ordered[0], "median": int(statistics.median(ordered)),
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1],
            "total": sum(ordered)}


def token_lengths(examples: list[Example], tokenizer) -> list[int]:
    """Full lengths (before truncation) of each example as the model will see it."""
    return [len(encode(e, tokenizer, seq_len=10**9).input_ids) for e in examples]
