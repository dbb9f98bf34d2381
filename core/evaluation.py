"""How a model does on rows it is given: the loss of their answers, and what it answers to their questions.

The loss is the trainer's validation loss (mean over the trained tokens, labelled as training labels them),
so the base model and a tuned one measured on the same held-out file compare directly: a lower loss means
the model finds the expected answers more likely. The answers show what the figure means: each chat row's
last assistant turn is the expected answer, and the turns before it are the conversation it is asked in.
Raw-text rows count in the loss only; they hold no question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core import inference
from core.data import tokenize
from core.data.example import Example
from core.data.formats.tool_calls import uses_tools

BATCH = 4  # rows per forward pass: small enough for any model that could be trained here


@dataclass
class Question:
    source: str  # file:line of the row
    prompt: str  # the last user turn before the expected answer
    expected: str  # the row's last assistant turn
    system: str | None = None  # the row's system message, if any
    history: list[dict] | None = None  # the turns between the system message and the prompt


def mean_loss(model, encoded: list, pad_id: int, batch: int = BATCH, device=None) -> tuple[float | None, int]:
    """(loss per trained token, trained tokens) over encoded rows, batches sent to `device` (the model's when
    not given); (None, 0) when none trains."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch):
            rows = tokenize.collate(encoded[i:i + batch], pad_id)
            rows = {k: v.to(device or model.device) for k, v in rows.items()}
            n = int((rows["labels"][:, 1:] != tokenize.IGNORE).sum())
            if n:
                total += float(model(**rows).loss) * n
                count += n
    return (total / count if count else None), count


def loss(model, tokenizer, examples: list[Example], seq_len: int, train_on: str = "assistant"):
    """mean_loss of `examples` as the trainer would encode them."""
    pad_id = tokenize.pad_id_of(tokenizer)
    was_training = model.training
    model.eval()
    try:
        return mean_loss(model, tokenize.encode_all(examples, tokenizer, seq_len, train_on), pad_id)
    finally:
        model.train(was_training)


def preferred(model, tokenizer, examples: list[Example], seq_len: int, train_on: str = "assistant") -> tuple[int, int]:
    """(pairs whose chosen answer the model finds likelier per token than the rejected one, pairs measured) over
    the preference pairs among `examples` (core.objectives.pairs)."""
    from core.objectives import pairs as pair_data

    pairs = pair_data.encode_pairs([e for e in examples if e.rejected], tokenizer, seq_len, train_on)
    was_training = model.training
    model.eval()
    try:
        return pair_data.evaluate(model, pairs, tokenize.pad_id_of(tokenizer), BATCH, model.device)[1], len(pairs)
    finally:
        model.train(was_training)


def questions(examples: list[Example], limit: int) -> list[Question]:
    """The first `limit` chat rows that end in an answer, as questions to ask."""
    found = []
    for e in examples:
        if len(found) >= limit:
            break
        turns = list(e.messages or [])
        if len(turns) < 2 or turns[-1]["role"] != "assistant" or turns[-2]["role"] != "user":
            continue
        if uses_tools(turns, e.tools):  # asking needs the tools at hand to answer with: its loss still counts
            continue
        system = turns[0]["content"] if turns[0]["role"] == "system" else None
        found.append(Question(e.source, turns[-2]["content"], turns[-1]["content"], system,
                              turns[1 if system is not None else 0:-2]))
    return found


def answers(model, tokenizer, asked: list[Question], max_new_tokens: int) -> list[str]:
    return [inference.reply(model, tokenizer, q.prompt, q.system, max_new_tokens, history=q.history)
            for q in asked]


def perplexity_ratio(base: float, tuned: float) -> float:
    """How many times more likely, per token, the tuned model finds the expected answers than the base does."""
    return math.exp(base - tuned)


@dataclass
class Report:
    """A run measured on a file of rows: the base model against the tuned one."""

    data: str  # the file (or folder) the rows came from
    rows: int  # rows read for the loss (the first ones of the file)
    tokens: int  # answer tokens the loss counts
    base_loss: float | None
    tuned_loss: float | None
    asked: list[Question]
    base_answers: list[str]
    tuned_answers: list[str]
    weights: str = "last"  # which of the run's weights were measured (core.results: last, or best)
    step: int | None = None  # the step those weights are from
    pairs: int = 0  # preference pairs among the rows (chosen and rejected answers; core/objectives/pairs.py)...
    base_preferred: int = 0  # ...whose chosen answer the base model finds likelier than the rejected one
    tuned_preferred: int = 0  # ...and the tuned model
    rated_bad: int = 0  # rated answers among the rows rated bad (core/data/formats/rated.py): measured apart...
    base_bad_loss: float | None = None  # ...their loss with the base model...
    tuned_bad_loss: float | None = None  # ...and tuned (the rows rated good are the expected answers above)

    def summary(self) -> str:
        if self.base_loss is None or self.tuned_loss is None:
            return f"{self.data}: no row has an answer to measure within the run's sequence length."
        ratio = perplexity_ratio(self.base_loss, self.tuned_loss)
        verdict = (f"the tuned model finds the expected answers {ratio:.2f}× as likely per token" if ratio >= 1 else
                   f"the tuned model finds the expected answers less likely than the base ({ratio:.2f}× per token)")
        which = f" (the weights of step {self.step}, lowest validation loss)" if self.weights == "best" else ""
        return (f"{self.data}: {self.rows:,} rows, {self.tokens:,} answer tokens; loss {self.base_loss:.4f} with the "
                f"base model, {self.tuned_loss:.4f} tuned{which}: {verdict}."
                + (f" The chosen answer is the likelier in {self.tuned_preferred} of {self.pairs} preference pairs "
                   f"tuned, {self.base_preferred} with the base." if self.pairs else "") + self._bad_text())

    def _bad_text(self) -> str:
        """What the tuned model makes of the answers rated bad, which it should find less likely than the base."""
        if not self.rated_bad or self.base_bad_loss is None or self.tuned_bad_loss is None:
            return ""
        ratio = perplexity_ratio(self.base_bad_loss, self.tuned_bad_loss)
        return (f" The {self.rated_bad:,} answers rated bad: loss {self.base_bad_loss:.4f} with the base model, "
                f"{self.tuned_bad_loss:.4f} tuned ({ratio:.2f}× as likely per token"
                + ("; less likely, as rating them bad asks)." if ratio < 1 else ")."))

    def to_dict(self) -> dict:
        return {"data": self.data, "rows": self.rows, "tokens": self.tokens, "base_loss": self.base_loss,
                "tuned_loss": self.tuned_loss, "summary": self.summary(), "weights": self.weights, "step": self.step,
                **({"pairs": self.pairs, "base_preferred": self.base_preferred, "tuned_preferred": self.tuned_preferred}
                   if self.pairs else {}),
                **({"rated_bad": self.rated_bad, "base_bad_loss": self.base_bad_loss,
                    "tuned_bad_loss": self.tuned_bad_loss} if self.rated_bad else {}),
                "answers": [{"source": q.source, "prompt": q.prompt, "expected": q.expected, "base": b, "tuned": t}
                            for q, b, t in zip(self.asked, self.base_answers, self.tuned_answers)]}
