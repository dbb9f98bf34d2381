"""Optimizers by name, and our AdamW that keeps fp32 master weights only where it keeps state.

Why our own AdamW for trained base weights (full fine-tuning, LISA): on a GPU the weights are
bf16, and a bf16 weight cannot take a small update (1e-5 of a weight of 0.02 is below bf16's 8-bit
mantissa, so the update rounds away). Mixed-precision training fixes that with an fp32 copy of each
trained weight; ours keeps that copy inside the optimizer state, next to the two moments, so:

- state exists only for parameters that have had a gradient: a LISA layer that is not active
  costs nothing, and `forget(params)` frees a layer's state the moment it is switched off;
- the bf16 weight is refreshed from its fp32 master after each update;
- checkpoints keep the state in fp32 (torch's own `load_state_dict` would cast it to the weight's
  bf16 and lose the master's low bits, so a resumed run would drift from the one that never stopped).

It updates one tensor at a time, a big one in rows of CHUNK_ELEMENTS (a 128k-token embedding's two fp32
temporaries would be GBs), so its extra memory is two fp32 temporaries of at most that many elements
(`core.memory_model` counts them), not a copy of every parameter as torch's foreach AdamW holds.

With `stochastic=True` a bf16 weight keeps no master: it takes each update by stochastic rounding
(core/stochastic_rounding.py), 4 bytes a weight less, each update exact in expectation.

A checkpoint of the host optimizer (core.offload.host_adam) with state spilled to disk loads here too
(a re-plan, or a resume with optimizer_on_host=false): the spilled state stays on disk, in a scratch
copy of the checkpoint's spill file, until its parameter has a gradient again, and then resumes its
moments exactly as the host optimizer would have. Later switches drop state as this optimizer always does.
"""

from __future__ import annotations

import functools

NAMES = ("adamw", "adamw8bit", "paged_adamw8bit", "adafactor", "galore", "frugal")
BITSANDBYTES = ("adamw8bit", "paged_adamw8bit")  # the ones bitsandbytes provides
LOW_RANK = ("galore", "frugal")  # project a base weight's gradient (core/galore.py): nothing to gain on adapters
# Theirs write each update straight into the weight: a 16-bit base weight loses fine-tuning-sized ones to rounding
# (bitsandbytes' AdamW8bit, 300 steps at 1e-5 on the CPU: a bf16 weight of 0.5 stayed 0.5; at 1e-3 it moved).
IN_PLACE = ("adamw8bit", "paged_adamw8bit", "adafactor")
IN_PLACE_WHY = ("8-bit AdamW and Adafactor write each update straight into the weights, and in {precision} a "
                "fine-tuning-sized update rounds away (300 steps at 1e-5 leave a bf16 weight of 0.5 where it was), "
                "so most weights would not train; for full fine-tuning in {precision} use optimizer adamw, galore "
                "or frugal (with fp32 masters, or stochastic_rounding=true).")
HELP = ("'adamw' (32-bit moments; fp32 masters for 16-bit weights), 'adamw8bit' (bitsandbytes 8-bit moments), "
        "'paged_adamw8bit' (8-bit, pages to RAM under pressure; CUDA), 'adafactor' (factored second moment)")
BASE_HELP = (HELP + ", 'galore' (AdamW whose moments live in a low-rank subspace of each decoder matrix's "
             "gradient, core/galore.py; fp32 masters kept), 'frugal' (GaLore, and the rest of each gradient moves "
             "its weights by its sign, with no state: full-rank updates for the same memory)")


def build(name: str, params: list, lr: float, weight_decay: float, masters: bool, stochastic: bool = False):
    """An optimizer over `params`. `masters`: trained weights are base weights (keep fp32 masters for
    16-bit ones, and allow state to be dropped); otherwise they are fp32 adapters and torch's AdamW serves.
    `stochastic`: bf16 base weights take their updates by stochastic rounding instead of through masters."""
    import torch

    if name == "adamw":
        if masters:
            return master_adamw()(params, lr=lr, weight_decay=weight_decay, stochastic=stochastic)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name in BITSANDBYTES:
        import bitsandbytes as bnb

        cls = bnb.optim.PagedAdamW8bit if name == "paged_adamw8bit" else bnb.optim.AdamW8bit
        return cls(params, lr=lr, weight_decay=weight_decay)
    if name == "adafactor":
        return torch.optim.Adafactor(params, lr=lr, weight_decay=weight_decay)
    if name in LOW_RANK:  # `params`: groups, those to project with their "rank", "every", "scale" (and "residual")
        from core.galore import galore_adamw

        return galore_adamw()(params, lr=lr, weight_decay=weight_decay, stochastic=stochastic)
    raise ValueError(f"unknown optimizer {name!r}; one of {', '.join(NAMES)}")


