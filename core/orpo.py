"""Preference tuning with ORPO: learn the chosen answers, and to prefer them over the rejected ones.

ORPO (Hong, Lee and Thorne, 2024, "Monolithic Preference Optimization without Reference Model") adds to
the supervised loss of the chosen answer a term that widens the odds ratio between the chosen and the
rejected answer:

    loss = NLL(chosen) + beta * -log sigmoid( log odds(chosen) - log odds(rejected) )
    odds(y) = P(y) / (1 - P(y)),  P(y) = exp(mean log-probability of y's answer tokens)

Why ORPO and not DPO: it needs no reference model (DPO keeps a frozen copy of the model, or a second
forward through the base with the adapter off), so it works with every strategy, full fine-tuning and
LISA included, and needs no supervised run first: one run does both. What it costs over supervised
tuning is a second sequence per example (the rejected answer) and the full logits of both, since the
loss needs each row's log-probability rather than one mean; the planner counts both.

A step's loss is the same mean however it is cut into micro-batches: the NLL is summed over the chosen
answers' tokens and divided by the step's count of them (as supervised steps are), the odds-ratio term
summed over pairs and divided by the step's pairs.
"""

from __future__ import annotations

from core.data import tokenize
from core.data.example import Example

NAME = "orpo"


class Pairs:
    """Preference pairs as the trainer indexes them: item k is (chosen row, rejected row), for the rows both of
    whose sides train (the sides are encoded apart, each dropping rows truncation left without an answer, and
    matched again by their source, file:line)."""

    def __init__(self, chosen, rejected):
        where = {source: j for j, source in enumerate(_sources(rejected))}
        self.chosen, self.rejected = chosen, rejected
        self.index = [(i, where[s]) for i, s in enumerate(_sources(chosen)) if s in where]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int):
        i, j = self.index[k]
        return self.chosen[i], self.rejected[j]


class Rejected:
    """The rejected sides of preference rows as examples of their own (to encode and cache like any rows), read
    afresh each time they are iterated, as the rows themselves are."""

    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return (Example(e.rejected, source=e.source) for e in self.rows if e.rejected)


def encode_pairs(rows, tokenizer, seq_len: int, train_on: str = "assistant", chosen=None) -> Pairs:
    """The preference pairs among `rows` with both sides encoded; `chosen`: the rows already encoded (their chosen
    sides), to encode only the rejected ones."""
    if chosen is None:
        chosen = tokenize.encode_all(rows, tokenizer, seq_len, train_on)
    return Pairs(chosen, tokenize.encode_all(Rejected(rows), tokenizer, seq_len, train_on))


def _sources(rows) -> list[str]:
    sources = getattr(rows, "sources", None)  # token_cache.TokenRows reads them without the tokens
    return sources() if sources else [r.source for r in rows]


def collate(pairs: list, pad_id: int) -> dict:
    """One micro-batch: the chosen rows, then the rejected ones, padded together."""
    return tokenize.collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id)


def chosen_tokens(batch: dict) -> int:
    """Trained tokens of the chosen answers in a micro-batch (the first half of its rows)."""
    labels = batch["labels"]
    return int((labels[: len(labels) // 2, 1:] != tokenize.IGNORE).sum())


def scores(model, batch: dict):
    """(each row's summed NLL over its answer tokens, each pair's log-odds ratio of chosen over rejected) for a
    micro-batch of pairs, from one forward pass."""
    import torch
    import torch.nn.functional as F

    labels = batch["labels"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = labels[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=tokenize.IGNORE,
                          reduction="none").view(targets.shape).sum(1)
    mean_logp = -nll / (targets != tokenize.IGNORE).sum(1).clamp(min=1)
    # log odds = log p - log(1 - p), with p = exp(mean_logp) < 1: log(1 - p) = log(-expm1(mean_logp)).
    log_odds = mean_logp - torch.log(-torch.expm1(mean_logp.clamp(max=-1e-6)))
    half = len(labels) // 2
    return nll, log_odds[:half] - log_odds[half:]


def loss(model, batch: dict, chosen_total: int, pairs_total: int, beta: float):
    """(this micro-batch's share of the step's ORPO loss, its share of the chosen answers' NLL alone, how many of
    its pairs the model prefers the right way). The NLL alone is what a run reports as its training loss: the
    same measure as its validation loss, so the two curves compare (the odds term shows in `prefers`)."""
    import torch.nn.functional as F

    nll, ratio = scores(model, batch)
    chosen = nll[: len(ratio)].sum() / max(1, chosen_total)
    total = chosen - beta * F.logsigmoid(ratio).sum() / max(1, pairs_total)
    return total, float(chosen.detach()), int((ratio > 0).sum())
