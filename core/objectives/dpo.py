"""DPO: prefer the chosen answers over the rejected ones more than the model the run started from did.

DPO (Rafailov et al., 2023, "Direct Preference Optimization") trains on the margin between how much the model has
raised the chosen answer's log-probability and the rejected one's, each against the starting model (the
reference):

    loss = -log sigmoid( beta * [ (log P(chosen) - log P_ref(chosen)) - (log P(rejected) - log P_ref(rejected)) ] )

with log P summed over each answer's tokens. The reference's log-probabilities are worked out once, before step
1, from the starting model (the base, or the weights the run goes on from), for the pairs the run's steps train
on and the held-out ones, and kept in the run's folder: no second model is held while training, and every
strategy can use it, full fine-tuning and LISA included. What it costs is that pass, about half the steps' time
for those pairs (a short first try on a large set works out only the pairs it trains on). It does not learn the
answers as such (only their margin), so it suits a model that already answers in the right form: an instruct
model, or a supervised run's result.
The run reports the DPO loss (log 2 ≈ 0.693 at the start, when the model is its own reference), and its
validation checks the same over the held-out pairs, against their own reference log-probabilities; the share of
pairs preferred is the paper's reward accuracy (the chosen answer raised more than the rejected one).
"""

from __future__ import annotations

from core.objectives.pairs import Scores, Totals

NAME = "dpo"
LABEL = "DPO"
SUMMARY = "prefer the chosen answers more than the starting model did (a reference pass before step 1)"
PAIRS = True
RATED = False
SHARE = ("Chosen preferred", "pair")  # what its share of pairs preferred the right way is called, of what
REFERENCE = True
BETA = 0.1  # the paper's, and the usual
BETA_RANGE = (0.001, 10.0)
BETA_HELP = ("how far the model may move from where it started to prefer the chosen answers (the paper's beta, "
             "0.1): lower moves further")
# Of the strategy's (supervised) learning rate. Measured on the demo's pairs, LoRA on SmolLM2-135M, 30 steps: at
# 2e-4 the model collapsed (its answers "Mmmmm…", the DPO loss 0.0015); at 6e-5 it held; 2e-5 is common practice's
# side (the alignment handbook's QLoRA DPO recipe: 5e-6).
LR_SCALE = 0.1
WHY = ("the model learns to prefer the chosen answers over the rejected ones more than the starting model did "
       "(its log-probabilities of every pair are worked out once before step 1, about half an epoch's time, "
       "counted in the time); the answers themselves are not learned, so start from a model that already answers "
       "in the right form.")


def loss(s: Scores, t: Totals, beta: float):
    import torch.nn.functional as F

    if s.reference is None:
        raise ValueError("DPO needs the reference log-probabilities of the pairs (pairs.reference_logps).")
    raised = -s.nll - s.reference  # log P - log P_ref, each row
    value = -F.logsigmoid(beta * (raised[: s.half] - raised[s.half:])).sum() / max(1, t.pairs)
    return value, float(value.detach())


def preferred(s: Scores) -> int:
    """Pairs whose chosen answer the model has raised more than the rejected one, each against the starting model
    (the paper's reward accuracy). Not the chosen answer likelier outright: DPO widens the margin from where the
    model started, which may leave the rejected answer the likelier one (the demo's pirate answers stayed less
    likely per token while the DPO loss fell from 0.69 to 0.03)."""
    raised = (-s.nll - s.reference).detach()
    return int((raised[: s.half] > raised[s.half:]).sum())