def state_bytes(optimizer) -> int:
    """Bytes of every tensor the optimizer holds as state (what LISA must keep flat)."""
    import torch

    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
               if torch.is_tensor(v))


def forget(optimizer, params) -> None:
    """Drop the state of these parameters (their layer stopped training). An optimizer with its own
    `forget` (core.offload.host_adam: state in a pinned pool, maybe spilled to NVMe) does it itself."""
    if hasattr(optimizer, "forget"):
        optimizer.forget(params)
        return
    for p in params:
        optimizer.state.pop(p, None)


def adamw_update(state: dict, grad, master, group: dict) -> None:
    """One AdamW step (decoupled weight decay, bias-corrected) of `master` in place, from fp32 moments in
    `state`. Shared by MasterAdamW and the host optimizer (core/offload/host_adam.py), so a run moved to
    the host continues on exactly the same trajectory."""
    grad = grad.float()
    adam_moments(state, grad, group)
    del grad
    denom = adam_denominator(state, group)
    master.mul_(1 - group["lr"] * group["weight_decay"])
    master.addcdiv_(state["exp_avg"], denom, value=-group["lr"] / (1 - group["betas"][0] ** state["step"]))


def adam_moments(state: dict, grad, group: dict) -> None:
    """Count a step and move the fp32 moments in `state` towards `grad` (fp32, the moments' shape)."""
    b1, b2 = group["betas"]
    state["step"] += 1
    state["exp_avg"].lerp_(grad, 1 - b1)
    state["exp_avg_sq"].mul_(b2).addcmul_(grad, grad, value=1 - b2)


def adam_denominator(state: dict, group: dict):
    """Adam's bias-corrected denominator, sqrt(v / (1 - b2^t)) + eps, a new tensor."""
    b2 = group["betas"][1]
    return (state["exp_avg_sq"] / (1 - b2 ** state["step"])).sqrt_().add_(group["eps"])


CHUNK_ELEMENTS = 1 << 24  # MasterAdamW updates a bigger tensor in rows of about this many elements (64 MiB in fp32)


