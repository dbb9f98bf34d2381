"""The planner: given the machine, the model's config, the data's token lengths and the person's
wishes, decide how to train so that it fits, and say why. Deterministic: same inputs, same plan.

How it decides. Memory comes from core.memory_model (term by term), time from core.speed_model.
Without a strategy wish it walks a ladder, cheapest in quality and time first, and takes the first
rung where at least one example per micro-batch fits with headroom:

    LoRA → LoRA + gradient checkpointing → QLoRA (4-bit base) + checkpointing → offload (weights streamed)

(on a GPU each checkpointed rung also tries its activations in pinned RAM before the next rung).

After an out-of-memory crash, `core.replanner` scales the estimates by what the crash proved and
walks down the same ladder from where the run was (halve the micro-batch first, keeping the
effective batch, so the run can continue from its checkpoint on the same trajectory). Every
setting can be overridden by a wish, and the reasons say which ones were.

A strategy's own settings are decided the same way: the strategy offers variants best first
(`plan_variants`; LISA: embeddings trained, then frozen) and the first that fits is taken, with the
strategy's sentence for it. The search itself is core.plan_fit, the sentences core.plan_reasons, the
machine-side limits core.plan_target, how long to train (epochs sized to the data, stopping early)
core.plan_length.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from dataclasses import asdict, dataclass, field

from core import memory_model as mm
from core import objectives, plan_length, settings, speed_model, strategies
from core.data import packing as packing_mod
from core.data import split
from core.errors import BadArgument
from core.hardware import HardwareProfile
from core.model_shape import ModelShape
from core.offload import host_plan
from core.plan_fit import EFFECTIVE_BATCH, first_fit, fit, options_for, streams
from core.plan_reasons import gpu_instead, kernels_reason, offloaded, rejected, why_rung
from core.plan_target import Target, target_for, too_old
from core.run_config import TRAIN_ON
from core.words import counted, duration

GIB = 1024**3
LONG_ON_CPU_S = 2 * 3600  # a CPU run longer than this is told of the time limit
LADDER = (("lora", False), ("lora", True), ("qlora", True), ("offload", True))
OBJECTIVE_REASON = "Objective: "  # how the reason on what the run learns begins (a re-plan carries it over)


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
    gpu_index: int | None = None
    checkpointing: bool | None = None
    memory_cap_bytes: int | None = None  # use at most this much of the training device
    options: dict = field(default_factory=dict)  # strategy settings (core.strategies Options fields)
    packing: bool = True  # pack short rows into full sequences (core.data.packing)
    kernels: list[str] | None = None  # our kernels to train with (tuneforge_kernels.OPS names); None: all on CUDA
    kernels_why: str = "as you asked"  # how that list came about, for the plan's reason
    stop_early: int | None = None  # end after this many validation checks without a new low (0: never; None: ours)
    keep_best: bool | None = None  # keep the lowest validation loss's weights (None: unless the disk lacks room)
    eval_fraction: float | None = None  # share of rows held out for validation (None: core.data.split's rule)
    eval_rows: int = 0  # rows of a separate validation set (then no training row is held out)...
    eval_source: str = ""  # ...and what it is, for the reason
    time_limit_s: float | None = None  # train for at most this long (seconds); None: as long as the length takes
    objective: str | None = None  # a name in core/objectives; None: ORPO for preference pairs, KTO for rated answers,
    # else SFT
    beta: float | None = None  # a preference objective's strength; None: its own (core/objectives)
    pairs: bool = False  # the rows are preference pairs (chosen and rejected): the dataset's to say
    rated: bool = False  # the rows are rated answers (a true/false label each): the dataset's to say...
    ratings: tuple[int, int] | None = None  # ...with how many are rated good and bad, when it has counted them
    rating_note: str = ""  # ...and how they were rated, when not by a label: scores' line, pairs split in two
    train_on: str | None = None  # which tokens the loss falls on (RunConfig.train_on); None: every assistant turn,
    # the last one alone for a pair objective


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
    memory: dict[str, int]  # term → bytes on the training device (GPU, or RAM on the CPU)
    memory_limit: int  # what the device offers this run
    step_time_s: float
    total_time_s: float
    truncated_rows: int
    gpu_index: int | None = None
    gpu_name: str = ""
    offload: str = ""  # "", "weights" (streamed from RAM) / "weights on disk" (from NVMe), or "optimizer" (in RAM)
    optimizer: str = "adamw"  # a name in core.memory_model.OPTIMIZERS
    options: dict = field(default_factory=dict)  # the strategy's settings as planned (its Options fields)
    experts: int = 0  # the model's experts per layer (0: a dense model, whose plan shows no setting for experts)
    packing: bool = True  # short rows packed into full sequences
    kernels: list[str] | str = "auto"  # our kernels the run trains with: "auto" (all on CUDA) or the names asked
    stop_early: int = 0  # validation checks in a row without a new low before the run ends; 0 trains every step
    keep_best: bool = True  # the run keeps the weights of its lowest validation loss (best/, core/results.py)
    time_limit_s: float = 0.0  # the person's time limit (0: none); the trainer stops there too
    time_capped: bool = False  # total_steps was cut to end within time_limit_s
    objective: str = "sft"  # what the run learns: "sft" (the answers), or a pair objective (core/objectives)
    beta: float | None = None  # the pair objective's strength as asked; None: its own default
    train_on: str = "assistant"  # which tokens the loss falls on: "assistant", "last" or "all" (RunConfig.train_on)
    sequences: int = 0  # what one epoch is made of: packs, or rows when not packing
    ram: dict[str, int] = field(default_factory=dict)  # host RAM by term
    ram_limit: int = 0
    disk: dict[str, int] = field(default_factory=dict)  # run folder by term
    disk_free: int = 0
    epoch_time_s: float = 0.0
    fits: bool = True
    calibration: dict = field(default_factory=dict)  # {"factor", "source"} when measured figures corrected it
    reasons: list[str] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return sum(self.memory.values())

    @property
    def effective_batch(self) -> int:
        return self.micro_batch * self.grad_accum

    @property
    def shown_options(self) -> dict:
        """The settings to show: all of them (a re-plan reads them all), less a dense model's for experts and the
        optimizer asked for ("auto"), which is shown as the one planned (`optimizer`)."""
        hidden = {"optimizer"} | (set() if self.experts else strategies.experts_only(self.strategy))
        return {k: v for k, v in self.options.items() if k not in hidden}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["peak_bytes"] = self.peak_bytes
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


def make_plan(hardware: HardwareProfile, model_config: dict, token_lengths: list[int], wishes: Wishes | None = None,
              calibration: dict | None = None) -> Plan:
    shape = ModelShape.from_config(model_config)
    reasons: list[str] = []
    warnings: list[str] = []
    w = with_objective(wishes or Wishes(), reasons, warnings)
    if w.packing and (stateful := packing_mod.stateful(model_config)):
        w = dataclasses.replace(w, packing=False)
        reasons.append(f"Rows are not packed: {stateful}; each row is a sequence of its own.")
    target = target_for(hardware, w, calibration, reasons, warnings)
    if shape.linear_attention and target.gpu is not None and importlib.util.find_spec("fla") is None:
        warnings.append(SLOW_LINEAR)
    seq_len, truncated = _seq_len(shape, token_lengths, w, reasons)
    rows = sequences(token_lengths, seq_len, w.packing)

    if w.strategy:
        strategy = w.strategy
        chosen = strategies.get(strategy, need_built=False)  # unknown names fail with the known ones...
        summary = chosen.summary
        if problem := (chosen.model_problem(shape)  # ...and settings it does not have; settings that cannot
                       or chosen.precision_problem(chosen.options(w.options), target.precision)):  # train here too
            raise BadArgument(problem)
        reasons.append(f"Strategy {strategy} as you asked: {summary}")
        ckpt, mb, options, why = fit(shape, target, strategy, seq_len, w.options, rows, w.checkpointing,
                                     w.micro_batch)
        if why:
            reasons.append(why)
    else:
        strategy, ckpt, mb, options, why = _climb_ladder(shape, target, seq_len, w, rows)
        options_for(strategy, w, warnings)  # says which wished settings do not apply
        reasons.append(why_rung(shape, strategy, ckpt, target, options))
        if why:
            reasons.append(why)
    return finish_plan(shape, hardware, target, strategy, ckpt, mb or 1, seq_len, truncated, token_lengths, w,
                       reasons, warnings, fitted=bool(mb), options=options, rows=rows)


SLOW_LINEAR = ("This model's Gated DeltaNet layers will run in transformers' plain PyTorch code "
               "(flash-linear-attention, whose Triton kernels transformers uses on a GPU, is not installed), which "
               "transformers itself calls much slower: steps may take far longer than the estimate.")


def with_objective(w: Wishes, reasons: list, warnings: list) -> Wishes:
    """The wishes with what the run learns decided, and said: ORPO for preference pairs and KTO for rated answers
    unless asked otherwise."""
    default = objectives.DEFAULT_FOR_PAIRS if w.pairs else objectives.DEFAULT_FOR_RATED if w.rated else "sft"
    objective = objectives.get(w.objective or default)
    if objective.RATED and not w.rated:
        raise BadArgument(f"{objective.LABEL} learns from rated answers (rows with 'prompt', 'completion' and a "
                          "true/false 'label' or a 'score'), and this dataset has none; train it with --objective "
                          + ("orpo, dpo, rpo or simpo." if w.pairs else "sft."))
    if objective.PAIRS and not objective.RATED and not w.pairs:
        raise BadArgument(f"{objective.LABEL} learns from preference pairs (rows with 'chosen' and 'rejected'), and "
                          "this dataset has none; train it with --objective " + ("kto." if w.rated else "sft."))
    if w.beta is not None and not objective.PAIRS:
        preference = ", ".join(m.LABEL for m in objectives.OBJECTIVES.values() if m.PAIRS)
        raise BadArgument(f"A strength (beta) weighs preference tuning ({preference}), and this run is supervised: "
                          "give preference pairs (prompt, chosen, rejected) or rated answers, or leave the strength "
                          "out.")
    if w.beta is not None and not objective.BETA_RANGE[0] <= w.beta <= objective.BETA_RANGE[1]:
        raise BadArgument(f"A strength (beta) of {w.beta:g} is out of range for {objective.LABEL}: use one from "
                          f"{objective.BETA_RANGE[0]:g} to {objective.BETA_RANGE[1]:g} ({objective.BETA:g} is "
                          "the paper's).")
    if objective.PAIRS:
        strength = f"strength {w.beta:g} as you asked" if w.beta is not None else f"strength {objective.BETA:g}"
        kind = "rated answers" if objective.RATED else "preference pairs"
        two = ("the answer, and its prompt with another row's answer (KTO's reference point: with no gradient, "
               "a forward pass counted in the time but no memory for backward)" if objective.RATED
               else "chosen and rejected (both counted here)")
        reasons.append(f"{OBJECTIVE_REASON}{objective.LABEL}" + (" as you asked" if w.objective else
                                                                  f", as the rows are {kind}")
                       + f" ({strength}): " + objective.WHY
                       + f" Each example is two sequences, {two}; rows are not packed."
                       + (_balance_text(*w.ratings, warnings) if objective.RATED and w.ratings else "")
                       + (f" {w.rating_note}" if w.rating_note else ""))
    elif w.pairs:
        reasons.append(f"{OBJECTIVE_REASON}supervised on the chosen answers, as you asked; the rejected ones are not "
                       "used.")
    elif w.rated:
        reasons.append(f"{OBJECTIVE_REASON}supervised on the answers rated good, as you asked; the ones rated bad are "
                       "left out." + (f" {w.rating_note}" if w.rating_note else ""))
    return dataclasses.replace(w, objective=objective.NAME, packing=w.packing and not objective.PAIRS,
                               train_on=_train_on(w, objective, reasons))


def _train_on(w: Wishes, objective, reasons: list) -> str:
    """Which tokens the loss falls on. A pair or a rating is about a conversation's last answer, the turns before it
    its prompt (for DPO earlier assistant turns would cancel out, but they would thin out ORPO's and SimPO's
    per-token means and be pushed up or down by KTO's rating), so a pair objective learns from that one alone."""
    if w.train_on is not None and w.train_on not in TRAIN_ON:
        raise BadArgument(f"--train-on {w.train_on}: expected one of {', '.join(TRAIN_ON)}.")
    if objective.PAIRS:
        if w.train_on not in (None, "last"):
            raise BadArgument(f"{objective.LABEL} learns from each conversation's last answer alone; --train-on "
                              f"{w.train_on} applies to supervised runs, so leave it out.")
        return "last"
    if w.train_on is not None:
        reasons.append(TRAIN_ON_WHY[w.train_on])
    return w.train_on or "assistant"


TRAIN_ON_WHY = {  # what a supervised run learns from, when asked
    "assistant": "Learns from every assistant turn, as you asked.",
    "last": "Learns from each conversation's last answer alone, as you asked: the turns before it, earlier answers "
            "too, are its prompt.",
    "all": "Learns from every token, as you asked: prompts, system messages and the chat template's markers too, "
           "so the model also learns to write the user's side.",
}


def _balance_text(good: int, bad: int, warnings: list) -> str:
    """What KTO's weights make of the counts of answers rated good and bad (kto.balance), with a warning when one
    kind is missing."""
    if not good or not bad:
        warnings.append(f"Every answer is rated {'good' if good else 'bad'}: KTO then only "
                        f"{'raises' if good else 'lowers'} them against the starting model; "
                        + ("supervised tuning (--objective sft) learns answers rated good more directly."
                           if good else "it has no example of what to say instead, so add answers rated good."))
        return ""
    return (f" The {good:,} answers rated good and {bad:,} rated bad weigh the same in all (each bad one "
            f"×{objectives.kto.balance_of(good, bad):.2f}).")


def _seq_len(shape: ModelShape, lengths: list[int], w: Wishes, reasons: list) -> tuple[int, int]:
    longest = max(lengths) if lengths else 512
    if w.seq_len and shape.context and w.seq_len > shape.context:
        # Positions past the context were never trained: RoPE models answer worse the further past it a row goes,
        # and a row that long is one the model cannot take after training either.
        raise BadArgument(f"Sequence length {w.seq_len} is longer than this model's context ({shape.context} "
                          f"tokens); ask for at most {shape.context}, or leave it to the planner.")
    context_cap = min(shape.max_positions, 4096)
    seq_len = w.seq_len or min(_round_up(longest, 16), context_cap)
    truncated = sum(1 for n in lengths if n > seq_len)
    if w.seq_len:
        reasons.append(f"Sequence length {seq_len} as you asked; it cuts {truncated} of {len(lengths)} rows.")
    else:
        reasons.append(f"Sequence length {seq_len}: the longest example has {longest} tokens"
                       + (f" and the plan stops at {context_cap}, so {truncated} rows are cut." if truncated
                          else ", so nothing is cut."))
    return seq_len, truncated


def sequences(lengths: list[int], seq_len: int, packing: bool) -> int:
    """Sequences in one epoch: packs of rows when packing, otherwise the rows themselves."""
    if not lengths:
        return 1
    return len(packing_mod.bins(lengths, seq_len)) if packing else len(lengths)


def _climb_ladder(shape, target: Target, seq_len: int, w: Wishes, rows: int) -> tuple[str, bool, int, dict, str]:
    """(strategy, checkpointing, micro-batch, settings, why): the first rung where something fits, with the
    strategy's first setting variant that fits there (on a GPU, LoRA with checkpointing tries its activations
    in RAM before the 4-bit base)."""
    rungs = LADDER if target.device == "cuda" else LADDER[:3]  # nothing to stream to on a CPU
    if w.checkpointing is not None:
        rungs = [r for r in rungs if r[1] == w.checkpointing or r[0] == "offload"]
    for strategy, ckpt in rungs:
        found = first_fit(shape, target, strategy, seq_len, options_for(strategy, w), rows, ckpt, w.micro_batch)
        if found:
            return strategy, ckpt, found[1], found[2], found[3]
    # Nothing fits: keep the wished micro-batch on the first rung, or the smallest settings; the plan warns.
    strategy, ckpt = rungs[0] if w.micro_batch else rungs[-1]
    return strategy, ckpt, w.micro_batch or 0, options_for(strategy, w), ""


def finish_plan(shape, hw, target: Target, strategy, ckpt, mb, seq_len, truncated, lengths, w: Wishes, reasons,
                warnings, fitted: bool, options: dict, steps: int | None = None, rows: int | None = None) -> Plan:
    """The plan for these decided settings; `rows` is `sequences(...)` when the caller has it already."""
    s = strategies.get(strategy, need_built=False)
    if not s.built:
        warnings.append(f"The {strategy} strategy is planned but not built yet; the run will refuse to start.")
    setup = target.setup(strategy, mb, seq_len, ckpt, options)
    est = mm.estimate(shape, setup)
    if streams(strategy, options) and not target.fits(est):
        setup = target.setup(strategy, mb, seq_len, ckpt, options, on_disk=True)
        est = mm.estimate(shape, setup)
        if strategy == "offload" and options.get("where", "auto") == "auto":  # (LISA looks at the free RAM
            options = {**options, "where": "disk"}  # when it starts) the run streams from where the plan found room
        reasons.append("The weights do not fit in RAM either, so they stream from the disk"
                       + ("." if hw.disk_read_bytes_per_s else " (its speed was not measured: run `profile`)."))
    if est.disk_total > target.disk_free >= target.disk_needed(est):  # (only when the keeping is ours to drop)
        setup = dataclasses.replace(setup, keep_best=False)
        reasons.append(f"The weights of the lowest validation loss are not kept: their copy "
                       f"({est.disk[mm.BEST_ON_DISK] / GIB:.1f} GiB) is what the {target.disk_free / GIB:.1f} GiB "
                       "free on the disk lacks room for; the run keeps its last step's weights.")
        est = mm.estimate(shape, setup)
    elif w.keep_best is False and steps is None:
        reasons.append("The weights of the lowest validation loss are not kept, as you asked: the run keeps its last "
                       "step's weights only.")
    rows = rows or sequences(lengths, seq_len, w.packing)
    if w.packing and lengths:
        reasons.append(f"Packing: {counted(len(lengths), 'row')} fit in {counted(rows, 'sequence')} of up to {seq_len} "
                       "tokens, each row still apart from the others, so steps spend their compute on tokens, "
                       "not padding.")
    effective = min(EFFECTIVE_BATCH, rows)
    grad_accum = w.grad_accum or max(1, math.ceil(effective / mb))
    major = ""
    if hasattr(s.options(options), "layer_major") and (target.gpu or setup.layer_major):
        auto = ("layer_major" not in options and not options.get("activations_on_host")  # layer-major keeps its own
                and not target.pairs)  # (a pair objective's loss needs each micro-batch's whole forward pass)
        chosen, major = host_plan.layer_major(shape, setup, grad_accum, target.fits, auto=auto)
        if chosen is not setup:
            setup, est = chosen, mm.estimate(shape, chosen)
        if major:
            options = {**options, "layer_major": True}
    if setup.offload == "optimizer" and options.get("spill_state"):
        host_plan.spill_costs(shape, setup, options, est, reasons)
    if w.micro_batch:
        reasons.append(f"Micro-batch {mb} as you asked.")
    elif fitted:
        reasons.append(f"Micro-batch {mb}: the largest (up to {effective}) whose estimate stays under "
                       f"{target.usable / GIB:.1f} GiB, leaving room for spikes on the {target.limit / GIB:.1f} "
                       "GiB available.")
    if grad_accum > 1:
        reasons.append(f"Gradient accumulation {grad_accum}, for {mb * grad_accum} examples per optimizer step.")
    if major:
        reasons.append(major)
    if target.device == "cuda" and (old := too_old(target.gpu)):
        reasons.append(f"Our kernels: {old}, so the full logits are built and their memory is counted.")
    elif w.kernels is not None and target.device == "cuda":
        reasons.append(kernels_reason(w.kernels, w.kernels_why))
    lr = w.lr or (2e-5 if strategy in ("full", "lisa") else 2e-4)
    objective = objectives.get(w.objective or "sft")
    if not w.lr and objective.LR_SCALE != 1:
        lr *= objective.LR_SCALE
        reasons.append(f"Learning rate {lr:g}: {objective.LR_SCALE:g}× the supervised one, as {objective.LABEL} "
                       "learns no answers of its own to hold the model where it is: at supervised rates it pulls "
                       "the model off its answers within a few dozen steps.")
    max_steps = w.max_steps or 0
    # The trainer holds rows out for validation (core.data.split's rule) and trains on the rest, unless the
    # validation rows come from elsewhere.
    held = split.validation_size(len(lengths), w.eval_fraction)[0] if lengths and not w.eval_rows else 0
    trained = max(1, math.ceil(rows * (len(lengths) - held) / len(lengths))) if lengths else rows
    per_epoch = math.ceil(trained / (mb * grad_accum))
    length = plan_length.choose(len(lengths) - held, held or w.eval_rows, per_epoch, epochs=w.epochs,
                                max_steps=max_steps, stop_early=w.stop_early, separate=w.eval_source)
    said = len(reasons)  # the length's reasons go here, once the step time has sized them
    mean_len = min(seq_len, sum(min(n, seq_len) for n in lengths) / rows) if lengths else seq_len
    cost = objectives.kto.STEP_COST if objective.RATED else 1.0  # (its mismatched rows' forward pass)
    step_time = (grad_accum * speed_model.micro_batch_seconds(shape, setup, hw, target.gpu, mean_len) * cost
                 * target.time_factor)
    if streams(strategy, options) and target.gpu:
        reasons.append(host_plan.streaming_reason(shape, setup, hw, target.gpu))
    if setup.offload == "optimizer" and s.trains_base:
        host_s, why = host_plan.optimizer_seconds(shape, setup, hw, target.gpu)
        step_time += host_s * target.time_factor
        reasons.append(why + f" A step: about {step_time:.1f} s.")
        reasons += gpu_instead(shape, target, strategy, w.options, (seq_len, options, effective), step_time,
                               lambda setup: cost * target.time_factor * speed_model.micro_batch_seconds(
                                   shape, setup, hw, target.gpu, mean_len))
    if setup.activations_on_host and target.gpu:
        act_s, why = host_plan.activation_seconds(shape, setup, target.gpu)
        step_time += grad_accum * act_s * target.time_factor
        reasons.append(why)
    if steps is None:  # (a re-plan keeps the run's length and says nothing new of it)
        length = plan_length.within(length, step_time, w.time_limit_s, per_epoch)
        reasons[said:said] = length.reasons
    epochs, total_steps = length.epochs, steps or length.steps
    reference_s = 0.0
    if objective.REFERENCE:  # a forward pass over the pairs the steps train on: measured about half their
        # training time for LoRA on the CPU (a frozen base needs no weight gradients); for rated answers, a forward
        # pass over both sequences is about a supervised step over the rated ones: a step / STEP_COST
        reference_s = step_time * min(per_epoch, total_steps) * (1 / cost if objective.RATED else 0.5)
        reasons.append(f"The starting model's log-probabilities of the "
                       f"{'rated answers' if objective.RATED else 'pairs'} the run trains on, worked out before "
                       f"step 1: about {duration(reference_s)}, counted in the time (a time limit counts the steps "
                       "alone).")
    device_bytes = int(est.device_total * target.factor)
    if device_bytes > target.usable:
        warnings.append(f"The estimate ({device_bytes / GIB:.1f} GiB) does not fit what the device offers "
                        f"({target.limit / GIB:.1f} GiB); expect it to run out of memory.")
    if est.ram_total > target.ram_limit:
        warnings.append(f"Host RAM needed ({est.ram_total / GIB:.1f} GiB) is more than is free "
                        f"({target.ram_limit / GIB:.1f} GiB).")
    if est.disk_total > target.disk_free:
        warnings.append(f"The run folder needs about {est.disk_total / GIB:.1f} GiB, more than the "
                        f"{target.disk_free / GIB:.1f} GiB free.")
    if target.device == "cpu":
        warnings.append(f"Without a GPU each step takes about {duration(step_time)}; fine for small models and "
                        "short runs, slow for anything large."
                        + (f" This run would take about {duration(step_time * total_steps)}: a time limit "
                           "(--time-limit 1h, or Time limit under Advanced) cuts it to what fits."
                           if step_time * total_steps > LONG_ON_CPU_S and not w.time_limit_s else ""))
    memory = dict(est.device)
    if target.factor != 1.0:
        memory["calibration correction"] = device_bytes - est.device_total
    plan = Plan(
        strategy=strategy, strategy_built=s.built, device=target.device, precision=target.precision,
        micro_batch=mb, grad_accum=grad_accum, seq_len=seq_len, gradient_checkpointing=ckpt, lr=lr, epochs=epochs,
        max_steps=max_steps, total_steps=total_steps, memory=memory, memory_limit=target.limit,
        step_time_s=round(step_time, 3), total_time_s=round(step_time * total_steps + reference_s, 1),
        truncated_rows=truncated,
        gpu_index=target.gpu.index if target.gpu else None, gpu_name=target.gpu.name if target.gpu else "",
        offload=offloaded(strategy, setup),
        ram=est.ram, ram_limit=target.ram_limit if target.ram_limit < 1 << 62 else 0, disk=est.disk,
        disk_free=hw.disk_free_bytes, epoch_time_s=round(step_time * per_epoch, 1),
        fits=device_bytes <= target.usable and est.ram_total <= target.ram_limit,
        optimizer=setup.optimizer, options=settings.to_dict(s.options(options)), experts=shape.experts,
        packing=w.packing, sequences=rows,
        kernels="auto" if w.kernels is None else list(w.kernels), stop_early=length.stop_early,
        keep_best=setup.keep_best, time_limit_s=w.time_limit_s or 0.0, time_capped=length.capped,
        objective=w.objective or "sft", beta=w.beta, train_on=w.train_on or "assistant",
        calibration={"factor": target.factor, "time_factor": target.time_factor, "source": target.factor_source}
        if (target.factor, target.time_factor) != (1.0, 1.0) else {},
        reasons=reasons, warnings=warnings,
    )
    plan.rejected = rejected(shape, target, plan, w)
    return plan


def _round_up(n: int, k: int) -> int:
    return max(k, (n + k - 1) // k * k)

