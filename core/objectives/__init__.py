"""What a run learns: one file each, registered here (STYLE §9).

An objective module says:

- NAME (what configs and the CLI call it), LABEL (how plans, History and `runs` show it) and SUMMARY (one line);
- PAIRS: whether it learns from preference pairs (a prompt with a chosen and a rejected answer) instead of
  answers alone; the pair machinery (encoding both sides, batching, one forward for both) is core/objectives/pairs.py;
- RATED: whether its pairs are rated answers (thumbs up or down, core/data/formats/rated.py), each with a
  mismatched row (KTO), instead of chosen and rejected answers;
- REFERENCE: whether its loss compares the model against the one the run started from, whose log-probabilities
  of the pairs a run trains on the trainer works out once, before step 1 (pairs.with_reference);
- for pair objectives, its strength: BETA (the default), BETA_RANGE and BETA_HELP, and `loss(scores, totals, beta)`:
  a micro-batch's share of the step's loss, with its share of what the run reports as its loss (the validation
  check reports the same measure over the held-out pairs, so the two curves compare);
- for pair objectives, `preferred(scores)`: how many of a micro-batch's pairs it counts as preferred the right
  way (what runs show as *Chosen preferred*: the chosen answer likelier per token for ORPO and SimPO; for DPO
  raised more than the rejected one against the starting model; for KTO, *rated right*: answers moved the way
  their rating says); SHARE: (what that share is called, of what);
- LR_SCALE: its learning rate as a share of the strategy's supervised one (the planner's default);
- WHY: the sentence a plan gives for choosing it.

Supervised tuning's loss is the model's own (transformers' cross-entropy, our fused kernel on CUDA), so sft.py
says only what it is.
"""

from __future__ import annotations

from core.errors import BadArgument
from core.objectives import dpo, kto, orpo, rpo, sft, simpo

OBJECTIVES = {m.NAME: m for m in (sft, orpo, dpo, rpo, simpo, kto)}
NAMES = tuple(OBJECTIVES)
DEFAULT_FOR_PAIRS = orpo.NAME  # no reference model and no supervised run first: it works with every strategy
DEFAULT_FOR_RATED = kto.NAME  # the one objective that learns from answers rated one at a time


def get(name: str):
    if name not in OBJECTIVES:
        raise BadArgument(f"Unknown objective '{name}'; choose one of {', '.join(NAMES)}.")
    return OBJECTIVES[name]


def learns_pairs(name: str) -> bool:
    return get(name).PAIRS


def learns_rated(name: str) -> bool:
    return get(name).RATED


def sequences_held(name: str) -> int:
    """Sequences an example holds for backward, as the memory model counts them: two for a preference pair, one
    for a rated answer (its mismatched row's forward pass has no gradient) or a supervised row."""
    return 2 if get(name).PAIRS and not get(name).RATED else 1


def share_words(name: str) -> tuple[str, str]:
    """(what a preference run's share preferred the right way is called, what it counts): ('Chosen preferred',
    'pair'), or ('Rated right', 'answer') for KTO; unknown names (an old run's) read as pairs."""
    module = OBJECTIVES.get(name)
    return getattr(module, "SHARE", None) or orpo.SHARE


def label(name: str) -> str:
    """How a run's objective is shown beside its strategy: '' for supervised runs, else e.g. 'DPO'."""
    return "" if name in ("", sft.NAME) else get(name).LABEL


def beta(name: str, given: float | None) -> float | None:
    """The strength a run trains with: the one given, else the objective's default."""
    return get(name).BETA if given is None else given
