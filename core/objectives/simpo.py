"""SimPO: prefer the chosen answers by a margin in mean log-probability per token, with no reference model.

SimPO (Meng, Xia and Chen, 2024, "Simple Preference Optimization with a Reference-Free Reward") takes each
answer's mean log-probability per token (length-normalised, as generation scores it) as its reward, and asks the
chosen answer to beat the rejected one by a target margin gamma:

    loss = -log sigmoid( beta * mean log P(chosen) - beta * mean log P(rejected) - gamma ),  gamma = 0.5 * beta

(the paper's setting for Llama-3-8B: beta 2.0, gamma/beta 0.5). Like DPO it does not learn the answers as such;
unlike DPO it needs no reference pass. The run reports the SimPO loss, and its validation checks the same over
the held-out pairs.
"""

from __future__ import annotations

from core.objectives.pairs import Scores, Totals

NAME = "simpo"
LABEL = "SimPO"
SUMMARY = "prefer the chosen answers by a margin per token (no reference model)"
PAIRS = True
RATED = False
SHARE = ("Chosen preferred", "pair")  # what its share of pairs preferred the right way is called, of what
REFERENCE = False
BETA = 2.0
BETA_RANGE = (0.01, 20.0)
BETA_HELP = "how sharply the margin per token counts (the paper's beta, 2.0); the target margin is half of it"
GAMMA_PER_BETA = 0.5
LR_SCALE = 0.1  # as DPO: without the answers' own loss, a supervised rate pulls the model off its answers
WHY = ("the model learns to prefer the chosen answers by a margin in mean log-probability per token, with no "
       "reference model; the answers themselves are not learned, so start from a model that already answers in "
       "the right form.")


def loss(s: Scores, t: Totals, beta: float):
    import torch.nn.functional as F

    mean = s.mean_logp
    margin = beta * (mean[: s.half] - mean[s.half:]) - GAMMA_PER_BETA * beta
    value = -F.logsigmoid(margin).sum() / max(1, t.pairs)
    return value, float(value.detach())


def preferred(s: Scores) -> int:
    """Pairs whose chosen answer is likelier per token (the paper's reward accuracy: a margin above 0)."""
    return s.preferred()
