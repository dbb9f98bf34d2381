"""Preference pairs as the pair objectives (ORPO, DPO, SimPO, KTO) train on them: both sides encoded, batched
together, scored in one forward pass.

A micro-batch holds its pairs' chosen rows, then their rejected rows, padded together; `score` gives each row's
summed NLL over its answer tokens and its count of them, from which every pair objective's loss is made. A step's
loss is the same mean however it is cut into micro-batches: each term is summed over the micro-batch and divided
by the whole step's count (`Totals`: the chosen answers' tokens, the pairs).

Rated answers (KTO) come as pairs too: each rated row with a mismatched one (its prompt, the next row's answer:
`Mismatched`), which measures how far the model has drifted from where it started on answers that are not about
the prompt (`kl_estimate`, KTO's reference point, no gradient through it). The pair carries the row's rating as
a signed weight (`Pairs.ratings`: positive for an answer rated good, negative for one rated bad), and only the
rated rows are scored with gradients (`side`).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.data import tokenize
from core.data.example import Example


class Pairs:
    """Preference pairs as the trainer indexes them: item k is (chosen row, rejected row), for the rows both of
    whose sides train (the sides are encoded apart, each dropping rows truncation left without an answer, and
    matched again by their source, file:line). With `reference` (a [pairs, 2] tensor of the starting model's
    summed log-probabilities, chosen then rejected), item k carries its pair's too; with `ratings` as well (rated
    answers: source → the row's signed weight), its rating after that."""

    def __init__(self, chosen, rejected, reference=None, ratings: dict[str, float] | None = None):
        where = {source: j for j, source in enumerate(_sources(rejected))}
        self.chosen, self.rejected, self.reference, self.ratings = chosen, rejected, reference, ratings
        self.index = [(i, where[s]) for i, s in enumerate(_sources(chosen)) if s in where]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int):
        i, j = self.index[k]
        if self.reference is None:
            return self.chosen[i], self.rejected[j]
        if self.ratings is None:
            return self.chosen[i], self.rejected[j], self.reference[k]
        return self.chosen[i], self.rejected[j], self.reference[k], self.ratings[self.chosen[i].source]

    def carrying(self, reference) -> Pairs:
        """The same pairs with these reference log-probabilities."""
        return Pairs(self.chosen, self.rejected, reference, self.ratings)

    def sources(self) -> list[str]:
        """Each pair's source (file:line), in order: what its reference log-probabilities are kept against."""
        chosen = _sources(self.chosen)
        return [chosen[i] for i, _ in self.index]

    def chosen_tokens(self) -> int:
        """Trained tokens of all the chosen answers."""
        return sum(_trained(self.chosen[i].labels) for i, _ in self.index)


class Some:
    """The pairs at `indices` only (DPO's reference pass over the pairs a run will train on)."""

    def __init__(self, pairs: Pairs, indices: list[int]):
        self.pairs, self.indices = pairs, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        return self.pairs[self.indices[k]]


class Rejected:
    """The rejected sides of preference rows as examples of their own (to encode and cache like any rows), read
    afresh each time they are iterated, as the rows themselves are."""

    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return (Example(e.rejected, tools=e.tools, source=e.source) for e in self.rows if e.rejected)


class Mismatched:
    """Rated answers' mismatched rows (KTO's reference point): each row's prompt with the next row's answer (the
    last row's with the first's), read afresh each time they are iterated. Fixed by the rows' order, as the
    paper's estimate pairs each prompt with another example's answer; a row's prompt is every turn before its last
    one, its answer that last turn (rated rows end with the answer rated)."""

    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        first = previous = None
        for e in self.rows:
            if previous is not None:
                yield _mismatch(previous, e)
            first, previous = first or e, e
        if previous is not None:
            yield _mismatch(previous, first)


