"""AdamW on the host: fp32 masters and Adam moments in RAM, updated by the CPU as gradients arrive.

For trained base weights whose optimizer state does not fit the GPU (full-parameter LISA layers,
full fine-tuning): that state is 12 bytes a weight (an fp32 master and two fp32 moments), six times
a bf16 weight. Here it lives in views of one pinned pool (core.offload.pool) and costs the GPU nothing.

How a step runs:
- a post-accumulate-grad hook on every trained parameter fires as soon as backward has finished its
  gradient; on the step's last micro-batch it copies the gradient into a pool view (on CUDA
  non_blocking on a side stream, after an event marking the gradient ready) and drops the GPU
  gradient at once (record_stream keeps its memory from reuse until the copy is done);
- a worker thread runs AdamW on the host copy (the arithmetic of core.optimizers.MasterAdamW, so a
  run gives the same losses) and writes the weight back in its own dtype through the same view;
- `step()` waits for every update and makes the compute stream wait for the copies back, so the
  next forward sees the new weights; the trainer's loop is unchanged.

Gradient clipping by global norm needs every gradient before any update, and the last ones arrive
when backward ends. We wait for the norm: with clipping on, the updates start in `step()` (the
gradients' copies to RAM still overlap backward). Clipping by the previous step's norm, or per
tensor, would change the trajectory, so a run re-planned onto the host optimizer after running out
of memory would no longer continue the one it resumes. With max_grad_norm 0 each tensor updates as
soon as its gradient arrives, overlapping the rest of backward.

With a `spill` (core.offload.spill), `forget` writes a switched-off layer's state to NVMe instead of
dropping it, and the state comes back exactly when the layer trains again. Checkpoints hold the state
in RAM in `optimizer.pt` and a copy of the spill file for the rest (core.checkpoint), so a resumed run
continues the same trajectory.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from core.offload.pool import ALIGN, PinnedPool, PoolFull
from core.optimizers import adamw_update

STATE = ("master", "exp_avg", "exp_avg_sq")


def _padded(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def pool_bytes(params, grad_bytes: int) -> int:
    """Pool bytes these parameters need at once: three fp32 state tensors and one host gradient each."""
    return sum(3 * _padded(4 * p.numel()) + _padded(grad_bytes * p.numel()) for p in params)


class HostAdamW(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected) whose state lives in host RAM (or spills to NVMe)."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0, *,
                 pool_bytes: int, max_grad_norm: float = 0.0, spill=None):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.params = [p for g in self.param_groups for p in g["params"]]
        self.index = {p: i for i, p in enumerate(self.params)}
        self.group_of = {p: g for g in self.param_groups for p in g["params"]}
        self.pool = PinnedPool(pool_bytes)
        self.max_grad_norm = max_grad_norm
        self.clips = bool(max_grad_norm)  # Session: do not clip p.grad (it is gone); we clip on the host
        self.spill = spill
        self.last_micro_batch = True  # Session sets it: gradients accumulate on the GPU until the last one
        self.stream = torch.cuda.Stream() if any(p.is_cuda for p in self.params) else None
        self.last_grad_norm: float | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="host-adam")
        self._grads: dict = {}  # param → (host gradient view, CUDA event when it has arrived, or None)
        self._updates: dict = {}  # param → Future of the update (its result: the copy-back event or None)
        self._spilling: dict = {}  # param → (state views, write futures): freed once written
        self._spilled_steps: dict = {}  # param → Adam step count of the state held by the spill file
        self._hooks = []
        for p in self.params:  # LISA's frozen layers too: the hook stays when they are switched on later
            frozen = not p.requires_grad
            p.requires_grad_(True)
            self._hooks.append(p.register_post_accumulate_grad_hook(self._on_grad))
            p.requires_grad_(not frozen)

    # --- gradients in, updates out ----------------------------------------------------------------------
    def _on_grad(self, p) -> None:
        if self.last_micro_batch:
            self._capture(p)

    def _capture(self, p) -> None:
        grad = p.grad
        host = self._take(p.shape, grad.dtype)
        ready = None
        if grad.is_cuda:
            computed = torch.cuda.Event()
            computed.record()
            with torch.cuda.stream(self.stream):
                self.stream.wait_event(computed)
                host.copy_(grad, non_blocking=True)
                grad.record_stream(self.stream)
                ready = torch.cuda.Event()
                ready.record(self.stream)
        else:
            host.copy_(grad)
        p.grad = None
        self._grads[p] = (host, ready)
        if not self.max_grad_norm:
            self._updates[p] = self._worker.submit(self._update, p, host, ready, None)

    @torch.no_grad()
    def step(self, closure=None):
        for p in self.params:  # gradients set by hand (not by backward) count too
            if p.grad is not None and p not in self._grads:
                self._capture(p)
        if self.max_grad_norm and self._grads:
            scale = self._clip_scale()
            for p in self.params:
                if p in self._grads and p not in self._updates:
                    host, ready = self._grads[p]
                    self._updates[p] = self._worker.submit(self._update, p, host, ready, scale)
        for p, future in self._updates.items():
            done = future.result()
            if done is not None:
                torch.cuda.current_stream(p.device).wait_event(done)
                done.synchronize()  # the view it copied from goes back to the pool next
        for host, _ in self._grads.values():
            self.pool.give_back(host)
        self._grads.clear()
        self._updates.clear()
        self._reap(wait=False)
        return None

    def _clip_scale(self):
        """torch.nn.utils.clip_grad_norm_'s factor (same formula), from the host copies of every gradient."""
        grads = [self._grads[p] for p in self.params if p in self._grads]
        for _, ready in grads:
            if ready is not None:
                ready.synchronize()
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, 2) for g, _ in grads]), 2)
        self.last_grad_norm = float(total)
        return torch.clamp(self.max_grad_norm / (total + 1e-6), max=1.0)

    @torch.no_grad()
    def _update(self, p, g, ready, scale):
        if ready is not None:
            ready.synchronize()
        state = self._state_of(p)
        if scale is not None:
            g.mul_(scale)  # in the gradient's dtype, as clip_grad_norm_ does in place
        master = state["master"]
        adamw_update(state, g, master, self.group_of[p])
        g.copy_(master)  # the weight in its own dtype, staged in the gradient's view
        if not p.is_cuda:
            p.copy_(g)
            return None
        with torch.cuda.stream(self.stream):
            p.copy_(g, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.stream)
        return done

    # --- state: in the pool, or in the spill file -------------------------------------------------------
    def _take(self, shape, dtype):
        try:
            return self.pool.take(shape, dtype)
        except PoolFull:
            self._reap(wait=True)  # spills still being written hold views; wait for them and retry
            return self.pool.take(shape, dtype)

    def _reap(self, wait: bool) -> None:
        for p, (views, futures) in list(self._spilling.items()):
            if wait or all(f.done() for f in futures):
                for f in futures:
                    f.result()
                for v in views.values():
                    self.pool.give_back(v)
                del self._spilling[p]

    def _state_of(self, p) -> dict:
        state = self.state[p]
        if state:
            return state
        if p in self._spilling:  # switched off and on again before its write finished: the views still hold it
            views, futures = self._spilling.pop(p)
            for f in futures:
                f.result()
        else:
            views = {name: self._take(p.shape, torch.float32) for name in STATE}
            if p in self._spilled_steps:
                for f in self.spill.get(self.index[p], views):
                    f.result()
            else:
                views["master"].copy_(p.detach())
                views["exp_avg"].zero_()
                views["exp_avg_sq"].zero_()
        if self.spill is not None:
            self.spill.discard(self.index[p])
        state.update(views, step=self._spilled_steps.pop(p, 0))
        return state

    def forget(self, params) -> None:
        """These parameters stopped training: write their state to the spill file, or drop it."""
        for p in params:
            state = self.state.pop(p, None)
            if not state:
                continue
            views = {name: state[name] for name in STATE}
            if self.spill is None:
                for v in views.values():
                    self.pool.give_back(v)
            else:
                self._spilled_steps[p] = state["step"]
                self._spilling[p] = (views, self.spill.put(self.index[p], views))

    def close(self) -> None:
        """End of the run: unhook the parameters, stop the worker and delete the spill's scratch file."""
        for hook in self._hooks:
            hook.remove()
        self._worker.shutdown(wait=True)
        if self.spill is not None:
            self.spill.close()

    def state_dict(self) -> dict:
        """The state in RAM (copied out of the pool: saving a view would save the whole pool), and under
        "spilled" where each spilled state lies in the spill file, which core.checkpoint copies beside it."""
        self._reap(wait=True)
        saved = super().state_dict()
        saved["state"] = {i: {k: v.clone() if torch.is_tensor(v) else v for k, v in self.state[p].items()}
                          for i, p in enumerate(self.params) if self.state.get(p)}
        if self._spilled_steps:
            table = self.spill.table()
            saved["spilled"] = {self.index[p]: {"step": step, **table[self.index[p]]}
                                for p, step in self._spilled_steps.items()}
        return saved

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore state saved by this optimizer or by MasterAdamW (which keeps no master for fp32 weights).
        Spilled state comes back from the checkpoint's copy of the spill file ("spill_file", set by
        core.checkpoint); with a spill, the state of parameters not training now goes straight to it."""
        self._reap(wait=True)
        for p, state in self.state.items():
            for name in STATE:
                if name in state:
                    self.pool.give_back(state[name])
        self.state.clear()
        for p in self._spilled_steps:
            self.spill.discard(self.index[p])
        self._spilled_steps.clear()
        spilled = state_dict.get("spilled") or {}
        if spilled and self.spill is not None:  # without a spill now, spilled state is dropped, as LISA drops it
            self.spill.adopt(state_dict["spill_file"], {int(i): {k: v for k, v in entry.items() if k != "step"}
                                                         for i, entry in spilled.items()})
            self._spilled_steps = {self.params[int(i)]: int(entry["step"]) for i, entry in spilled.items()}
        for index, saved in state_dict["state"].items():
            p = self.params[int(index)]
            values = {"master": saved.get("master", p.detach()), "exp_avg": saved["exp_avg"],
                      "exp_avg_sq": saved["exp_avg_sq"]}
            values = {k: v.to("cpu", torch.float32).contiguous() for k, v in values.items()}
            if self.spill is not None and not p.requires_grad:
                for f in self.spill.put(int(index), values):
                    f.result()
                self._spilled_steps[p] = int(saved["step"])
                continue
            views = {name: self._take(p.shape, torch.float32) for name in STATE}
            for name in STATE:
                views[name].copy_(values[name])
            self.state[p] = {**views, "step": int(saved["step"])}
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            group.update({k: v for k, v in saved.items() if k != "params"})
