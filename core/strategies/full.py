"""Full fine-tuning: every weight trains. Best quality, most memory (weights + grads + 2 Adam moments)."""

from __future__ import annotations

from core.strategies import Strategy, register


def _prepare(model, config):
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _save(model, folder) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)


def _load(base, folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=base.dtype)


register(Strategy("full", "Every weight trains with AdamW; for small models or big GPUs.", True,
                  "model", _prepare, _save, _load))
