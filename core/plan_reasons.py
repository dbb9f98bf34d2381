"""The planner's sentences: why a rung of the ladder was taken, what moved off the GPU, what turning our
kernels off costs, and why each other strategy was not chosen (each other strategy is fitted again, so
"not needed" and "does not fit" are told apart by the same search the plan made)."""

from __future__ import annotations

from core import memory_model as mm
from core import strategies
from core.errors import BadArgument
from core.model_shape import ModelShape
from core.plan_fit import fit, options_for, settings_of
from core.plan_target import Target

GIB = mm.GIB
WHY_NOT_WHEN_FITS = {
    "lora": "fits, but {chosen} was chosen for the reasons above.",
    "full": "fits, but adapters train faster, are tiny to keep, and are enough for most tasks; "
            "ask for it with --strategy full.",
    "dora": "fits, but costs more activation memory and about 1.5× LoRA's time for a small quality gain; "
            "ask for it with --strategy dora.",
    "qlora": "not needed: LoRA fits with the base in {base}, which is faster and a little more accurate than 4-bit.",
    "lisa": "fits; layerwise sampling can beat LoRA at similar memory; ask for it with --strategy lisa.",
    "offload": "not needed: the weights fit on the GPU, and streaming them would make each step slower.",
}
WHY_NOT_ON_CPU = {  # where the GPU-side reason means nothing
    "offload": "not needed: on the CPU the weights are in RAM already; offload streams them to a GPU.",
}


def why_rung(shape: ModelShape, strategy: str, ckpt: bool, target: Target, options: dict) -> str:
    size = f"{shape.params / 1e9:.1f}B" if shape.params >= 1e9 else f"{shape.params / 1e6:.0f}M"
    where = f"{target.limit / GIB:.1f} GiB"
    base = base_words(target)
    if strategy == "lora":
        adapters = shape.lora_params(strategies.get(strategy, need_built=False).options(options).r)
        text = (f"Strategy lora: the {size} base stays frozen in {base} and low-rank adapters "
                f"({adapters / 1e6:.1f}M weights) train on every linear layer; it fits {where}")
    else:  # qlora and offload are the ladder's lower rungs; a strategy off it (a re-plan's first rung) stays
        text = {
            "qlora": f"Strategy qlora: the {size} base in {base} does not fit {where} for training, so the frozen "
                     "base is stored in 4-bit nf4 with double quantization and adapters train on top",
            "offload": f"Strategy offload: even a 4-bit {size} base does not fit {where} with room to train, so "
                       "the frozen weights stay in RAM (or on NVMe) and stream to the GPU layer by layer",
        }.get(strategy, f"Strategy {strategy} as before")
    return text + (", with gradient checkpointing (layers recompute their activations in backward)." if ckpt
                   else ", without gradient checkpointing (fastest).")


def base_words(target: Target) -> str:
    """How the frozen base is held when it is not quantized: 16-bit on a GPU, fp32 on the CPU."""
    return "fp32" if target.precision == "fp32" else "16-bit"


def offloaded(strategy: str, setup: mm.Setup) -> str:
    """What the plan moves off the GPU, in words ('' for nothing)."""
    disk = " on disk" if setup.weights_on_disk else ""
    parts = [f"weights{disk}" if strategy == "offload" else f"frozen layers{disk}" if setup.frozen_streamed else "",
             "optimizer" if setup.offload == "optimizer" else "",
             "activations" if setup.activations_on_host and not setup.layer_major and setup.on_gpu else ""]
    return " and ".join(p for p in parts if p)


def kernels_reason(asked: list[str], why: str = "as you asked") -> str:
    """What turning some of our kernels off costs, in the plan's words."""
    text = f"Our kernels: only {', '.join(asked)}, {why}." if asked else f"Our kernels are off, {why}."
    if "cross_entropy" not in asked:
        text += " Without the fused loss the full logits are built, and their memory is counted."
    return text


def rejected(shape, target: Target, plan, w) -> list[dict]:
    out = []
    for name, s in strategies.REGISTRY.items():
        if name == plan.strategy:
            continue
        options = options_for(name, w)
        try:  # a wish valid for the chosen strategy may not be for this one (qlora's optimizer 'auto' for full)
            s.options(options)
        except BadArgument:
            options = {}  # this one is judged on its own defaults
        _, mb, cheapest, _ = fit(shape, target, name, plan.seq_len, options, plan.effective_batch)
        if mb:
            texts = WHY_NOT_ON_CPU if target.device != "cuda" and name in WHY_NOT_ON_CPU else WHY_NOT_WHEN_FITS
            why = texts[name].format(chosen=plan.strategy, base=base_words(target))
        else:  # the least it could need: one example, checkpointing, and on a GPU its activations in RAM
            in_ram = (target.device == "cuda" and "activations_on_host" not in options
                      and "activations_on_host" in settings_of(name))
            least = {**cheapest, "activations_on_host": True} if in_ram else cheapest
            need = mm.estimate(shape, target.setup(name, 1, plan.seq_len, True, least)).device_total
            why = (f"needs about {need * target.factor / GIB:.1f} GiB even with one example per micro-batch "
                   f"and checkpointing{' (activations in RAM)' if in_ram else ''}; {target.limit / GIB:.1f} GiB "
                   "is available.")
        if not s.built:
            why += " (Not built yet in this version.)"
        out.append({"strategy": name, "why": why[0].upper() + why[1:], "fits": bool(mb)})
    return out
