"""ORPO: learn the chosen answers, and to prefer them over the rejected ones, in one run.

ORPO (Hong, Lee and Thorne, 2024, "Monolithic Preference Optimization without Reference Model") adds to
the supervised loss of the chosen answer a term that widens the odds ratio between the chosen and the
rejected answer:

    loss = NLL(chosen) + beta * -log sigmoid( log odds(chosen) - log odds(rejected) )
    odds(y) = P(y) / (1 - P(y)),  P(y) = exp(mean log-probability of y's answer tokens)

Why it is the default for preference pairs: it needs no reference model (DPO compares against the model the run
started from), so it needs no pass before step 1 and no supervised run first: one run does both. The NLL is
summed over the chosen answers' tokens and divided by the step's count of them (as supervised steps are), the
odds-ratio term summed over pairs and divided by the step's pairs; the run reports the NLL alone (its
validation checks measure the same over the held-out pairs' chosen answers), the odds term shows as the share of
pairs preferred.
"""

from __future__ import annotations

from core.objectives.pairs import Scores, Totals, chosen_nll

NAME = "orpo"
LABEL = "ORPO"
SUMMARY = "learn the chosen answers and to prefer them over the rejected ones (no reference model)"
PAIRS = True
RATED = False
SHARE = ("Chosen preferred", "pair")  # what its share of pairs preferred the right way is called, of what
REFERENCE = False
BETA = 0.1  # the paper's lambda
BETA_RANGE = (0.0, 10.0)
BETA_HELP = "the weight of preferring the chosen answer against learning it (the paper's lambda, 0.1)"
LR_SCALE = 1.0  # the paper trains at supervised rates: it learns the answers too
WHY = ("the chosen answers are learned and preferred over the rejected ones, in one run with no reference model.")


def loss(s: Scores, t: Totals, beta: float):
    import torch
    import torch.nn.functional as F

    nll = chosen_nll(s, t)
    mean = s.mean_logp
    # log odds = log p - log(1 - p), with p = exp(mean) < 1: log(1 - p) = log(-expm1(mean)).
    log_odds = mean - torch.log(-torch.expm1(mean.clamp(max=-1e-6)))
    ratio = log_odds[: s.half] - log_odds[s.half:]
    return nll - beta * F.logsigmoid(ratio).sum() / max(1, t.pairs), float(nll.detach())


def preferred(s: Scores) -> int:
    """Pairs whose odds-ratio term is won: the chosen answer likelier per token (odds rise with the mean)."""
    return s.preferred()