def parts(p) -> list:
    """Indices that cover `p` in rows of about CHUNK_ELEMENTS elements (one `...` for a small tensor)."""
    if p.dim() == 0 or p.numel() <= CHUNK_ELEMENTS:
        return [...]
    rows = max(1, CHUNK_ELEMENTS // p[0].numel())
    return [slice(i, i + rows) for i in range(0, p.shape[0], rows)]


def new_state(p, moments: tuple[int, ...] | None = None, master: bool = True) -> dict:
    """Fresh AdamW state for `p`: step 0, fp32 moments of shape `moments` (default p's), and (with `master`) an
    fp32 master when `p` is 16-bit."""
    import torch

    shape = tuple(p.shape) if moments is None else moments
    state = {"step": 0, "exp_avg": torch.zeros(shape, dtype=torch.float32, device=p.device),
             "exp_avg_sq": torch.zeros(shape, dtype=torch.float32, device=p.device)}
    if master and p.dtype != torch.float32:
        state["master"] = p.detach().float()
    return state


@functools.cache
def master_adamw() -> type:
    """The MasterAdamW class (made on first use, so importing this module does not import torch)."""
    import torch

    from core.stochastic_rounding import round_into

    class MasterAdamW(torch.optim.Optimizer):
        """AdamW (decoupled weight decay, bias-corrected) with fp32 state and fp32 masters for 16-bit weights."""

        def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                     stochastic: bool = False):
            super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                          stochastic=stochastic))
            self.spill = None  # a host optimizer's spilled state, loaded from a checkpoint (core.offload.spill)
            self._spilled: dict = {}  # param → (its index, the Adam step count of its state in the spill)
            self._place = {p: i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
            self._generators: dict = {}  # device → the generator stochastic rounding draws from

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    state = self.state[p]
                    if not state and p in self._spilled:
                        self._unspill(p, state)
                    if not state:
                        state.update(self.fresh_state(p, group))
                    self.update(p, state, group)
            return None

        def fresh_state(self, p, group: dict, moments: tuple[int, ...] | None = None) -> dict:
            """The state `p` starts with at its first gradient: no master where it is rounded stochastically."""
            return new_state(p, moments, master=not self.rounds(p, group))

        def rounds(self, p, group: dict) -> bool:
            """`p` takes its updates by stochastic rounding (core/stochastic_rounding.py), not through a master."""
            return bool(group.get("stochastic")) and p.dtype == torch.bfloat16

        def update(self, p, state: dict, group: dict) -> None:
            """One step of `p` from its gradient (state made), CHUNK_ELEMENTS at a time (rows of a big tensor:
            the same arithmetic, elementwise, for a fraction of the temporaries); GaLore (core/galore.py) steps its
            projected weights whole."""
            step, kept = state["step"], state.get("master")
            generator = self.generator(p, state) if self.rounds(p, group) else None
            for part in parts(p):
                piece = {"step": step, "exp_avg": state["exp_avg"][part], "exp_avg_sq": state["exp_avg_sq"][part]}
                weight = p[part]
                exact = weight.float() if generator is not None else weight if kept is None else kept[part]
                adamw_update(piece, p.grad[part], exact, group)
                self.store(weight, exact, generator)
            state["step"] = step + 1

        def generator(self, p, state: dict):
            """The generator stochastic rounding draws `p`'s bits from, seeded by p's place and step count (so a
            resumed run rounds the same)."""
            generator = self._generators.get(p.device)
            if generator is None:
                generator = self._generators[p.device] = torch.Generator(p.device)
            return generator.manual_seed(state["step"] * len(self._place) + self._place[p])

        @staticmethod
        def store(p, exact, generator) -> None:
            """Put the updated fp32 `exact` into the weight `p`: rounded stochastically with `generator`, else
            copied (nothing to do where `exact` is the weight itself)."""
            if generator is not None:
                round_into(p, exact, generator)
            elif exact is not p:
                p.copy_(exact)

        def _unspill(self, p, state: dict) -> None:
            """Read p's spilled state back, as HostAdamW would when p trains again."""
            key, state["step"] = self._spilled.pop(p)
            names = self.spill.table()[key]  # master, exp_avg, exp_avg_sq
            back = {name: torch.empty(p.shape, dtype=torch.float32) for name in names}
            for f in self.spill.get(key, back):
                f.result()
            self.spill.discard(key)
            state["exp_avg"], state["exp_avg_sq"] = back["exp_avg"].to(p.device), back["exp_avg_sq"].to(p.device)
            if p.dtype == torch.float32:
                p.copy_(back["master"])  # the host optimizer's master is the weight itself here
            else:
                state["master"] = back["master"].to(p.device)
            if not self._spilled:  # nothing left on disk: free the scratch file now
                self.close()

        def state_dict(self) -> dict:
            """Torch's, plus (like HostAdamW's) under "spilled" where state still on disk lies in the spill file,
            which core.checkpoint copies beside it."""
            saved = super().state_dict()
            if self._spilled:
                table = self.spill.table()
                saved["spilled"] = {key: {"step": step, **table[key]} for key, step in self._spilled.values()}
            return saved

        def load_state_dict(self, state_dict: dict) -> None:
            """Like torch's, but the state keeps its own dtype (fp32), whatever the weight's is. A host optimizer's
            spilled state is adopted from the checkpoint's copy of its file ("spill_file", with "spill_folder" for
            the scratch copy; both set by core.checkpoint) and read back when its parameter trains again."""
            params = [p for g in self.param_groups for p in g["params"]]
            self.state.clear()
            self.close()
            for index, saved in state_dict["state"].items():
                p = params[int(index)]
                self.state[p] = {k: v.to(p.device) if torch.is_tensor(v) else v for k, v in saved.items()}
            spilled = state_dict.get("spilled") or {}
            if spilled:
                from core.offload.spill import StateSpill

                self.spill = StateSpill(state_dict["spill_folder"])
                self.spill.adopt(state_dict["spill_file"], {int(i): {k: v for k, v in entry.items() if k != "step"}
                                                            for i, entry in spilled.items()})
                self._spilled = {params[int(i)]: (int(i), int(entry["step"])) for i, entry in spilled.items()}
            for group, saved in zip(self.param_groups, state_dict["param_groups"]):
                group.update({k: v for k, v in saved.items() if k != "params"})

        def close(self) -> None:
            """Delete the scratch copy of spilled state (end of the run, or nothing left in it)."""
            if self.spill is not None:
                self.spill.close()
            self.spill, self._spilled = None, {}

    return MasterAdamW