class Unpaired:
    """Preference pairs as rated answers (KTO on pairs, as TRL's unpairing does): every pair's chosen conversation
    rated good, then every rejected one rated bad, each under its pair's source marked "(chosen)" or "(rejected)"
    (the pair objectives tell rows apart by source). Chosen ones first, so that a row's mismatched row (the next
    row's answer) never answers its own prompt, as a chosen answer followed by its rejected one would. Read afresh
    each time they are iterated, as the rows themselves are."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self) -> int:
        return 2 * len(self.rows)  # (a preference dataset's rows are all pairs: formats/preference.py)

    def __iter__(self):  # a row that is no pair (a separate validation set of chat rows) stays as it is
        for e in self.rows:
            yield Example(e.messages, e.tools, source=f"{e.source} (chosen)", desirable=True) if e.rejected else e
        for e in self.rows:
            if e.rejected:
                yield Example(e.rejected, e.tools, source=f"{e.source} (rejected)", desirable=False)


def rows_for(objective, data_format: str, train_rows, eval_rows) -> tuple[object, list, str | None]:
    """(training rows, held-out rows, what was done to them, or None) as `objective` learns from data of this
    format: a supervised run on rated answers keeps the ones rated good; KTO on preference pairs splits each pair
    into a good answer and a bad one (held-out pairs too)."""
    from core.data.formats import preference, rated
    from core.data.rows import Filtered
    from core.words import counted

    if data_format == rated.NAME and not objective.RATED:
        train_rows, eval_rows = Filtered(train_rows, _rated_good), [e for e in eval_rows if _rated_good(e)]
        return train_rows, eval_rows, (f"Training on the {counted(len(train_rows), 'answer')} rated good; the ones "
                                       "rated bad are left out (KTO learns from both)")
    if data_format == preference.NAME and objective.RATED:
        train_rows, eval_rows = Unpaired(train_rows), list(Unpaired(eval_rows))
        return train_rows, eval_rows, (f"Each of the {counted(len(train_rows) // 2, 'preference pair')} split in two "
                                       "for KTO: its chosen answer rated good, its rejected one rated bad")
    return train_rows, eval_rows, None


def _rated_good(example: Example) -> bool:
    return example.desirable is not False


def _mismatch(row: Example, other: Example) -> Example:
    return Example(row.messages[:-1] + other.messages[-1:], row.tools, source=row.source)


def encode_pairs(rows, tokenizer, seq_len: int, train_on: str = "assistant", chosen=None,
                 ratings: dict[str, float] | None = None) -> Pairs:
    """The preference pairs among `rows` with both sides encoded; `chosen`: the rows already encoded (their chosen
    sides), to encode only the other ones. With `ratings` (rated answers, by source), each row's other side is its
    mismatched row."""
    if chosen is None:
        chosen = tokenize.encode_all(rows, tokenizer, seq_len, train_on)
    other = Mismatched(rows) if ratings is not None else Rejected(rows)
    return Pairs(chosen, tokenize.encode_all(other, tokenizer, seq_len, train_on), ratings=ratings)


def for_run(cfg, objective, train_rows, train_set, eval_rows, eval_set, tok, cache,
            digest: str) -> tuple[Pairs, Pairs]:
    """(training pairs, held-out pairs): each row with its rejected side (preference pairs) or its mismatched row
    and rating (rated answers, KTO), the other sides encoded (and cached) as a dataset of their own. Held-out
    answers are weighed as the training ones are. `cfg` is the run's RunConfig, `cache` its token cache folder,
    `digest` its dataset's; a set with no pair that fits is a KnownError."""
    from core.data import token_cache
    from core.errors import KnownError
    from core.objectives import kto

    ratings = held_ratings = None
    if objective.RATED:  # (a separate validation set of unrated rows makes no held-out pairs: their loss alone)
        eval_rows = [e for e in eval_rows if e.desirable is not None]
        weight = kto.balance(e.desirable for e in train_rows)
        ratings, held_ratings = kto.ratings(train_rows, weight), kto.ratings(eval_rows, weight)
    other = Mismatched(train_rows) if objective.RATED else Rejected(train_rows)
    encoded = token_cache.encode_all_cached(other, tok, cfg.seq_len, cfg.train_on, cache,
                                            digest + (":mismatched" if objective.RATED else ":rejected"))
    pairs = Pairs(train_set, encoded, ratings=ratings)
    held = encode_pairs(eval_rows, tok, cfg.seq_len, cfg.train_on, chosen=eval_set, ratings=held_ratings)
    if not len(pairs) and objective.RATED:
        raise KnownError(f"{cfg.data_path}: no rated answer fits {cfg.seq_len} tokens with its prompt; raise the "
                         "sequence length.")
    if not len(pairs):
        raise KnownError(f"{cfg.data_path}: no row is a preference pair whose answers both fit {cfg.seq_len} "
                         "tokens; give preference pairs (chosen and rejected), or raise the sequence length.")
    return pairs, held


