"""How a model does on rows it is given: the loss of their answers, and what it answers to their questions.

The loss is the trainer's validation loss (mean over the trained tokens, labelled as training labels them),
so the base model and a tuned one measured on the same held-out file compare directly: a lower loss means
the model finds the expected answers more likely. The answers show what the figure means: each chat row's
last assistant turn is the expected answer, and the turns before it are the conversation it is asked in.
Raw-text rows count in the loss only; they hold no question. A row's tools are offered again when it is asked;
a row that ends on a tool's result is not asked (its first call is, by `calls`: right only when the model makes
exactly that call).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from core import inference
from core.data import tokenize
from core.data.example import Example

BATCH = 4  # rows per forward pass: small enough for any model that could be trained here
CALLS = 32  # tool calls asked of each model at most: each is a greedy generation of the expected call's length


@dataclass
class Question:
    source: str  # file:line of the row
    prompt: str  # the last user turn before the expected answer
    expected: str  # the row's last assistant turn
    system: str | None = None  # the row's system message, if any
    history: list[dict] | None = None  # the turns between the system message and the prompt
    tools: list[dict] | None = None  # the functions the row's assistant may call, offered again when asked


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


@dataclass
class Calls:
    """What a model does with the tools a row offers (`calls`)."""

    asked: int = 0  # turns that call a tool...
    right: int = 0  # ...in which the model makes exactly the expected call
    plain: int = 0  # turns that answer without a call though tools were offered...
    called: int = 0  # ...in which the model calls a tool anyway


def calls(model, tokenizer, examples: list[Example], limit: int = CALLS) -> Calls:
    """How the model uses tools, over the first `limit` rows that offer tools: each row's first assistant turn,
    asked after the turns before it (with the row's tools, written as training wrote them) and answered greedily.
    A turn that calls a tool is right only if the model's tokens are the expected turn's up to its end-of-turn
    token (the call's name and arguments, and stopping there); a turn that answers without a call counts when
    the model starts a call instead (its answer opens as the template opens a call). Both compare the rendered
    text, so they hold for any template's way of writing calls."""
    import torch

    rows = [e for e in examples if e.tools or any(m.get("tool_calls") for m in e.messages or ())][:limit]
    found = Calls()
    stops = _stop_ids(model, tokenizer)
    opening = call_opening(tokenizer)
    was_training = model.training
    model.eval()
    try:
        for e in rows:
            row = tokenize.encode(e, tokenizer, 10**9, "assistant")
            start, end = _runs(row.labels)[0]
            first = next(m for m in e.messages if m["role"] == "assistant")
            expected = row.input_ids[start:end]
            # The model's turn ends at its end-of-turn token; what the template writes after it is not the model's.
            ends = [i for i, t in enumerate(expected) if t in stops]
            expected = expected[:ends[0] + 1] if ends else expected
            size = len(expected) if first.get("tool_calls") else opening[1]
            prompt = torch.tensor([row.input_ids[:start]], device=model.device)
            with torch.no_grad():
                out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                     max_new_tokens=size, eos_token_id=sorted(stops) or None,
                                     pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            said = out[0, start:].tolist()
            if first.get("tool_calls"):
                found.asked += 1
                found.right += said == expected
            else:
                found.plain += 1
                found.called += tokenizer.decode(said).lstrip().startswith(opening[0])
    finally:
        model.train(was_training)
    return found


def call_opening(tokenizer) -> tuple[str, int]:
    """(the text an answer opens with when it calls a tool, as this tokenizer's template writes one, stripped of
    leading space; its length in tokens, and two more): what `calls` looks for in an answer expected to have none."""
    probe = Example(messages=[{"role": "user", "content": "Look it up."}, {"role": "assistant", "content": "",
                    "tool_calls": [{"type": "function", "function": {"name": "tfprobe_lookup", "arguments": {}}}]}],
                    tools=[{"type": "function", "function": {"name": "tfprobe_lookup"}}])
    row = tokenize.encode(probe, tokenizer, 10**9, "assistant")
    start, end = _runs(row.labels)[0]
    text = tokenizer.decode(row.input_ids[start:end])
    opening = text[:text.index("tfprobe_lookup")].lstrip() if "tfprobe_lookup" in text else text.lstrip()
    return opening, len(tokenizer(opening, add_special_tokens=False)["input_ids"]) + 2


def _stop_ids(model, tokenizer) -> set[int]:
    """The tokens that end the model's turn: its generation config's end-of-sequence ids and the tokenizer's."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


def _runs(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of trained tokens: one per assistant turn."""
    runs, start = [], None
    for i, t in enumerate([*labels, tokenize.IGNORE]):
        if t != tokenize.IGNORE and start is None:
            start = i
        elif t == tokenize.IGNORE and start is not None:
            runs.append((start, i))
            start = None
    return runs


def questions(examples: list[Example], limit: int) -> list[Question]:
    """The first `limit` chat rows that end in an answer, as questions to ask."""
    found = []
    for e in examples:
        if len(found) >= limit:
            break
        turns = list(e.messages or [])
        if len(turns) < 2 or turns[-1]["role"] != "assistant" or turns[-2]["role"] != "user" \
                or turns[-1].get("tool_calls"):  # a call is measured by `calls`
            continue
        system = turns[0]["content"] if turns[0]["role"] == "system" else None
        found.append(Question(e.source, turns[-2]["content"], turns[-1]["content"], system,
                              turns[1 if system is not None else 0:-2], e.tools))
    return found


ANSWER_TOKENS = 64  # the longest answer asked by default (more for a model that thinks first: inference.room)


def answers(model, tokenizer, asked: list[Question], max_new_tokens: int) -> list[str]:
    return [inference.reply(model, tokenizer, q.prompt, q.system, max_new_tokens, history=q.history, tools=q.tools)
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
    base_calls: Calls | None = None  # what the base model does with the rows' tools (`calls` above)
    tuned_calls: Calls | None = None  # ...and the tuned model

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
                   f"tuned, {self.base_preferred} with the base." if self.pairs else "") + self._bad_text()
                + self._calls_text())

    def _calls_text(self) -> str:
        """What the two models do with the tools: the expected calls made exactly, and calls where none is due."""
        base, tuned = self.base_calls, self.tuned_calls
        if base is None or tuned is None:
            return ""
        made = (f" The expected tool call is made exactly (its name, its arguments, then the turn's end) in "
                f"{tuned.right} of {tuned.asked} turns that call one tuned, {base.right} with the base."
                if tuned.asked else "")
        extra = (f" A tool is called where the answer needs none in {tuned.called} of {tuned.plain} turns tuned, "
                 f"{base.called} with the base." if tuned.plain else "")
        return made + extra

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
                **({"base_calls": asdict(self.base_calls), "tuned_calls": asdict(self.tuned_calls)}
                   if self.tuned_calls and (self.tuned_calls.asked or self.tuned_calls.plain) else {}),
                "answers": [{"source": q.source, "prompt": q.prompt, "expected": q.expected, "base": b, "tuned": t}
                            for q, b, t in zip(self.asked, self.base_answers, self.tuned_answers)]}
