"""A plan in words, for `tuneforge plan` and the history."""

from __future__ import annotations

from core import objectives
from core.planner import GIB, Plan
from core.words import counted, duration


def describe(plan: Plan) -> list[str]:
    """Human lines for `tuneforge plan`."""
    lines = [f"Strategy: {plan.strategy}" + ("" if plan.strategy_built else " (not built yet)")
             + (f", offload: {plan.offload}" if plan.offload else "")
             + (f", objective: {objectives.label(plan.objective)} ("
                f"{'rated answers' if objectives.learns_rated(plan.objective) else 'preference pairs'})"
                if objectives.learns_pairs(plan.objective) else ""),
             *([f"Settings: {', '.join(f'{k}={v}' for k, v in plan.shown_options.items())}; optimizer "
                f"{plan.optimizer}"]
               if plan.options else [f"Optimizer: {plan.optimizer}"]),
             f"Device: {plan.device}" + (f" {plan.gpu_index} ({plan.gpu_name})" if plan.gpu_name else "")
             + f" in {plan.precision}, micro-batch {plan.micro_batch} × accumulation {plan.grad_accum}, "
             f"sequence length {plan.seq_len}, learning rate {plan.lr:g}"
             + (", gradient checkpointing" if plan.gradient_checkpointing else ""),
             f"Steps: {plan.total_steps}{length_note(plan)}"
             + f", about {duration(plan.step_time_s)} each; estimated time "
             + ("at most " if plan.stop_early else "") + f"{duration(plan.total_time_s)} "
             f"(one epoch {duration(plan.epoch_time_s)})"
             + (f"; ends early after {plan.stop_early} validation checks without a new low"
                if plan.stop_early else ""),
             f"Estimated peak {'GPU memory' if plan.device == 'cuda' else 'memory'}: {plan.peak_bytes / GIB:.2f} GiB "
             f"of {plan.memory_limit / GIB:.1f} GiB" + ("" if plan.fits else "  (DOES NOT FIT)")]
    lines += [f"  {k}: {v / GIB:.2f} GiB" for k, v in plan.memory.items()]
    if plan.device == "cuda":
        lines.append(f"Host RAM: {sum(plan.ram.values()) / GIB:.1f} GiB; disk for the run: "
                     f"{sum(plan.disk.values()) / GIB:.1f} GiB")
        if plan.offload:  # what moved off the GPU, term by term
            lines += [f"  {k}: {v / GIB:.2f} GiB" for k, v in plan.ram.items()]
    lines.append("Why:")
    lines += [f"  - {r}" for r in plan.reasons]
    if plan.rejected:
        lines.append("Not chosen:")
        lines += [f"  - {r['strategy']}: {r['why']}" for r in plan.rejected]
    lines += [f"Warning: {w}" for w in plan.warnings]
    return lines


def length_note(plan: Plan) -> str:
    """What sized the run's steps, after their number: ' (3 epochs)', ' (as you asked)', ' (1.7 epochs, to end
    within 60 min)'."""
    if plan.time_capped:
        return f" ({counted(plan.epochs, 'epoch')}, to end within {duration(plan.time_limit_s)})"
    return " (as you asked)" if plan.max_steps else f" ({counted(plan.epochs, 'epoch')})"


def size_text(n: int | None) -> str:
    """'8.2 GB', '340 MB', '12 KB' for files and folders (decimal units, as file managers show them); '' when
    unknown or empty."""
    if not n:
        return ""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{max(1, n // 1000)} KB"
