"""The first planner: given the machine, the model's config and the data's token lengths, decide what
runs and say why. Deterministic: same inputs, same plan.

This is the simple version from the walking-path issue; the planner issue replaces the estimates
with a calibrated memory model and adds offload and re-planning. Every field the planner sets can
be overridden by a wish, and the reasons say which ones were.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from core import strategies
from core.hardware import HardwareProfile
from core.model_shape import ModelShape

GIB = 1024**3
CUDA_CONTEXT = int(0.6 * GIB)  # context + allocator slack seen on recent drivers
GPU_FLOPS = {True: 60e12, False: 15e12}  # sustained training FLOP/s, bf16-capable or not (rough)
CPU_FLOPS_PER_CORE = 55e9  # measured: SmolLM2-135M LoRA on this project's 2-core CI machine


@dataclass
class Wishes:
    """What the person asked for; None means 'let the planner choose'."""

    strategy: str | None = None
    micro_batch: int | None = None
    grad_accum: int | None = None
    seq_len: int | None = None
    lr: float | None = None
    max_steps: int | None = None
    epochs: float | None = None
    device: str | None = None


@dataclass
class Plan:
    strategy: str
    strategy_built: bool
    device: str
    precision: str
    micro_batch: int
    grad_accum: int
    seq_len: int
    gradient_checkpointing: bool
    lr: float
    epochs: float
    max_steps: int
    total_steps: int
    memory: dict[str, int]  # term → bytes on the training device
    memory_limit: int  # what the device offers
    step_time_s: float
    total_time_s: float
    truncated_rows: int
    reasons: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return sum(self.memory.values())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_bytes"] = self.peak_bytes
        return d


def memory_terms(shape: ModelShape, strategy: str, micro_batch: int, seq_len: int, bytes_per: int,
                 lora_r: int = 16, checkpointing: bool = False, cuda: bool = True) -> dict[str, int]:
    tokens = micro_batch * seq_len
    trainable = shape.params if strategy == "full" else shape.lora_params(lora_r)
    per_layer_act = (2 if checkpointing else 17) * shape.hidden * tokens * bytes_per
    terms = {
        "weights": shape.params * bytes_per,
        "trainable (fp32 copy + grads)": trainable * (8 if strategy != "full" else bytes_per + 4),
        "optimizer (AdamW moments)": trainable * 8,
        "activations": shape.layers * per_layer_act,
        "logits": tokens * shape.vocab * 4 * 2,  # fp32 logits and their gradient
    }
    if cuda:
        terms["CUDA context and reserve"] = CUDA_CONTEXT
    return terms


def make_plan(hardware: HardwareProfile, model_config: dict, token_lengths: list[int], wishes: Wishes | None = None,
              lora_r: int = 16) -> Plan:
    w = wishes or Wishes()
    shape = ModelShape.from_config(model_config)
    reasons: list[str] = []
    warnings: list[str] = []
    gpu = hardware.gpu
    device = w.device or ("cuda" if gpu else "cpu")
    if device == "cuda" and not gpu:
        warnings.append("CUDA was asked for but no GPU was found; the run would fail to start.")
    if device == "cuda":
        precision = "bf16" if gpu and gpu.bf16 else "fp16"
        reasons.append(f"Training on {gpu.name if gpu else 'the GPU'} in {precision}"
                       + (" (it supports bf16)." if precision == "bf16" else " (no bf16 on this GPU)."))
        limit = gpu.total_bytes if gpu else 0
    else:
        precision = "fp32"
        limit = int(hardware.ram_available_bytes * 0.8)
        reasons.append("No GPU: training on the CPU in fp32 (CPUs lack fast 16-bit math); expect it to be slow.")
    bytes_per = 4 if precision == "fp32" else 2

    # Sequence length from the data: fit the longest example, within the model's context.
    longest = max(token_lengths) if token_lengths else 512
    context_cap = min(shape.max_positions, 4096)
    seq_len = w.seq_len or min(_round_up(longest, 16), context_cap)
    truncated = sum(1 for n in token_lengths if n > seq_len)
    if w.seq_len:
        reasons.append(f"Sequence length {seq_len} as you asked; it cuts {truncated} of {len(token_lengths)} rows.")
    else:
        reasons.append(f"Sequence length {seq_len}: the longest example has {longest} tokens"
                       + (f" and the model's context stops at {context_cap}, so {truncated} rows are cut." if truncated
                          else ", so nothing is cut."))

    name = w.strategy or "lora"
    strategy = strategies.get(name, need_built=False)
    if w.strategy:
        reasons.append(f"Strategy {name} as you asked: {strategy.summary}")
    else:
        reasons.append(f"Strategy lora: {strategy.summary} It trains {shape.lora_params(lora_r) / 1e6:.1f}M of "
                       f"{shape.params / 1e6:.0f}M weights, so it fits where full fine-tuning may not.")
    if not strategy.built:
        warnings.append(f"The {name} strategy is planned but not built yet; the run will refuse to start.")

    fits = lambda mb, ckpt: sum(memory_terms(shape, name, mb, seq_len, bytes_per, lora_r, ckpt, device == "cuda").values()) <= limit * 0.9
    checkpointing = False
    if w.micro_batch:
        micro_batch = w.micro_batch
        reasons.append(f"Micro-batch {micro_batch} as you asked.")
    elif device == "cpu":
        micro_batch = 4
        reasons.append("Micro-batch 4: on a CPU larger batches add time, not speed.")
    else:
        micro_batch = next((mb for mb in (16, 8, 4, 2, 1) if fits(mb, False)), 0)
        if not micro_batch:
            checkpointing = True
            micro_batch = next((mb for mb in (8, 4, 2, 1) if fits(mb, True)), 1)
            reasons.append("Gradient checkpointing on: without it even one example does not fit.")
        reasons.append(f"Micro-batch {micro_batch}: the largest that fits {limit / GIB:.1f} GiB with 10% to spare.")
    grad_accum = w.grad_accum or max(1, 8 // micro_batch)
    if grad_accum > 1:
        reasons.append(f"Gradient accumulation {grad_accum}, for an effective batch of {micro_batch * grad_accum}.")

    lr = w.lr or (2e-5 if name == "full" else 2e-4)
    epochs = w.epochs if w.epochs is not None else 1.0
    max_steps = w.max_steps or 0
    rows = max(1, len(token_lengths))
    steps_per_epoch = math.ceil(math.ceil(rows / micro_batch) / grad_accum)
    total_steps = max_steps or max(1, math.ceil(epochs * steps_per_epoch))

    memory = memory_terms(shape, name, micro_batch, seq_len, bytes_per, lora_r, checkpointing, device == "cuda")
    mean_len = sum(token_lengths) / rows if token_lengths else seq_len
    flops_per_token = (6 if name == "full" else 4) * shape.params
    speed = GPU_FLOPS[bool(gpu and gpu.bf16)] if device == "cuda" else CPU_FLOPS_PER_CORE * hardware.cores_physical
    step_time = flops_per_token * mean_len * micro_batch * grad_accum / speed
    if sum(memory.values()) > limit:
        warnings.append(f"The estimate ({sum(memory.values()) / GIB:.1f} GiB) exceeds what the device offers "
                        f"({limit / GIB:.1f} GiB); the planner issue adds QLoRA and offload for this case.")

    rejected = []
    if name != "full":
        full_mem = sum(memory_terms(shape, "full", micro_batch, seq_len, bytes_per, lora_r, checkpointing, device == "cuda").values())
        why = (f"needs about {full_mem / GIB:.1f} GiB of {limit / GIB:.1f} GiB" if full_mem > limit * 0.9
               else "fits, but an adapter trains faster, is tiny to keep, and is enough for most tasks")
        rejected.append({"strategy": "full", "why": f"Full fine-tuning {why}."})
    for other in ("qlora", "lisa", "offload"):
        if other != name:
            rejected.append({"strategy": other, "why": "Not built yet in this version."})

    return Plan(
        strategy=name, strategy_built=strategy.built, device=device, precision=precision, micro_batch=micro_batch,
        grad_accum=grad_accum, seq_len=seq_len, gradient_checkpointing=checkpointing, lr=lr, epochs=epochs,
        max_steps=max_steps, total_steps=total_steps, memory=memory, memory_limit=limit,
        step_time_s=round(step_time, 3), total_time_s=round(step_time * total_steps, 1), truncated_rows=truncated,
        reasons=reasons, rejected=rejected, warnings=warnings,
    )


def _round_up(n: int, k: int) -> int:
    return max(k, (n + k - 1) // k * k)


def describe(plan: Plan) -> list[str]:
    lines = [f"Strategy: {plan.strategy}" + ("" if plan.strategy_built else " (not built yet)"),
             f"Device: {plan.device} ({plan.precision}), micro-batch {plan.micro_batch} × accumulation "
             f"{plan.grad_accum}, sequence length {plan.seq_len}, learning rate {plan.lr:g}",
             f"Steps: {plan.total_steps}, estimated time {_duration(plan.total_time_s)}",
             f"Estimated peak memory: {plan.peak_bytes / GIB:.2f} GiB of {plan.memory_limit / GIB:.1f} GiB"]
    lines += [f"  {k}: {v / GIB:.2f} GiB" for k, v in plan.memory.items()]
    lines.append("Why:")
    lines += [f"  - {r}" for r in plan.reasons]
    if plan.rejected:
        lines.append("Not chosen:")
        lines += [f"  - {r['strategy']}: {r['why']}" for r in plan.rejected]
    lines += [f"Warning: {w}" for w in plan.warnings]
    return lines


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