def _sources(rows) -> list[str]:
    sources = getattr(rows, "sources", None)  # token_cache.TokenRows reads them without the tokens
    return sources() if sources else [r.source for r in rows]


def _trained(labels) -> int:
    return sum(1 for t in labels[1:] if t != tokenize.IGNORE)


def collate(items: list, pad_id: int) -> dict:
    """One micro-batch: the chosen rows, then the rejected ones, padded together (with their reference
    log-probabilities in the same order, when the pairs carry them, and the chosen rows' ratings)."""
    batch = tokenize.collate([it[0] for it in items] + [it[1] for it in items], pad_id)
    if items and len(items[0]) >= 3:
        import torch

        batch["reference"] = torch.stack([it[2][0] for it in items] + [it[2][1] for it in items]).float()
        if torch.isnan(batch["reference"]).any():  # (with_reference works out only the pairs a run trains on)
            raise ValueError(f"{items[0][0].source}: a pair with no reference log-probabilities was batched.")
        if len(items[0]) == 4:
            batch["rating"] = torch.tensor([float(it[3]) for it in items])
    return batch


def side(batch: dict, rejected: bool) -> dict:
    """One half of a micro-batch of pairs as a batch of its own: the chosen rows, or the rejected (mismatched)
    ones, with their reference log-probabilities (the ratings go with the chosen rows), without the padding only
    the other half needed."""
    n = len(batch["labels"]) // 2
    rows = slice(n, None) if rejected else slice(0, n)
    out = {k: batch[k][rows] for k in ("input_ids", "attention_mask", "labels")}
    used = out["attention_mask"].any(0).nonzero()  # (rows are padded on the right: tokenize.collate)
    width = int(used[-1]) + 1 if len(used) else out["labels"].shape[1]
    out = {k: v[:, :width] for k, v in out.items()}
    if "reference" in batch:
        out["reference"] = batch["reference"][rows]
    if "rating" in batch and not rejected:
        out["rating"] = batch["rating"]
    return out


