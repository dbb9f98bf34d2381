"""Re-planning after a run ran out of memory, or after one of our kernels failed on the GPU.

The crash proves the true peak was above the limit, so the estimates are scaled up to say so, and
the planner's ladder continues downward from the failed settings: halve the micro-batch first
(raising accumulation, so each optimizer step still sees the same examples and a resumed run stays
on its trajectory), then the strategy's own cheaper settings (LISA freezes its embeddings; LISA and
full move their optimizer state to RAM; once it checkpoints, any strategy keeps its activations in RAM),
then gradient checkpointing, then QLoRA, then offload. The sequence length,
learning rate and step count stay as they were, and the micro-batch never grows: settings that
free memory are not a reason to trust the estimates with more than the run crashed with.

After a kernel of ours failed (tuneforge_kernels.failures says which), the run goes on without it: the same
settings when they still fit (without the fused loss the full logits count), else the same ladder,
with the estimates as they were, since nothing ran out.

`replan_run` does either for a run in place: the trainer calls it, writes the new plan into the
run's config and starts again from its last checkpoint by itself, so a run left training in the
background re-plans as well as one the app is watching.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from core import memory_model as mm
from core import objectives, strategies
from core.errors import KnownError
from core.hardware import HardwareProfile
from core.model_shape import ModelShape
from core.plan_target import target_for
from core.plan_fit import first_fit, largest_micro_batch, options_for, variants_for
from core.plan_reasons import why_rung
from core.planner import GIB, LADDER, OBJECTIVE_REASON, TRAIN_ON_WHY, Plan, Wishes, finish_plan
from tuneforge_kernels import OPS, failures

OOM_MARGIN = 1.05  # after a crash, assume the true peak was at least 5% above the limit
MAX_REPLANS = 4  # the ladder has four rungs below the first plan; more would mean the model is badly off
OOM_REASON = "Re-planned after running out of memory"  # how such a plan's reason starts (the history counts them)


def replan_after_oom(previous: Plan, hardware: HardwareProfile, model_config: dict, token_lengths: list[int],
                     at_step: int, wishes: Wishes | None = None) -> Plan:
    """A new plan after the run ran out of memory with `previous`: the crash proves the true peak was
    above the limit, so the estimates are scaled up to say so, and the ladder continues downward from
    the failed settings, keeping the sequence length and the effective batch (and so the trajectory)."""
    w = wishes or Wishes()
    predicted = previous.peak_bytes  # already includes any earlier correction
    factor = max(1.0, previous.memory_limit * OOM_MARGIN / max(1, predicted)) * previous.calibration.get("factor", 1.0)
    source = f"out of memory at step {at_step} with {previous.strategy}, micro-batch {previous.micro_batch}"
    reason = (f"{OOM_REASON} at step {at_step}: the plan predicted "
              f"{predicted / GIB:.2f} GiB but the run needed more than {previous.memory_limit / GIB:.2f} GiB, "
              f"so every estimate is now scaled by ×{factor:.2f}.")
    kernels = None if previous.kernels == "auto" else list(previous.kernels)
    return _step_down(previous, hardware, model_config, token_lengths, reason, {"factor": factor, "source": source},
                      Wishes(memory_cap_bytes=w.memory_cap_bytes, kernels=kernels, kernels_why="as before"),
                      same_first=False)


def replan_without_kernels(previous: Plan, hardware: HardwareProfile, model_config: dict, token_lengths: list[int],
                           at_step: int, failed: list[str], why: str, wishes: Wishes | None = None) -> Plan:
    """A new plan after our kernels `failed` (tuneforge_kernels.OPS names) at `at_step` with `why`
    (tuneforge_kernels.failures): the same settings without them when those still fit (without the fused loss
    the full logits are counted), else the ladder below them, as after running out of memory but with the
    estimates as they were."""
    w = wishes or Wishes()
    kept = [op for op in (list(OPS) if previous.kernels == "auto" else previous.kernels) if op not in failed]
    them = "it" if len(failed) == 1 else "them"
    reason = (f"Re-planned at step {at_step}: {failures.named(failed)} failed on this GPU ({why}), so the run goes "
              f"on without {them}; the plain PyTorch path does the same work.")
    return _step_down(previous, hardware, model_config, token_lengths, reason, previous.calibration or None,
                      Wishes(memory_cap_bytes=w.memory_cap_bytes, kernels=kept,
                             kernels_why=f"since {', '.join(failed)} failed on this GPU"), same_first=True)


def _step_down(previous: Plan, hardware: HardwareProfile, model_config: dict, token_lengths: list[int], reason: str,
               calibration: dict | None, w: Wishes, same_first: bool) -> Plan:
    """The plan after `previous` for the target that `calibration` and `w` (cap, kernels) now give: its settings
    again when `same_first` and they fit, else the ladder downward from them; `reason` comes first."""
    shape = ModelShape.from_config(model_config)
    reasons: list[str] = []
    warnings: list[str] = []
    keep_best = None if previous.keep_best else False  # dropped stays dropped; kept may yet have to go
    target = target_for(hardware, Wishes(device=previous.device, gpu_index=previous.gpu_index,
                                         memory_cap_bytes=w.memory_cap_bytes or None, kernels=w.kernels,
                                         keep_best=keep_best, objective=previous.objective),
                        calibration, [], warnings)
    reasons.append(reason)
    effective = previous.effective_batch
    strategy, ckpt, mb = previous.strategy, previous.gradient_checkpointing, previous.micro_batch
    rungs = _rungs_below(strategy, ckpt, target.device)

    def carried(name: str) -> dict:  # the run's settings that still apply (LoRA's rank carries into QLoRA; full
        # fine-tuning's GaLore optimizer does not)
        accepts = strategies.get(name, need_built=False).accepts
        return {k: v for k, v in options_for(name, Wishes(options=previous.options)).items() if accepts({k: v})}
    chosen, chosen_options = None, dict(previous.options)
    mb *= 2 if same_first else 1
    while mb > 1 and chosen is None:  # first (after the same settings): smaller micro-batches, more accumulation
        mb //= 2
        if target.fits(mm.estimate(shape, target.setup(strategy, mb, previous.seq_len, ckpt, previous.options))):
            chosen = (strategy, ckpt, mb)
            reasons.append("The other settings stay as they were: they still fit." if mb == previous.micro_batch
                           else f"Micro-batch {previous.micro_batch} → {mb}, accumulation {previous.grad_accum} → "
                                f"{math.ceil(effective / mb)}: the same {effective} examples per step, in smaller "
                                "pieces.")
    for cheaper, why in ([] if chosen else _cheaper_settings(strategy, previous.options, target.device)):
        if cheaper.get("activations_on_host") and not ckpt:
            continue  # checkpointing first (a rung below): with it only the layers' inputs would cross PCIe
        for with_ckpt in dict.fromkeys([ckpt, True]):  # as it was, then with checkpointing
            mb = min(previous.micro_batch, largest_micro_batch(shape, target, strategy, previous.seq_len, with_ckpt,
                                                               cheaper, effective))  # never more than crashed
            if mb and not chosen:
                chosen, chosen_options = (strategy, with_ckpt, mb), cheaper
                reasons.append(why)
    for rung in rungs:
        if chosen:
            break
        # On a new rung the activations go back to the GPU where they fit there (QLoRA's 4-bit base frees room).
        options = {k: v for k, v in carried(rung[0]).items() if k != "activations_on_host"}
        found = first_fit(shape, target, rung[0], previous.seq_len, options, effective, rung[1])
        if found:
            chosen, chosen_options = (*rung, min(previous.micro_batch, found[1])), found[2]
            reasons += [why_rung(shape, rung[0], rung[1], target, chosen_options)] + ([found[3]] if found[3] else [])
    fitted = chosen is not None
    if not fitted:
        chosen = ((rungs or _rungs_below("lora", False, target.device))[-1][0], True, 1)
        chosen_options = carried(chosen[0])
        warnings.append("Nothing on the ladder fits by the estimates; trying the smallest settings.")
    strategy, ckpt, mb = chosen
    plan_wishes = Wishes(grad_accum=math.ceil(effective / mb), seq_len=previous.seq_len,  # (mb is ours, not asked)
                         lr=previous.lr, max_steps=previous.max_steps or None, epochs=previous.epochs,
                         stop_early=previous.stop_early, keep_best=keep_best, options=previous.options,
                         packing=previous.packing, kernels=w.kernels, kernels_why=w.kernels_why,
                         time_limit_s=previous.time_limit_s or None, objective=previous.objective, beta=previous.beta,
                         train_on=previous.train_on,
                         pairs=objectives.learns_pairs(previous.objective) and not objectives.learns_rated(
                             previous.objective), rated=objectives.learns_rated(previous.objective))
    plan = finish_plan(shape, hardware, target, strategy, ckpt, mb, previous.seq_len,
                       sum(1 for n in token_lengths if n > previous.seq_len), token_lengths, plan_wishes, reasons,
                       warnings, fitted=fitted, options=chosen_options, steps=previous.total_steps)
    plan.time_capped = previous.time_capped  # (the length is the run's, as planned first)
    # What the run learns did not change, nor its data: the first plan's sentences on it (the rows' ratings and
    # how they were counted are the data's, which a re-plan does not read again) still hold.
    plan.reasons += [r for r in previous.reasons if r.startswith(OBJECTIVE_REASON)][:1] + [
        r for r in previous.reasons if r in TRAIN_ON_WHY.values()][:1]
    return plan


def _cheaper_settings(strategy: str, options: dict, device: str) -> list[tuple[dict, str]]:
    """The strategy's own cheaper choices after the one the run made (core.strategies' plan_variants,
    best first; LISA: embeddings trained, then frozen, then both again with the optimizer state in RAM, then
    all four with the frozen layers streamed),
    each with its reason: tried before leaving it, never turning back a setting the run already gave up
    (frozen embeddings stay frozen). Moving the optimizer to the host keeps the trajectory (the host AdamW
    clips by the same global norm), so the run continues from its checkpoint. A choice the run's other settings
    rule out (the host optimizer is AdamW's; a run with 8-bit or GaLore state keeps it) is skipped."""
    variants = variants_for(strategy, {}, device)
    cheapest = variants[-1][0]  # the list ends with the cheapest; a re-plan only moves settings towards it
    for i, (variant, _) in enumerate(variants):
        if variant and all(options.get(k) == v for k, v in variant.items()):
            return [({**options, **later}, why) for later, why in variants[i + 1:]
                    if all(v == cheapest.get(k) for k, v in later.items() if v != variant[k])
                    and strategies.get(strategy, need_built=False).accepts({**options, **later})]
    return []


def _rungs_below(strategy: str, ckpt: bool, device: str) -> list[tuple[str, bool]]:
    """Where to go after (strategy, checkpointing) ran out of memory."""
    ladder = list(LADDER if device == "cuda" else LADDER[:3])
    if (strategy, ckpt) in ladder:
        return ladder[ladder.index((strategy, ckpt)) + 1:]
    # Off the ladder (full, dora, lisa): checkpoint it first, then the memory-saving rungs.
    return ([(strategy, True)] if not ckpt else []) + [r for r in ladder if r[0] in ("qlora", "offload")]


def replan_run(cfg, config_path: Path, db, at_step: int, failed_kernels: list[str] | None = None,
               why: str = "") -> str:
    """Write a new plan into the run's config (`config_path`, a RunConfig) after it ran out of memory at
    `at_step`, or after our `failed_kernels` failed there with `why`; record it in the history `db`, and say why.
    KnownError when there is nothing left to try."""
    from core import atomic, settings, strategies
    from core.run_config import RunConfig

    if not failed_kernels:
        earlier = sum(1 for p in db.plans(cfg.run_id) if p["reason"].startswith(OOM_REASON))
        if earlier >= MAX_REPLANS:
            raise KnownError(f"It ran out of memory after {earlier} re-plans; the model is too large for this machine "
                             "as planned, so plan it again with a smaller model, a shorter sequence length or a cap.")
    lengths_file = Path(cfg.run_dir) / "token_lengths.json"
    lengths = json.loads(lengths_file.read_text()) if lengths_file.is_file() else [cfg.seq_len]
    model_config = json.loads((Path(cfg.model_path) / "config.json").read_text())
    previous = Plan.from_dict(cfg.plan)
    hardware = HardwareProfile.from_dict(cfg.hardware, "the run's hardware")
    wishes = Wishes(memory_cap_bytes=cfg.memory_cap_bytes or None)
    new = (replan_without_kernels(previous, hardware, model_config, lengths, at_step, failed_kernels, why, wishes)
           if failed_kernels else replan_after_oom(previous, hardware, model_config, lengths, at_step, wishes))
    strategies.get(new.strategy)  # a strategy that is not built ends the run here, with its sentence
    reason = " ".join(new.reasons[:2])
    db.add_plan(cfg.run_id, new.to_dict(), reason)
    db.add_event(cfg.run_id, "replan", reason)
    fields = {**settings.to_dict(cfg), "strategy": new.strategy, "micro_batch": new.micro_batch,
              "grad_accum": new.grad_accum, "gradient_checkpointing": new.gradient_checkpointing,
              "strategy_options": new.options, "kernels": new.kernels, "plan": new.to_dict()}
    atomic.write_json(config_path, settings.to_dict(settings.from_dict(RunConfig, fields, "re-plan")))
    return reason
