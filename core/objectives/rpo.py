"""RPO: DPO with the chosen answers' own loss added, so they are learned while the preference grows.

Pang et al., 2024, "Iterative Reasoning Preference Optimization", train on DPO's loss plus the supervised loss
of the chosen answer (its NLL per token), with weight 1:

    loss = NLL(chosen) / |chosen| + DPO

Why beside DPO: DPO widens the margin between the chosen and the rejected answer, each against the starting
model, and lets both fall while it does (the demo's pirate answers stayed less likely per token as the DPO loss
fell); the NLL term holds the chosen answers up, as ORPO's does, so RPO suits data whose chosen answers are worth
learning as such, from a model that does not yet give them. It keeps DPO's reference pass before step 1 and its
strength (beta). The NLL is summed over the chosen answers' tokens and divided by the step's count of them (as
supervised steps are), DPO's term summed over pairs and divided by the step's pairs; the run reports the NLL
(as ORPO's runs do: its validation checks measure the same over the held-out pairs' chosen answers), and DPO's
reward accuracy shows as the share of pairs preferred.
"""

from __future__ import annotations

from core.objectives import dpo
from core.objectives.pairs import Scores, Totals, chosen_nll

NAME = "rpo"
LABEL = "RPO"
SUMMARY = "DPO plus the chosen answers' own loss: learn them, and prefer them more than the starting model did"
PAIRS = True
RATED = False
SHARE = dpo.SHARE
REFERENCE = True
BETA = dpo.BETA
BETA_RANGE = dpo.BETA_RANGE
BETA_HELP = dpo.BETA_HELP
# The supervised rate: the NLL holds the model to its chosen answers where DPO alone collapsed. Measured on the demo's
# pairs, LoRA on SmolLM2-135M, 30 CPU steps at 2e-4 (DPO's collapse rate): the pirate voice learned, the chosen
# answer the likelier in 10 of 12 held-out pairs (base: 0), validation NLL 0.71 and falling.
LR_SCALE = 1.0
WHY = ("the model learns the chosen answers (their own loss, as supervised tuning) and to prefer them over the "
       "rejected ones more than the starting model did (DPO's term: the log-probabilities of every pair are worked "
       "out once before step 1, about half an epoch's time, counted in the time); unlike DPO alone, the chosen "
       "answers cannot become less likely while the preference grows.")


def loss(s: Scores, t: Totals, beta: float):
    nll = chosen_nll(s, t)
    preference, _ = dpo.loss(s, t, beta)
    return nll + preference, float(nll.detach())


preferred = dpo.preferred
