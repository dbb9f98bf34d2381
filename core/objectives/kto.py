"""KTO: learn from answers rated good or bad one at a time (thumbs up or down), no pairs needed.

KTO (Ethayarajh et al., 2024, "KTO: Model Alignment as Prospect Theoretic Optimization") raises the answers rated
good and lowers the ones rated bad, each against the starting model and measured from a reference point z0:

    r(x, y) = log P(y | x) - log P_ref(y | x)          (summed over the answer's tokens)
    z0      = max(0, mean r(x, y') over mismatched rows: each prompt with another row's answer), no gradient
    loss    = lambda_D * (1 - sigmoid(beta * (r - z0)))  for an answer rated good
              lambda_U * (1 - sigmoid(beta * (z0 - r)))  for one rated bad

averaged over the step's rated answers. z0 is how far the model has drifted on answers that are not about the
prompt: an answer counts as raised only by more than that. It is worked out over the whole step's mismatched rows
(pairs.kl_estimate), so a step's loss is the same however it is cut into micro-batches; with no gradient, the
mismatched rows cost a forward pass and no memory for backward (the plan counts them so: STEP_COST). The
weights balance the two kinds: lambda_D is 1 and lambda_U the training set's good answers per bad one, so both
kinds weigh the same in all (the paper advises lambda_D n_D / lambda_U n_U between 1 and 4/3; TRL leaves both
at 1).
Like DPO, the starting model's log-probabilities (of every rated and mismatched row the run trains on) are worked
out once before step 1 and kept, and the answers are not learned as such: start from a model that already
answers in the right form. The run reports the KTO loss (0.5 at the start, with balanced weights), its
validation checks the same over the held-out answers, and the share *rated right* counts answers moved the way
their rating says against the starting model (raised if good, lowered if bad).
"""

from __future__ import annotations

from core.objectives.pairs import Scores, Totals

NAME = "kto"
LABEL = "KTO"
SUMMARY = "raise the answers rated good and lower the ones rated bad (a reference pass before step 1)"
PAIRS = True  # each rated answer is batched with its mismatched row (pairs.Mismatched)
RATED = True
SHARE = ("Rated right", "answer")  # answers moved the way their rating says (preferred)
REFERENCE = True
BETA = 0.1  # the paper's, and TRL's default
BETA_RANGE = (0.001, 10.0)
BETA_HELP = ("how far the model may move from where it started to raise the good answers and lower the bad ones "
             "(the paper's beta, 0.1): lower moves further")
LR_SCALE = 0.1  # as DPO (its collapse at supervised rates measured on the demo); the paper trains at DPO's rates
# A step's time against a supervised step over its rated rows: their forward and backward, and the mismatched
# rows' forward, about half as long (as the reference pass was measured against pair steps: core/planner.py).
# The mismatched rows take no gradient, so they hold no activations: the memory is a supervised step's.
STEP_COST = 1.5
WHY = ("the answers rated good are raised and the ones rated bad lowered, each against the starting model (its "
       "log-probabilities of every answer are worked out once before step 1, about two thirds of an epoch's time, "
       "counted in the time); the answers are not learned as such, so start from a model that already answers in "
       "the right form.")


def loss(s: Scores, t: Totals, beta: float):
    import torch

    if s.reference is None or s.rating is None:
        raise ValueError("KTO needs each answer's rating and reference log-probability (pairs.reference_logps).")
    shift = beta * (-s.nll - s.reference - t.kl)  # beta * (r - z0), each rated row
    good = s.rating > 0
    missed = 1 - torch.sigmoid(torch.where(good, shift, -shift))
    value = (s.rating.abs() * missed).sum() / max(1, t.pairs)
    return value, float(value.detach())


def preferred(s: Scores) -> int:
    """Answers moved the way their rating says against the starting model: raised if rated good, lowered if bad."""
    raised = (-s.nll - s.reference).detach()
    return int(((raised > 0) & (s.rating > 0) | (raised < 0) & (s.rating < 0)).sum())


def balance(ratings) -> float:
    """lambda_U for `ratings` (True for good): balance_of their counts."""
    good = bad = 0
    for r in ratings:
        good, bad = good + bool(r), bad + (not r)
    return balance_of(good, bad)


def balance_of(good: int, bad: int) -> float:
    """lambda_U: the good answers per bad one, so both kinds weigh the same; 1 when either kind is missing."""
    return good / bad if good and bad else 1.0


def ratings(rows, undesirable_weight: float) -> dict[str, float]:
    """Each rated row's signed weight by source: 1 for an answer rated good, -lambda_U for one rated bad."""
    return {e.source: 1.0 if e.desirable else -undesirable_weight for e in rows}
