"""Full fine-tuning: every weight trains. Best quality, most memory: on a GPU each bf16 weight also
has a bf16 gradient, an fp32 master and two fp32 Adam moments (16 bytes a weight), so it suits
small models or big GPUs; 8-bit AdamW or Adafactor shrink the optimizer's share."""

from __future__ import annotations

from dataclasses import dataclass

from core import optimizers
from core.settings import check, option
from core.strategies import Strategy, register


@dataclass(frozen=True)
class FullOptions:
    optimizer: str = option("adamw", help="One of " + optimizers.HELP + ".")

    def __post_init__(self):
        check(self.optimizer in optimizers.NAMES, "optimizer", f"must be one of {', '.join(optimizers.NAMES)}.")


def load_full_model(base, folder):
    """A saved full model (the whole HF folder), in the base's dtype."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=base.dtype).to(base.device)


@register
class Full(Strategy):
    name = "full"
    summary = "Every weight trains; for small models or big GPUs."
    Options = FullOptions
    result = "model"
    activations = "full"
    trains_base = True

    def trainable_params(self, shape, setup) -> int:
        return shape.params

    def prepare(self, model, opts, cfg):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def load(self, base, folder):
        return load_full_model(base, folder)
