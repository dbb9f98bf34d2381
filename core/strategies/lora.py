"""LoRA and DoRA through peft: low-rank adapters on every linear layer but the output head.

Why all linear layers: adapting attention and MLP both is what QLoRA found to match full
fine-tuning; peft's "all-linear" picks them for any architecture and leaves the head alone.
"""

from __future__ import annotations

from core.strategies import Strategy, register


def _prepare(model, config, use_dora: bool = False):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules="all-linear", task_type="CAUSAL_LM", use_dora=use_dora,
    )
    return get_peft_model(model, lora)


def save(model, folder) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)


def load(base, folder):
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(folder), is_trainable=False)


register(Strategy("lora", "Low-rank adapters on every linear layer; the base stays frozen.", True,
                  "adapter", _prepare, save, load))
register(Strategy("dora", "Weight-decomposed LoRA: adapters plus a learned magnitude per output.", True,
                  "adapter", lambda m, c: _prepare(m, c, use_dora=True), save, load))
