"""The planner's sentences: why a rung of the ladder was taken, what moved off the GPU, what turning our
kernels off costs, why each other strategy was not chosen (each other strategy is fitted again, so
"not needed" and "does not fit" are told apart by the same search the plan made), and what would keep a full
fine-tune's optimizer on the GPU."""

from __future__ import annotations

from core import memory_model as mm
from core import strategies
from core.model_shape import ModelShape
from core.plan_fit import first_fit, fit, options_for, settings_of
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
EXPERTS_16 = " (its experts in 16 bits: bitsandbytes quantizes linear layers, not a mixture of experts' 3-D weights)"
EXPERTS_4 = " (its frozen experts too, each quantized on its own)"
WHY_NOT_ON_CPU = {  # where the GPU-side reason means nothing
    "offload": "not needed: on the CPU the weights are in RAM already; offload streams them to a GPU.",
}


def why_rung(shape: ModelShape, strategy: str, ckpt: bool, target: Target, options: dict) -> str:
    size = f"{shape.params / 1e9:.1f}B" if shape.params >= 1e9 else f"{shape.params / 1e6:.0f}M"
    where = f"{target.limit / GIB:.1f} GiB"
    base = base_words(target)
    if strategy == "lora":
        opts = strategies.get(strategy, need_built=False).options(options)
        adapters = shape.lora_params(opts.r, opts.experts)
        experts = f" and each of its {shape.experts} experts a layer" if shape.experts and opts.experts else ""
        text = (f"Strategy lora: the {size} base stays frozen in {base} and low-rank adapters "
                f"({adapters / 1e6:.1f}M weights) train on every linear layer{experts}; it fits {where}")
    else:  # qlora and offload are the ladder's lower rungs; a strategy off it (a re-plan's first rung) stays
        four_bit = strategy in ("qlora", "offload") and options.get("experts") is False and options.get("quantize",
                                                                                                       True)
        experts = (EXPERTS_4 if four_bit else EXPERTS_16) if shape.experts else ""
        text = {
            "qlora": f"Strategy qlora: the {size} base in {base} does not fit {where} for training, so the frozen "
                     f"base is stored in 4-bit nf4 with double quantization{experts} and adapters train on top",
            "offload": f"Strategy offload: even a 4-bit {size} base{experts} does not "
                       f"fit {where} with room to train, so the frozen weights stay in RAM (or on NVMe) and stream to "
                       "the GPU layer by layer",
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
        if problem := s.model_problem(shape):
            out.append({"strategy": name, "why": problem, "fits": False})
            continue
        options = options_for(name, w)
        if not s.accepts(options):  # a wish valid for the chosen strategy may not be for this one (qlora's
            options = {}  # optimizer 'auto' for full): this one is judged on its own defaults
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


# What a full fine-tune whose AdamW state went to the host (or fits nowhere) could use to stay on the GPU, in
# order; the plan names the first that fits and is faster, and never takes one itself: they approximate AdamW.
GPU_INSTEAD = ({"optimizer": "galore"}, {"stochastic_rounding": True},
               {"optimizer": "galore", "stochastic_rounding": True})
GALORE_SAYS = ("GaLore keeps AdamW's moments in a rank-{rank} subspace of each decoder matrix's gradient (an SVD of "
               "each every {every} steps; optimizer=frugal also moves each weight by the sign of the rest of its "
               "gradient)")
ROUNDING_SAYS = ("stochastic rounding updates the bf16 weights without their fp32 copies, each update landing in "
                 "expectation")


def gpu_instead(shape: ModelShape, target: Target, strategy: str, wished: dict, settings: tuple, host_step_s: float,
                step_seconds) -> list[str]:
    """A sentence where GaLore (core/galore.py), stochastic rounding (core/stochastic_rounding.py) or both would
    fit the GPU (with checkpointing where they must, at their largest micro-batch) in less time a step than the
    plan's host-side AdamW: those of them the strategy has (LISA: stochastic rounding) and the person did not set.
    `settings`: (sequence length, the plan's options, effective batch); `step_seconds`: a micro-batch's time for
    a memory_model.Setup, as the plan counts it."""
    seq_len, options, effective = settings
    for change in GPU_INSTEAD if "optimizer_on_host" not in wished else ():  # (the host, as asked: nothing to say)
        if not set(change) <= settings_of(strategy) or set(change) & set(wished):
            continue
        tried = {**options, **change, "optimizer_on_host": False}
        if not strategies.get(strategy, need_built=False).accepts(tried):  # a setting of the plan's rules it out
            continue  # (LISA's spill_state is the host's)
        found = first_fit(shape, target, strategy, seq_len, tried, effective)
        if not found:
            continue
        ckpt, mb = found[:2]
        step_s = -(-effective // mb) * step_seconds(target.setup(strategy, mb, seq_len, ckpt, tried))
        if step_s >= host_step_s:
            return []
        said = [ROUNDING_SAYS] if "stochastic_rounding" in change else []
        if "optimizer" in change:  # (full fine-tuning's: the strategy that has GaLore)
            g = strategies.get(strategy).options(tried)
            said.insert(0, GALORE_SAYS.format(rank=g.galore_rank, every=g.galore_every))
        asked = " ".join(f"{k}={str(v).lower()}" for k, v in change.items())
        return [f"On the GPU instead, --option {asked} would fit: about {step_s:.1f} s a step against "
                f"{host_step_s:.1f} s; {'; '.join(said)}. The plan keeps exact AdamW: "
                f"{'these approximate' if len(said) > 1 else 'this approximates'} it."]
    return []
