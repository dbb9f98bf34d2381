"""Strategies the planner knows but the trainer does not run yet (see the strategies issue)."""

from core.strategies import Strategy, register

register(Strategy("qlora", "LoRA over a 4-bit (nf4, double-quantized) frozen base.", False))
register(Strategy("lisa", "Layerwise sampling: a few full layers train at a time.", False))
register(Strategy("offload", "Weights and optimizer state streamed through RAM and NVMe.", False))