def chosen_tokens(batch: dict) -> int:
    """Trained tokens of the chosen answers in a micro-batch (the first half of its rows)."""
    labels = batch["labels"]
    return int((labels[: len(labels) // 2, 1:] != tokenize.IGNORE).sum())


@dataclass
class Totals:
    """What a step's (or a validation check's) terms are divided by, and (KTO) what they are measured from."""
    chosen_tokens: int  # trained tokens of the chosen answers
    pairs: int
    kl: float = 0.0  # rated answers: KTO's reference point over the step's mismatched rows (kl_estimate)

    @classmethod
    def of(cls, batches: list[dict]) -> Totals:
        return cls(sum(chosen_tokens(b) for b in batches), sum(len(b["labels"]) // 2 for b in batches))


@dataclass
class Scores:
    """One micro-batch of pairs, scored: rows are its chosen sides, then its rejected sides."""
    nll: object  # each row's NLL summed over its answer tokens (a float32 tensor, with grad while training)
    tokens: object  # each row's answer tokens
    reference: object = None  # each row's summed log-probability under the starting model (DPO, KTO), or None
    rating: object = None  # rated answers (KTO): each row's signed weight, > 0 for one rated good

    @property
    def half(self) -> int:
        return len(self.nll) // 2

    @property
    def mean_logp(self):
        """Each row's mean log-probability per answer token."""
        return -self.nll / self.tokens.clamp(min=1)

    def preferred(self) -> int:
        """Pairs whose chosen answer the model finds likelier, per token, than the rejected one (what every pair
        objective shows as the share preferred)."""
        mean = self.mean_logp.detach()
        return int((mean[: self.half] > mean[self.half:]).sum())


def score(model, batch: dict) -> Scores:
    """Each row's summed NLL over its answer tokens, from one forward pass over the micro-batch. Where our fused
    loss kernel is patched in (CUDA), it gives each token's loss without vocabulary-wide logits at all (prompt
    tokens skipped, the answers' in chunks). Elsewhere the logits are plain and only where they predict an answer
    token: from the first position that does in any row to the end (`logits_to_keep`), so the prompts, which come
    first and usually make most of a preference row, cost none."""
    import torch.nn.functional as F

    from tuneforge_kernels.patch import gives_token_losses

    targets = batch["labels"][:, 1:]
    trained = targets != tokenize.IGNORE
    if gives_token_losses(model):
        losses = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                       token_losses=True).loss
        return Scores(losses.sum(1), trained.sum(1), batch.get("reference"), batch.get("rating"))
    answered = trained.any(0).nonzero()
    first = int(answered[0]) if len(answered) else targets.shape[1] - 1
    keep = batch["labels"].shape[1] - first  # logits at positions first .. end; the last predicts past the row
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
    tail = targets[:, first:]
    nll = F.cross_entropy(logits[:, -keep:-1].flatten(0, 1).float(), tail.flatten(), ignore_index=tokenize.IGNORE,
                          reduction="none").view(tail.shape).sum(1)
    return Scores(nll, trained.sum(1), batch.get("reference"), batch.get("rating"))


def kl_estimate(model, batches: list[dict]) -> float:
    """KTO's reference point over these micro-batches: the mean, over their mismatched rows, of how much likelier
    the model finds them than the starting model did (log P - log P_ref), and at least 0; no gradients (the paper
    holds it fixed within a step). Over the whole step, so it does not depend on how the step is cut."""
    import torch

    raised, rows = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            s = score(model, side(batch, rejected=True))
            raised += float((-s.nll - s.reference).sum())
            rows += len(s.nll)
    return max(0.0, raised / max(1, rows))


def step_terms(model, batches: list[dict], rated: bool):
    """(the micro-batches' Totals, a function scoring one of them for its loss): the whole pairs, or (rated
    answers) the rated rows only, measured from the step's kl_estimate."""
    totals = Totals.of(batches)
    if not rated:
        return totals, lambda batch: score(model, batch)
    totals.kl = kl_estimate(model, batches)
    return totals, lambda batch: score(model, side(batch, rejected=False))


def chosen_nll(s: Scores, t: Totals):
    """The chosen answers' NLL as a share of the step's, per trained token (the supervised loss's measure)."""
    return s.nll[: s.half].sum() / max(1, t.chosen_tokens)


def _batches(pairs: Pairs, pad_id: int, batch: int, device):
    for i in range(0, len(pairs), batch):
        rows = collate([pairs[k] for k in range(i, min(i + batch, len(pairs)))], pad_id)
        yield {k: v.to(device) for k, v in rows.items()}


def evaluate(model, pairs: Pairs, pad_id: int, batch: int, device, loss=None,
             preferred=None) -> tuple[float | None, int]:
    """(the measure `loss(scores, totals)` reports, over all the pairs, or the chosen answers' loss per trained
    token without one; pairs preferred the right way: as `preferred(scores)` counts them, or the chosen answer
    likelier per token) with no gradients. `loss` and `preferred` are an objective's (core/objectives), `loss`
    with the whole set's totals (rated answers: measured from the whole set's kl_estimate), so the value is its
    mean over the set."""
    import torch

    rated = pairs.ratings is not None
    totals = Totals(pairs.chosen_tokens(), len(pairs))
    if rated:
        totals.kl = kl_estimate(model, list(_batches(pairs, pad_id, batch, device)))
    value, right = 0.0, 0
    with torch.no_grad():
        for rows in _batches(pairs, pad_id, batch, device):
            s = score(model, side(rows, rejected=False) if rated else rows)
            value += loss(s, totals)[1] if loss else float(chosen_nll(s, totals))
            right += preferred(s) if preferred else s.preferred()
    return (value if len(pairs) else None), right


def reference_logps(model, pairs: Pairs, pad_id: int, batch: int, device, on_progress=None):
    """The model's summed log-probability of each pair's chosen and rejected answer ([pairs, 2], float32 on the
    CPU), with no gradients, in eval mode: DPO's reference, worked out from the starting model before step 1."""
    import torch

    was_training = model.training
    model.eval()
    out, done = [], 0
    try:
        with torch.no_grad():
            for rows in _batches(pairs, pad_id, batch, device):
                nll = score(model, rows).nll.cpu()
                half = len(nll) // 2
                out.append(torch.stack([-nll[:half], -nll[half:]], 1))
                done += half
                if on_progress:
                    on_progress(done)
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros((0, 2))


def with_reference(path, pairs: Pairs, held: Pairs, seq_len: int, work_out,
                   seen: list[int] | None = None) -> tuple[Pairs, Pairs, bool]:
    """(the training pairs, the held-out pairs, each carrying its reference log-probabilities; whether they were
    worked out now). They are read from `path` when it holds them for exactly these pairs (a resumed run), else
    worked out by `work_out(pairs, pairs_before)` (reference_logps on the starting model) and kept there. Of the
    training pairs only those at `seen` are worked out, when given: the ones the run's steps train on (a short
    first try on a large set need not wait for all of them); the others are NaN, which collate refuses."""
    import torch

    seen = list(range(len(pairs))) if seen is None else seen
    key = _reference_key(pairs, held, seq_len, seen)
    found = _load_reference(path, key)
    fresh = found is None
    if fresh:
        train = torch.full((len(pairs), 2), float("nan"))
        if seen:
            train[torch.tensor(seen)] = work_out(Some(pairs, seen), 0)
        found = train, work_out(held, len(seen))
        _save_reference(path, key, *found)
    return pairs.carrying(found[0]), held.carrying(found[1]), fresh


def _reference_key(pairs: Pairs, held: Pairs, seq_len: int, seen: list[int]) -> str:
    """What a run's saved reference log-probabilities were worked out for: its pairs (by source), the ones its
    steps train on, and the sequence length."""
    import hashlib

    text = "\n".join([str(seq_len), *pairs.sources(), "--seen--", ",".join(map(str, seen)), "--held--",
                      *held.sources()])
    return hashlib.sha256(text.encode()).hexdigest()


def _save_reference(path, key: str, train, held) -> None:
    """Keep a run's reference log-probabilities (safetensors, written whole or not at all)."""
    from safetensors.torch import save_file

    from core import atomic

    with atomic.temp_file(path) as tmp:
        save_file({"train": train.contiguous(), "held": held.contiguous()}, str(tmp), metadata={"key": key})


def _load_reference(path, key: str):
    """(train, held) reference log-probabilities saved for exactly these pairs, or None (none saved, or saved for
    other pairs)."""
    from pathlib import Path

    from safetensors import safe_open

    if not Path(path).is_file():
        return None
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("key") != key:
            return None
        return f.get_tensor("train"), f.get_tensor("held")
