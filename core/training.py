"""One training run in memory: the model as its strategy prepares it, the optimizer, the schedule,
and one optimizer step at a time; checkpoints that resume on the same trajectory.

The trainer script (core/trainer.py) drives a Session and does the talking (events, history,
signals); tests drive a Session directly, which is how every strategy is checked to resume exactly.
What makes resume exact: the data order is a pure function of (seed, step) (`batches_for_step`),
strategies' own choices are too (LISA's layers), and a checkpoint holds the trained weights, the
optimizer and schedule state, and the random generators' states.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from core import checkpoint, objectives, strategies
from core.objectives import pairs as pair_data
from core.data import tokenize
from core.errors import KnownError
from core.run_config import RunConfig
from tuneforge_kernels import OPS
from tuneforge_kernels.patch import patch as patch_kernels


def pick_device(cfg: RunConfig):
    """(device, dtype, precision name) for the run: CUDA when asked or available, bf16 where it exists."""
    import torch

    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise KnownError("The run asks for CUDA but no GPU is visible; plan again with --device cpu.")
    device = torch.device("cuda" if (cfg.device in ("auto", "cuda") and cuda) else "cpu")
    precision = cfg.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "fp32"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    return device, dtype, precision


def use_kernels(model, cfg: RunConfig, device) -> dict:
    """Our kernels patched into the model as the run asks ('auto': all of them on CUDA, none on the CPU, where
    only Triton's slow interpreter could run them): op → tuneforge_kernels.patch.Patched, which says where or why
    not."""
    ops = (list(OPS) if device.type == "cuda" else []) if cfg.kernels == "auto" else cfg.kernels
    return patch_kernels(model, ops, device)


class LrSchedule:
    """The learning rate's factor at each step: linear warm-up, then cosine decay to a tenth of the peak.

    `cut` ends it sooner, when a run turns out too slow for its time limit: the decay then goes on from the
    factor the run has reached and ends at the new last step, so the rate moves on without a jump and the run
    still ends on a small one. Cut within the warm-up, the schedule is simply the new length's own.
    An object, not a closure, so that LambdaLR's state (and so a checkpoint) keeps a cut: a resume follows it.
    """

    def __init__(self, total: int, warmup: int):
        self.total, self.warmup = total, warmup
        self.bend: tuple[int, float] | None = None  # (step, factor there): the decay starts afresh from it

    def cut(self, step: int, total: int, warmup: int) -> None:
        """End at `total` steps instead, from `step` on (`warmup`: the shorter run's own warm-up)."""
        if step < self.warmup and self.bend is None:
            self.total, self.warmup = total, warmup
        else:
            self.bend, self.total = (step, self(step)), total

    def __call__(self, step: int) -> float:
        if self.bend is None and step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        start, level = self.bend or (self.warmup, 1.0)
        progress = min(1.0, max(0.0, (step - start) / max(1, self.total - start)))
        return 0.1 + (level - 0.1) * 0.5 * (1 + math.cos(math.pi * progress))


def batches_for_step(step: int, cfg: RunConfig, n: int) -> list[list[int]]:
    """Example indices of each micro-batch of optimizer step `step`: a pure function of (seed, step).

    That is what makes resume exact: no data-loader state to save, the order is recomputed. The
    examples are positions [step·E, (step+1)·E) of an endless stream of per-epoch shuffles, E being
    the effective batch, and only then cut into micro-batches: so a re-plan that trades micro-batch
    for accumulation (after running out of memory) trains on exactly the same examples per step.
    """
    effective = cfg.micro_batch * cfg.grad_accum
    picked: list[int] = []
    orders: dict[int, list[int]] = {}
    for position in range(step * effective, (step + 1) * effective):
        epoch, k = divmod(position, n)
        if epoch not in orders:
            orders[epoch] = epoch_order(cfg, epoch, n)
        picked.append(orders[epoch][k])
    return [picked[i:i + cfg.micro_batch] for i in range(0, effective, cfg.micro_batch)]


def epoch_order(cfg: RunConfig, epoch: int, n: int) -> list[int]:
    """The order of the `n` examples in pass `epoch` over them (batches_for_step's shuffle)."""
    order = list(range(n))
    random.Random(cfg.seed * 1000003 + epoch).shuffle(order)
    return order


def examples_seen(cfg: RunConfig, n: int, steps: int) -> list[int]:
    """The examples the first `steps` optimizer steps train on (batches_for_step), in index order: all of them
    once the steps reach a whole pass."""
    count = steps * cfg.micro_batch * cfg.grad_accum
    return list(range(n)) if count >= n else sorted(epoch_order(cfg, 0, n)[:count])


class Session:
    """A model ready to train with its strategy, optimizer and schedule; `step` runs one optimizer step."""

    def __init__(self, cfg: RunConfig, total_steps: int | None = None):
        import torch

        self.cfg = cfg
        self.strategy = strategies.get(cfg.strategy)
        self.options = self.strategy.options(cfg.strategy_options)
        self.device, self.dtype, self.precision = pick_device(cfg)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        start = self._start_folder()
        whole = start is not None and self.strategy.result == "model"  # another run's whole model is the start
        model = self.strategy.load_model(str(start) if whole else cfg.model_path, self.dtype, self.device,
                                         self.options)
        model.config.use_cache = False
        if cfg.gradient_checkpointing:
            model.activation_checkpointing_enable()  # non-reentrant: recomputes each layer in backward
        self.model = self.strategy.prepare(model, self.options, cfg)
        if start is not None and not whole:
            self.strategy.start_from(self.model, start)
        self.kernels = use_kernels(self.model, cfg, self.device)
        self.model.train()
        self.params = self.strategy.trained_parameters(self.model)
        self.optimizer = self.strategy.make_optimizer(self.model, self.options, cfg, self.device.type)
        self.placement = self.strategy.placement(self.model, self.options)  # part → GPU / RAM / NVMe
        self.activations = None  # activations_on_host: what forward saves goes to pinned host RAM
        if getattr(self.options, "activations_on_host", False):
            from core.offload.activations import HostActivations

            self.activations = HostActivations(self.model, self.device)
        self.scheduler = None
        if total_steps is not None:
            self.schedule(total_steps)
        self.step_index = 0  # optimizer steps done
        self.objective = objectives.get(cfg.objective)  # what it learns (core/objectives)
        self.beta = objectives.beta(cfg.objective, cfg.beta)  # a pair objective's strength
        self.prefers: float | None = None  # pair objectives: share of the last step's pairs preferred the right way...
        self.eval_prefers: float | None = None  # ...and of the validation pairs at the last check
        self._written = [0, 0]  # spill bytes written: before the last step, after it

    def _start_folder(self) -> Path | None:
        """The trained weights this run goes on from (cfg.start_from), or None to start from the base."""
        if not self.cfg.start_from:
            return None
        folder = Path(self.cfg.start_from)
        if not folder.is_dir() and self.strategy.result == "adapter" and checkpoint.latest(self.cfg.run_dir):
            return None  # resuming: the checkpoint holds the whole adapter, and the frozen base is model_path
        if not folder.is_dir():
            raise KnownError(f"{folder}: the weights this run starts from are gone (was run "
                             f"{self.cfg.continues.get('run', '?')} deleted?); start a new run instead.")
        return folder

    def schedule(self, total_steps: int) -> None:
        """The learning-rate schedule for a run of `total_steps` (set before the first step or a resume)."""
        import torch

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, LrSchedule(total_steps, int(self.cfg.warmup_ratio * total_steps)))

    def cut_schedule(self, total_steps: int) -> None:
        """End the schedule at `total_steps` from the current step on (LrSchedule.cut): the rate moves on from
        where it is and ends on the same small one, now at the new last step."""
        self.scheduler.lr_lambdas[0].cut(self.step_index, total_steps, int(self.cfg.warmup_ratio * total_steps))
        self.scheduler.last_epoch -= 1  # the rate of the step about to run, by the new schedule
        self.scheduler.step()

    @property
    def trainable_count(self) -> int:
        streamer = getattr(self.model, "tuneforge_offload", None)  # streamed layers are empty while away
        return sum(p.numel() for p in (streamer.sized(self.params) if streamer else self.params))

    def step(self, batches: list[dict]) -> tuple[float, int, str | None]:
        """One optimizer step over these micro-batches: (loss per trained token, tokens seen, strategy note)."""
        import torch

        note = self.strategy.before_step(self.step_index, self.model, self.optimizer, self.options, self.cfg)
        # The loss is a mean over every trained token of the step, however it is cut into micro-batches.
        trained = sum(int((b["labels"][:, 1:] != tokenize.IGNORE).sum()) for b in batches)
        loss_sum, tokens, ready = 0.0, 0, []
        for batch in batches:
            batch = dict(batch)
            counted = batch.pop("tokens", None)  # packed batches count their real tokens (no attention mask)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            tokens += int(counted) if counted is not None else int(batch["attention_mask"].sum())
            ready.append(batch)
        if getattr(self.options, "layer_major", False) and len(ready) > 1:  # (never pairs: RunConfig refuses it)
            loss_sum = self._layer_major_step(ready, max(1, trained))
        elif self.objective.PAIRS:
            loss_sum = self._each_micro_batch(ready, self._pair_loss(ready))
        else:
            def supervised(batch: dict):
                loss = self.model(**batch, num_items_in_batch=max(1, trained)).loss
                return loss, float(loss.detach())
            loss_sum = self._each_micro_batch(ready, supervised)
        if self.cfg.max_grad_norm and not getattr(self.optimizer, "clips", False):
            torch.nn.utils.clip_grad_norm_([p for p in self.params if p.grad is not None], self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_index += 1
        self._written = [self._written[1], self._drive_writes()]
        return loss_sum, tokens, note

    def _each_micro_batch(self, batches: list[dict], loss_of) -> float:
        """Forward and backward of each micro-batch, `loss_of(batch)` giving (its loss, what it reports of it);
        returns the sum of what they report."""
        reported = 0.0
        for i, batch in enumerate(batches):
            if hasattr(self.optimizer, "last_micro_batch"):  # a host optimizer updates as the last grads arrive
                self.optimizer.last_micro_batch = i == len(batches) - 1
            with self._saved_activations():
                loss, said = loss_of(batch)
            loss.backward()
            reported += said
        return reported

    def _pair_loss(self, batches: list[dict]):
        """The objective's loss of a micro-batch of preference pairs, as a share of the step's (core/objectives),
        reporting its share of what the run reports; the share of the step's pairs the model prefers the right
        way is kept in `prefers` as the micro-batches go."""
        totals, score = pair_data.step_terms(self.model, batches, self.objective.RATED)
        self.prefers = 0.0

        def loss_of(batch: dict):
            scores = score(batch)
            self.prefers += self.objective.preferred(scores) / max(1, totals.pairs)
            return self.objective.loss(scores, totals, self.beta)
        return loss_of

    def _drive_writes(self) -> int:
        """Bytes written to the drive so far by the run's offloading: spilled optimizer state, and streamed layers
        that LISA trained and wrote back to their files (the store's load-time writes left out)."""
        spill, streamer = getattr(self.optimizer, "spill", None), getattr(self.model, "tuneforge_offload", None)
        return ((spill.writes if spill is not None else 0)
                + (streamer.store.bytes_written - streamer.store.total_bytes if streamer and streamer.store.io else 0))

    def _layer_major_step(self, batches: list[dict], trained: int) -> float:
        """Forward and backward of all micro-batches one layer at a time (layer_major: core/offload/layer_major.py);
        a host optimizer is told which backward completes each gradient, as it is in micro-batch order."""
        from core.offload import layer_major
        from core.strategies.lisa import decoder_layers

        host = hasattr(self.optimizer, "last_micro_batch")
        last = (lambda is_last: setattr(self.optimizer, "last_micro_batch", is_last)) if host else None
        return layer_major.step(self.model, decoder_layers(self.model), batches, trained,
                                getattr(self.model, "tuneforge_offload", None), last)

    def _saved_activations(self):
        """Where forward keeps what backward needs: pinned host RAM with `activations_on_host`."""
        import contextlib

        return self.activations() if self.activations is not None else contextlib.nullcontext()

    def io_stats(self) -> dict:
        """Host and disk traffic of what is offloaded: weights streamed, pinned pool use, the spill file's bytes, and
        the drive's wear (`written_last_step`: spilled state, trained layers written back); empty when nothing is."""
        pool, spill = getattr(self.optimizer, "pool", None), getattr(self.optimizer, "spill", None)
        streamer = getattr(self.model, "tuneforge_offload", None)
        stats = {}
        if self.activations is not None:
            stats["activations_moved_bytes"] = self.activations.moved  # each way, per micro-batch
        if streamer is not None:  # weights streamed to the device so far, and the drive's traffic when they live there
            stats["streamed_bytes"] = streamer.bytes_copied
            if streamer.store.io is not None:
                stats.update(weights_read_bytes=streamer.store.bytes_read, written_last_step=self._written[1] -
                             self._written[0])
        if pool is None:
            return stats
        stats.update(pinned_bytes=pool.capacity, pinned_used_bytes=pool.used, pinned_peak_bytes=pool.peak)
        if spill is not None:
            stats.update(spill_file_bytes=spill.file_bytes, spill_written_bytes=spill.writes,
                         spill_read_bytes=spill.reads, written_last_step=self._written[1] - self._written[0])
        return stats

    def evaluate(self, examples, pad_id: int) -> float | None:
        """Loss per trained token over `examples` (None when there are none); over preference pairs
        (core.objectives.pairs.Pairs) what the run reports of its objective, with the share of pairs preferred the
        right way in `eval_prefers`."""
        if not len(examples):
            return None
        self.model.eval()
        if isinstance(examples, pair_data.Pairs):
            value, right = pair_data.evaluate(self.model, examples, pad_id, self.cfg.micro_batch, self.device,
                                              lambda s, t: self.objective.loss(s, t, self.beta),
                                              self.objective.preferred)
            self.eval_prefers = right / len(examples)
        else:
            from core import evaluation

            value, _ = evaluation.mean_loss(self.model, examples, pad_id, self.cfg.micro_batch, self.device)
        self.model.train()
        return value

    def _named_trained(self) -> dict:
        names = {id(p): n for n, p in self.model.named_parameters()}
        return {names[id(p)]: p for p in self.params}

    def save_checkpoint(self, run_dir: str | Path, state: dict) -> Path:
        with self.strategy.weights_on_host(self.model):
            return checkpoint.save(Path(run_dir), self.step_index, self._named_trained(), self.optimizer,
                                   self.scheduler, state, self.cfg.keep_checkpoints)

    def resume(self, path: Path) -> dict:
        with self.strategy.weights_on_host(self.model, write=True):
            state = checkpoint.load(path, self._named_trained(), self.optimizer, self.scheduler,
                                    dict(self.model.named_parameters()))
        self.step_index = state["step"]
        return state

    def save_result(self, folder: Path) -> None:
        with self.strategy.weights_on_host(self.model):
            self.strategy.save(self.model, folder)

    def close(self) -> None:
        """Release what the run holds outside the model: the host optimizer's worker and scratch spill file."""
        close = getattr(self.optimizer, "close", None)
        if close is not None:
            close()
