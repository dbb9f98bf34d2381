"""GaLore: full fine-tuning whose Adam state lives in a low-rank subspace of each weight's gradient.

Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection" (ICML 2024). For a
weight W (m×n) the gradient of one step is G. Every `every` steps the top-`rank` singular vectors of that
step's G become the projector P; between refreshes each step's G is projected (tall W, m ≥ n: R = G·Pᵀ with
P = the first `rank` rows of Vᵀ, r×n; wide W: R = Pᵀ·G with P = the first `rank` columns of U, m×r). Adam
runs on R (its moments are R's size: r·max(m, n) instead of m·n), and its step, projected back (N·P or
P·N) and times `scale`, updates W. Every weight still changes, but the optimizer state of a decoder's
matrices shrinks by about max(m, n)/rank, which is what lets a full fine-tune fit a GPU that full AdamW's 12
bytes of state per weight do not.

What is ours, and why:
- the fp32 master of every 16-bit weight stays (core.optimizers.MasterAdamW, which this subclasses): a bf16
  weight cannot take a fine-tuning-sized update by plain rounding, GaLore's or anyone's. So state is 4 bytes a
  weight plus the low-rank moments, not GaLore's pure-bf16 run's; checkpoints keep it in fp32 like
  MasterAdamW's. With stochastic rounding (core/stochastic_rounding.py) there is no master, as in MasterAdamW.
- which weights project: the 2-D weights of the decoder (attention and MLP matrices). Embeddings and the head
  (vocabulary-sized; GaLore left them to plain Adam too), norms and biases get plain AdamW (the strategy
  makes the groups: core/strategies/full.py).
- a matrix whose smaller side is not larger than `rank` gains nothing from projecting; it takes plain AdamW.
- at a refresh the moments are kept (they then describe the old subspace, as in the paper's algorithm);
  the refresh's SVD is exact (torch.linalg.svd), once per weight every `every` steps.
- a resumed run goes on exactly: the projector is part of the state a checkpoint keeps, and refreshes fall on
  the weight's own step count.

FRUGAL (Zmushko et al., "FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable
Training", ICML 2025) keeps GaLore's subspace and its Adam state, and moves the weight along the rest of the
gradient too, G − back(R), by its sign (signSGD: no state) at the learning rate: the update is full-rank
between refreshes, for no more memory than GaLore's (a group's "residual" turns it on: optimizer=frugal).
"""

from __future__ import annotations

import functools

from core.optimizers import adam_denominator, adam_moments, master_adamw

DEFAULT_RANK = 128
DEFAULT_EVERY = 200
DEFAULT_SCALE = 1.0


def projects(shape: tuple[int, ...], rank: int) -> bool:
    """Whether a weight of this shape (in a projected group) is stepped in a rank-`rank` subspace."""
    return len(shape) == 2 and min(shape) > rank > 0


def state_bytes(shape: tuple[int, int], rank: int) -> int:
    """Bytes of a projected weight's GaLore state besides its master: two fp32 moments of r × max(m, n) and
    the fp32 projector of r × min(m, n) (core.memory_model counts a model's with it)."""
    return 4 * rank * (2 * max(shape) + min(shape))


@functools.cache
def galore_adamw() -> type:
    """The GaLoreAdamW class (made on first use: importing this module does not import torch)."""
    import torch

    class GaLoreAdamW(master_adamw()):
        """MasterAdamW whose groups with a `rank` step their 2-D weights in a low-rank gradient subspace."""

        def __init__(self, params, lr: float, weight_decay: float = 0.0, **kw):
            super().__init__(params, lr=lr, weight_decay=weight_decay, **kw)
            for group in self.param_groups:
                group.setdefault("rank", 0)
                group.setdefault("every", DEFAULT_EVERY)
                group.setdefault("scale", DEFAULT_SCALE)

        def fresh_state(self, p, group: dict, moments: tuple[int, ...] | None = None) -> dict:
            """A projected weight's moments are the subspace's size from the start (m×r tall, r×n wide)."""
            if projects(tuple(p.shape), group["rank"]):
                m, n = p.shape
                moments = (m, group["rank"]) if m >= n else (group["rank"], n)
            return super().fresh_state(p, group, moments)

        def update(self, p, state: dict, group: dict) -> None:
            if not projects(tuple(p.shape), group["rank"]):
                super().update(p, state, group)
                return
            tall = p.shape[0] >= p.shape[1]
            grad = p.grad.float()
            if state["step"] % group["every"] == 0:  # a new subspace from this step's gradient
                state["projector"] = projector(grad, group["rank"], tall)
            low = project(grad, state["projector"], tall)
            free = None  # FRUGAL: what the subspace leaves of the gradient, by its sign (no state)
            if group.get("residual"):
                back = project_back(low, state["projector"], tall)
                free = (grad.sub_(back) if grad is not p.grad else grad - back).sign_()  # (a 16-bit grad's copy: ours)
                del back
            del grad
            adam_moments(state, low, group)
            step = project_back(torch.div(state["exp_avg"], adam_denominator(state, group), out=low),
                                state["projector"], tall)
            generator = self.generator(p, state) if self.rounds(p, group) else None
            master = p.float() if generator is not None else state.get("master", p)
            master.mul_(1 - group["lr"] * group["weight_decay"])
            master.add_(step, alpha=-group["lr"] * group["scale"] / (1 - group["betas"][0] ** state["step"]))
            if free is not None:
                master.add_(free, alpha=-group["lr"])
            self.store(p, master, generator)

    return GaLoreAdamW


def projector(grad, rank: int, tall: bool):
    """The top-`rank` singular vectors of `grad` (fp32) on its smaller side: the first r rows of Vᵀ (r×n) for a
    tall gradient, the first r columns of U (m×r) for a wide one."""
    import torch

    u, _, vh = torch.linalg.svd(grad, full_matrices=False)
    return vh[:rank].contiguous() if tall else u[:, :rank].contiguous()


def project(grad, proj, tall: bool):
    """`grad` in the subspace: m×r (tall) or r×n (wide)."""
    return grad @ proj.T if tall else proj.T @ grad


def project_back(low, proj, tall: bool):
    """A step in the subspace back in the weight's m×n."""
    return low @ proj if tall else proj @ low
