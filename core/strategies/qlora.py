"""QLoRA: LoRA adapters over a frozen base stored in 4-bit (bitsandbytes nf4 with double quantization).

The recipe of the QLoRA paper: nf4 codes (quantiles of a normal distribution, the best 4-bit grid
for normally distributed weights), double quantization (the per-64 absmax constants are themselves
quantized to 8 bits, saving about 0.37 bits per weight), compute in bf16 where the GPU has it, and
paged 8-bit AdamW on CUDA (its state moves to RAM under memory spikes instead of crashing).
bitsandbytes' 4-bit also runs on the CPU, so QLoRA is tested in CI too (compute in fp32 there).

Unlike peft's `prepare_model_for_kbit_training` we do not upcast norms, embeddings and head to fp32:
that costs memory the planner does not count, for no measured gain in bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import optimizers
from core.settings import check, option
from core.strategies import register
from core.strategies.lora import Lora, LoraOptions


FOUR_BIT_EXPERTS = ("Frozen, the experts need no 16-bit weights (adapters would be added into them), so they are "
                    "stored in 4 bits as the linear layers are, each expert on its own.")


@dataclass(frozen=True)
class QLoraOptions(LoraOptions):
    quant_type: str = option("nf4", help="4-bit code book: 'nf4' (normal-float, best for weights) or 'fp4'.")
    double_quant: bool = option(True, help="Quantize the quantization constants too (saves ~0.37 bits/weight).")
    optimizer: str = option("auto", help="'auto' (paged 8-bit AdamW on CUDA, AdamW on the CPU) or one of "
                                         + optimizers.HELP + ".")

    def __post_init__(self):
        super().__post_init__()
        check(self.quant_type in ("nf4", "fp4"), "quant_type", "must be nf4 or fp4.")
        names = [n for n in optimizers.NAMES if n not in optimizers.LOW_RANK]
        check(self.optimizer in ("auto", *names), "optimizer", f"must be auto or one of {', '.join(names)}.")


@register
class QLora(Lora):
    name = "qlora"
    summary = "LoRA over a 4-bit (nf4, double-quantized) frozen base."
    Options = QLoraOptions
    base_storage = "nf4"
    kept_going_on = Lora.kept_going_on + ("quant_type", "double_quant")  # the 4-bit base it was trained against
    experts_in_4bit = True  # core/four_bit_experts.py

    def plan_variants(self, options: dict) -> list[tuple[dict, str]]:
        """LoRA's; frozen experts are kept in 4 bits as well (core/four_bit_experts.py), which the plan says."""
        four_bit = options.get("quantize", True)  # offload's quantize=false keeps the whole base in 16 bits
        return [(opts, f"{why} {FOUR_BIT_EXPERTS}" if why and four_bit else why)
                for opts, why in super().plan_variants(options)]

    def optimizer_name(self, opts, device: str) -> str:
        if opts.optimizer == "auto":  # paging needs CUDA's unified memory
            return "paged_adamw8bit" if device == "cuda" else "adamw"
        return opts.optimizer

    def load_model(self, path, dtype, device, opts):
        """transformers' 4-bit loader; a mixture of experts is read a layer at a time instead (its experts, where
        they train no adapters, in 4 bits too: core/four_bit_experts.py)."""
        if self.experts_in_4bit and mixture_of_experts(path):
            return self.load_experts(path, dtype, device, opts)
        return self.load_4bit(path, dtype, device, opts)

    def load_experts(self, path, dtype, device, opts):
        """A mixture of experts, layer by layer (core/offload/layerwise.py `resident`): the linear layers quantized
        as transformers' loader does, the experts kept in 4 bits when frozen, so no more than a layer's experts are
        ever on the device in 16 bits (and a checkpoint whose experts are MXFP4, gpt-oss's, which transformers will
        not load beside bitsandbytes, loads). Where the checkpoint cannot be read so, transformers' loader, the
        experts quantized after, with the reason in `tuneforge_load_note` for the run's log."""
        import torch

        from core import four_bit_experts
        from core.offload import layerwise
        from core.offload.install import StreamSettings
        from core.strategies.lisa import decoder_layers

        frozen = opts.experts is False
        settings = StreamSettings(quantize=True, quant_type=opts.quant_type, double_quant=opts.double_quant,
                                  experts_4bit=frozen)
        model, why = layerwise.resident(path, dtype, torch.device(device), settings, decoder_layers)
        if model is None:
            model = self.load_4bit(path, dtype, device, opts)
            if frozen:
                four_bit_experts.quantize_experts(model, torch.device(device), opts.quant_type, opts.double_quant)
                model.tuneforge_load_note = (f"The experts were loaded in 16 bits before being quantized ({why}), so "
                                             "loading took more memory than training does.")
        if frozen:
            four_bit_experts.use_four_bit_experts(model)
        return model

    def before_step(self, step: int, model, optimizer, opts, cfg) -> str | None:
        return model.get_base_model().__dict__.pop("tuneforge_load_note", None)

    def load_4bit(self, path, dtype, device, opts):
        """transformers' 4-bit loader: the decoder's linear layers in 4 bits, the rest (experts too) in `dtype`."""
        import torch
        from transformers import BitsAndBytesConfig

        from core import causal_lm

        from core.offload.layerwise import UNQUANTIZED

        # The output head stays in 16 bits as transformers keeps it by default (naming any module replaces that list)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=opts.quant_type,
                                   bnb_4bit_use_double_quant=opts.double_quant, bnb_4bit_compute_dtype=dtype,
                                   llm_int8_skip_modules=["lm_head", *UNQUANTIZED])
        # device_map always: without it a visible GPU would receive the 4-bit weights of a CPU run.
        model = causal_lm.from_pretrained(str(path), dtype=dtype, quantization_config=quant,
                                                     device_map={"": torch.device(device)})
        return let_the_file_go(model) if torch.device(device).type == "cpu" else model


def mixture_of_experts(path) -> bool:
    """Whether the model in `path` is a mixture of experts (its config says so)."""
    import json
    from pathlib import Path

    from core.model_shape import ModelShape

    return bool(ModelShape.from_config(json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))).experts)


def let_the_file_go(model):
    """On the CPU, the weights bitsandbytes leaves in full precision (embeddings, head, norms) are views of the
    checkpoint's memory-mapped file when it is stored in the run's precision, so the file stays mapped and every
    page the 4-bit conversion read stays resident with it (0.3 GiB of the default model's 0.5 GiB file). Copies
    of those few weights let the mapping go."""
    for param in model.parameters():
        if type(param).__name__ != "Params4bit":
            param.data = param.data.clone()
    return model
