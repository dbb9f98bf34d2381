"""Supervised tuning: learn the answers (the loss on the trained tokens of each row, mean over the step's tokens).

The loss is the model's own cross-entropy (our fused linear cross-entropy on CUDA), worked out in
core/training.py; this file says what the objective is, for the registry."""

NAME = "sft"
LABEL = "SFT"
SUMMARY = "learn the answers (supervised)"
PAIRS = False
RATED = False
REFERENCE = False
BETA = None  # no strength to set: the answers are the whole loss
LR_SCALE = 1.0  # of the strategy's learning rate
