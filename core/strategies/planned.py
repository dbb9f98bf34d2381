"""Strategies the planner knows but the trainer does not run yet (see the strategies issue)."""

from core.strategies import Strategy, register

register(Strategy("qlora", "LoRA over a 4-bit (nf4, double-quantized) frozen base.", False))
register(Strategy("lisa", "Layerwise sampling: a few full layers train at a time.", False))
register(Strategy("offload", "LoRA over a 4-bit base kept in RAM or on NVMe and streamed to the GPU layer by layer.",
                  False))
