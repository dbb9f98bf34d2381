"""The one file a training run is started from (the trainer reads nothing else).

Written by the app into the run's folder as run.json; `python -m core.trainer run.json` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import objectives, settings
from core.settings import check, option
from tuneforge_kernels import OPS

TRAIN_ON = ("assistant", "last", "all")
# Settings that moved into strategy_options (run.json files written before strategies had their own).
MOVED_TO_OPTIONS = {"lora_r": "r", "lora_alpha": "alpha", "lora_dropout": "dropout"}


@dataclass
class RunConfig:
    run_id: str = option(help="Id of the run in the history, e.g. 20261123-091512-a3f9.")
    run_dir: str = option(help="Folder of this run: checkpoints, adapter, events and logs go here.")
    db_path: str = option(help="SQLite history file the trainer records the run in.")
    model_path: str = option(help="HF model folder to train (already resolved: no names, no downloads).")
    data_path: str = option(help="Dataset file or folder.")
    data_mapping: dict = option({}, help="Column mapping the dataset is read with, e.g. {'prompt': 'question', "
                                         "'completion': 'answer'}; empty: the schema is detected.")
    good_above: float | None = option(None, help="Scored answers (a 'score' column) above this are rated good, the "
                                                 "rest bad, for the data and the validation set alike; None: the "
                                                 "middle of the data's scores (core/data/scores.py).")
    bad_rows: str = option("skip", help="'skip': rows with problems are left out (counted and listed in the run's "
                                        "log); 'stop': the first bad row stops the run with its file:line.")
    project: str = option("default", help="Project the run belongs to in the history.")
    model_name: str = option("", help="What the person asked for (e.g. 'default'), shown in the history.")
    strategy: str = option("lora", help="Training strategy: a name registered in core.strategies.")
    device: str = option("auto", help="'auto' (CUDA when present), 'cuda' or 'cpu'.")
    precision: str = option("auto", help="'auto', 'bf16', 'fp16' or 'fp32' for the trained weights' compute.")
    seq_len: int = option(512, help="Longest sequence in tokens; longer examples are cut at the end.")
    micro_batch: int = option(4, help="Examples per forward/backward pass.")
    grad_accum: int = option(1, help="Micro-batches per optimizer step (effective batch = micro_batch × grad_accum).")
    max_steps: int = option(0, help="Optimizer steps to run; 0 means run `epochs` epochs.")
    epochs: float = option(1.0, help="Passes over the training data when max_steps is 0.")
    lr: float = option(2e-4, help="Peak learning rate (AdamW), reached after warm-up, then cosine decay.")
    warmup_ratio: float = option(0.05, help="Fraction of steps spent warming the learning rate up from 0.")
    weight_decay: float = option(0.0, help="AdamW weight decay.")
    max_grad_norm: float = option(1.0, help="Clip gradients to this norm; 0 turns clipping off.")
    seed: int = option(42, help="Seed for data order, initialisation and sampling; same seed, same run.")
    train_on: str = option("assistant", help="'assistant': loss on assistant turns only; 'last': on the final "
                                             "assistant turn only (a pair objective's runs: the answer compared or "
                                             "rated, the turns before it its prompt); 'all': every token.")
    objective: str = option("sft", help="What the run learns (core/objectives): " + "; ".join(
        f"'{m.NAME}', {m.SUMMARY}" for m in objectives.OBJECTIVES.values()) + ".")
    beta: float | None = option(None, help="A preference objective's strength; None takes its own default. "
                                           + "; ".join(f"{m.LABEL}: {m.BETA_HELP}"
                                                       for m in objectives.OBJECTIVES.values() if m.PAIRS) + ".")
    eval_fraction: float | None = option(None, help="Share of rows held out for the validation loss; None uses the "
                                                    "rule for the dataset's size (none under 20 rows, a tenth "
                                                    "under 200, else a twentieth, at most 256).")
    eval_data: str = option("", help="A separate validation set (a file, a folder or a cached hub dataset id) whose "
                                     "rows measure the validation loss; then no training row is held out. Empty: "
                                     "rows are held out of the training data (eval_fraction).")
    eval_every: int = option(0, help="Validation every N steps; 0 picks about ten times per run. There is always "
                                     "one at the end.")
    checkpoint_every: int = option(50, help="Save a resumable checkpoint every N steps (and always at the end).")
    keep_checkpoints: int = option(1, help="How many recent checkpoints stay on disk. One is enough to resume: "
                                           "a checkpoint is whole before the one before it is deleted (the disk "
                                           "holds one more while it is written).")
    keep_best: bool = option(True, help="Keep the weights of the validation check with the lowest loss (best/ in the "
                                        "run's folder) when a later check is worse: chat, evaluate and export then "
                                        "use them unless told to take the last step's.")
    stop_early: int = option(0, help="End the run when this many validation checks in a row have not beaten the "
                                     "lowest validation loss so far (the model has begun memorizing its rows); "
                                     "0 trains every planned step.")
    time_limit_s: float = option(0.0, help="Train for at most this many seconds, the sessions of a resumed run "
                                           "together and pauses left out: the run then validates, saves its result "
                                           "and ends as done. 0: no limit.")
    gradient_checkpointing: bool = option(False, help="Recompute activations in backward to save memory.")
    packing: bool = option(True, help="Pack short rows together into full sequences (rows stay apart: positions "
                                      "restart per row and no row attends to another); turned off by itself where "
                                      "the model cannot keep packed rows apart.")
    strategy_options: dict = option({}, help="Settings of the strategy (the fields of its Options; `tuneforge "
                                             "strategies` lists them); unset ones take their defaults.")
    kernels: list[str] | str = option("auto", help="Our fused Triton kernels to train with: 'auto' uses all of them "
                                                   "on CUDA and none on the CPU (there they would only run in "
                                                   "Triton's slow interpreter); or a list of names from rmsnorm, "
                                                   "swiglu, rope, cross_entropy, lora; [] turns them off.")
    threads: int = option(0, help="CPU threads for torch; 0 lets torch decide.")
    memory_cap_bytes: int = option(0, help="Most memory the trainer may use on its device (GPU memory on CUDA, the "
                                            "process's data on the CPU); 0 means no cap. Set it to share the machine.")
    calibrate_after: int = option(2, help="Measure the true peak memory after this many steps and record it "
                                          "against the plan's estimate; 0 turns it off.")
    start_from: str = option("", help="Folder of trained weights the run starts from instead of the base's: another "
                                      "run's result (or its best/): an adapter for an adapter strategy, a whole "
                                      "model for a whole-model one. The base stays model_path, so comparisons and "
                                      "exports still count from it; empty starts from the base.")
    continues: dict = option({}, help="The run this one goes on from, for the history: {'run', 'weights', 'step'}.")
    tools: list = option([], help="Functions the data's conversations may call (its first row's 'tools', in the "
                                  "templates' form): offered when the tuned model is tried (chat, Try it).")
    thinks: bool = option(False, help="Whether the data's answers carry their reasoning (core/data/reasoning.py): "
                                      "the tuned model thinks before it answers, so trying it leaves room for that "
                                      "(inference.room).")
    plan: dict = option({}, help="The plan this run was made from (reasons, estimates), kept for the history.")
    hardware: dict = option({}, help="The hardware profile the plan was made for.")

    def __post_init__(self):
        check(self.seq_len >= 16, "seq_len", f"{self.seq_len} is too short; use 16 or more.")
        check(self.micro_batch >= 1, "micro_batch", "must be at least 1.")
        check(self.grad_accum >= 1, "grad_accum", "must be at least 1.")
        check(self.max_steps >= 0, "max_steps", "must be 0 (use epochs) or more.")
        check(self.max_steps > 0 or self.epochs > 0, "epochs", "must be above 0 when max_steps is 0.")
        check(0 < self.lr < 1, "lr", f"{self.lr} is not a learning rate; try 2e-4 for LoRA or 1e-5 for full.")
        check(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1).")
        check(self.train_on in TRAIN_ON, "train_on", f"must be one of {', '.join(TRAIN_ON)}.")
        check(self.objective in objectives.NAMES, "objective", f"must be one of {', '.join(objectives.NAMES)}.")
        if self.beta is not None:
            aim = objectives.get(self.objective)
            check(aim.PAIRS, "beta", "is a preference objective's strength, and this run is supervised; leave it out.")
            low, high = aim.BETA_RANGE
            check(low <= self.beta <= high, "beta", f"must be in [{low:g}, {high:g}] for {aim.LABEL}; "
                                                    f"{aim.BETA:g} is the paper's.")
        check(self.eval_fraction is None or 0 <= self.eval_fraction < 0.5, "eval_fraction",
              "must be in [0, 0.5), or None for the rule by dataset size.")
        check(self.device in ("auto", "cuda", "cpu"), "device", "must be auto, cuda or cpu.")
        check(self.precision in ("auto", "bf16", "fp16", "fp32"), "precision", "must be auto, bf16, fp16 or fp32.")
        check(self.bad_rows in ("skip", "stop"), "bad_rows", "must be skip or stop.")
        check(self.eval_every >= 0, "eval_every", "must be 0 (about ten times per run) or a number of steps.")
        check(self.checkpoint_every >= 1, "checkpoint_every", "must be at least 1.")
        check(self.keep_checkpoints >= 1, "keep_checkpoints", "must be at least 1.")
        check(self.time_limit_s >= 0, "time_limit_s", "must be 0 (no limit) or a number of seconds.")
        check(self.stop_early >= 0, "stop_early", "must be 0 (train every step) or a number of validation checks.")
        from core import strategies  # the strategy checks its own settings, naming the one that is wrong

        options = strategies.get(self.strategy, need_built=False).options(self.strategy_options)
        check(not objectives.learns_pairs(self.objective) or not getattr(options, "layer_major", False), "objective",
              f"{self.objective} needs each micro-batch's whole forward pass for its loss; turn layer_major off.")
        check(self.kernels == "auto" or (isinstance(self.kernels, list) and set(self.kernels) <= set(OPS)),
              "kernels", f"must be 'auto' or a list of names from {', '.join(OPS)} ([] turns them off).")
        check(self.memory_cap_bytes >= 0, "memory_cap_bytes", "must be 0 (no cap) or a number of bytes.")
        check(self.calibrate_after >= 0, "calibrate_after", "must be 0 (off) or a number of steps.")


def load(path: str | Path) -> RunConfig:
    """A run's config file, including those written by earlier versions (so their runs still resume)."""
    data = settings.read_json_object(path)
    options = dict(data.get("strategy_options") or {})
    for old, new in MOVED_TO_OPTIONS.items():
        if old in data:
            value = data.pop(old)
            if data.get("strategy", "lora") in ("lora", "dora", "qlora"):
                options.setdefault(new, value)
    if options:
        data["strategy_options"] = options
    old_beta = data.pop("orpo_beta", None)  # before DPO and SimPO, every run.json had it (0.1 for SFT runs too)
    if old_beta is not None and data.get("objective") == objectives.orpo.NAME:
        data.setdefault("beta", old_beta)
    return settings.from_dict(RunConfig, data, source=str(path))
