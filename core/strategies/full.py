"""Full fine-tuning: every weight trains. Best quality, most memory: on a GPU each bf16 weight also
has a bf16 gradient, an fp32 master and two fp32 Adam moments (16 bytes a weight), so it suits
small models or big GPUs; 8-bit AdamW or Adafactor shrink the optimizer's share, and
`optimizer_on_host` moves the masters and moments (12 of the 16 bytes) to RAM, where the CPU
updates them (core.offload.host_adam); the planner turns it on by itself when the GPU is too small.
`optimizer=galore` (core/galore.py) keeps the decoder matrices' moments in a low-rank subspace of their
gradients, on the GPU (about 9-10 bytes a weight at 1-8B sizes, against AdamW's 16), and `optimizer=frugal`
also moves each weight by the sign of the rest of its gradient (FRUGAL: full-rank updates, no more state). The
person's choice: the planner stays with exact AdamW and says where GaLore would fit and be faster.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core import galore, optimizers
from core.errors import DiskFull, KnownError
from core.settings import check, option
from core.strategies import ACTIVATIONS_HELP, Strategy, register

HOST_HELP = ("Keep the fp32 master weights and Adam moments in RAM and update them on the CPU (gradients go to "
             "RAM and weights come back over PCIe; each tensor updates as its gradient arrives, or once backward "
             "ends when gradients are clipped): frees 12 bytes a trained weight on the GPU, costs time each step. "
             "The planner turns it on when the state does not fit.")
ROUNDING_CHECK = ("replaces the fp32 masters of adamw, galore or frugal on the GPU; the host optimizer keeps its "
                  "own in RAM, and 8-bit and factored optimizers keep none.")
ROUNDING_HELP = ("Update the bf16 weights in place by stochastic rounding (core/stochastic_rounding.py) instead "
                 "of through fp32 masters: saves 4 bytes a trained weight on the GPU; each update lands in "
                 "expectation, not exactly. Not with optimizer_on_host (the host keeps its masters in RAM); fp32 "
                 "weights (the CPU) need neither.")
HOST_WHY = ("The optimizer state (fp32 masters and Adam moments, 12 bytes a trained weight) does not fit the GPU "
            "next to the weights, so it lives in RAM and the CPU updates it (--option optimizer_on_host=false "
            "keeps it on the GPU).")


@dataclass(frozen=True)
class FullOptions:
    optimizer: str = option("adamw", help="One of " + optimizers.BASE_HELP + "; the 8-bit ones and Adafactor only "
                            "with fp32 weights (the CPU): they update 16-bit weights in place, where fine-tuning-sized "
                            "updates round away.")
    optimizer_on_host: bool = option(False, help=HOST_HELP)
    activations_on_host: bool = option(False, help=ACTIVATIONS_HELP)
    galore_rank: int = option(galore.DEFAULT_RANK, help="With optimizer=galore or frugal: the subspace's rank; "
                              "a decoder matrix's moments take rank × its longer side instead of its whole size "
                              "(higher: closer to full AdamW, more memory).")
    galore_every: int = option(galore.DEFAULT_EVERY, help="With optimizer=galore or frugal: steps between two "
                               "choices of the subspace (an SVD of each matrix's gradient).")
    galore_scale: float = option(galore.DEFAULT_SCALE, help="With optimizer=galore or frugal: the subspace step's "
                                 "factor (the paper pre-trained with 0.25 at far higher learning rates; 1 keeps the "
                                 "plan's fine-tuning rate as it is).")
    stochastic_rounding: bool = option(False, help=ROUNDING_HELP + " With optimizer adamw, galore or frugal.")

    def __post_init__(self):
        check(self.optimizer in optimizers.NAMES, "optimizer", f"must be one of {', '.join(optimizers.NAMES)}.")
        check(not self.optimizer_on_host or self.optimizer == "adamw", "optimizer_on_host",
              "works with the 'adamw' optimizer only; set optimizer=adamw or turn it off.")
        check(self.galore_rank >= 1, "galore_rank", "must be at least 1.")
        check(self.galore_every >= 1, "galore_every", "must be at least 1.")
        check(self.galore_scale > 0, "galore_scale", "must be above 0.")
        check(not self.stochastic_rounding or (self.optimizer in ("adamw", *optimizers.LOW_RANK)
                                               and not self.optimizer_on_host), "stochastic_rounding", ROUNDING_CHECK)


def load_full_model(base, folder):
    """A saved full model (the whole HF folder), in the base's dtype."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=base.dtype).to(base.device)


def host_variants(variants: list[tuple[dict, str]], options: dict) -> list[tuple[dict, str]]:
    """The planner's variants, each with the optimizer on the GPU and then (where that does not fit) on
    the host; a setting the person gave is kept as given (stochastic rounding asked for keeps it on the GPU: the
    host optimizer keeps fp32 masters of its own)."""
    if "optimizer_on_host" in options or options.get("stochastic_rounding"):
        return variants
    return ([({**v, "optimizer_on_host": False}, why) for v, why in variants]
            + [({**v, "optimizer_on_host": True}, " ".join(filter(None, (why, HOST_WHY)))) for v, why in variants])


def host_optimizer(params: list, live: list, cfg, spill: bool = False, sized: list | None = None):
    """core.offload.host_adam.HostAdamW over `params`; its pinned pool is sized for `live`, the parameters
    that hold state at one time. `spill`: switched-off state goes to a scratch file under the run folder.
    `sized`: `params` as tensors of their real sizes, where some are empty for now (streamed layers)."""
    from core.offload.host_adam import HostAdamW, pool_bytes
    from core.offload.spill import StateSpill

    store = None
    if spill:
        folder = Path(cfg.run_dir) / "offload"
        folder.mkdir(parents=True, exist_ok=True)
        need = pool_bytes(sized or params, 0)  # every layer's state may end up in the file: 12 bytes a weight
        free = shutil.disk_usage(folder).free
        if need > free:
            raise DiskFull(f"{folder}: spilling the optimizer state needs up to {need / 2**30:.1f} GiB there and "
                           f"{free / 2**30:.1f} GiB is free; free some space or turn spill_state off.")
        store = StateSpill(folder)
    return HostAdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm,
                     pool_bytes=pool_bytes(live, params[0].element_size()), spill=store)


def galore_groups(model, params: list, opts) -> list[dict]:
    """The optimizer's groups for GaLore: the decoder's 2-D weights (attention, MLP) projected, the rest
    (embeddings, head, norms, biases) plain AdamW. One learning-rate schedule drives both groups."""
    vocab = {id(m.weight) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    low = [p for p in params if p.dim() == 2 and id(p) not in vocab]
    rest = [p for p in params if p.dim() != 2 or id(p) in vocab]
    groups = [{"params": low, "rank": opts.galore_rank, "every": opts.galore_every, "scale": opts.galore_scale,
               "residual": opts.optimizer == "frugal"}, {"params": rest}]
    return [g for g in groups if g["params"]]


def rounding_problem(opts, precision: str) -> str | None:
    """Stochastic rounding asked for where the weights are fp16: it rounds into bf16 (and the memory model counts
    no masters, which MasterAdamW would keep there)."""
    if precision == "fp16" and opts.stochastic_rounding:
        return ("stochastic_rounding rounds fp32 into bf16, and this GPU trains in fp16 (it has no bf16); leave "
                "it off to keep the fp32 masters.")
    return None


def host_placement(placement: dict, opts) -> dict:
    """`placement` with what these settings move to the host."""
    if getattr(opts, "optimizer_on_host", False):
        placement["optimizer state"] = "RAM + NVMe" if getattr(opts, "spill_state", False) else "RAM"
    return placement


@register
class Full(Strategy):
    name = "full"
    summary = "Every weight trains; for small models or big GPUs."
    Options = FullOptions
    result = "model"
    activations = "full"
    trains_base = True

    def setup_fields(self, opts, device: str) -> dict:
        return {**super().setup_fields(opts, device), "offload": "optimizer" if opts.optimizer_on_host else "",
                "galore_rank": opts.galore_rank if opts.optimizer in optimizers.LOW_RANK else 0,
                "stochastic_rounding": opts.stochastic_rounding}

    def precision_problem(self, opts, precision: str) -> str | None:
        if precision != "fp32" and opts.optimizer in optimizers.IN_PLACE:
            return optimizers.IN_PLACE_WHY.format(precision=precision)
        return rounding_problem(opts, precision)

    def plan_variants(self, options: dict) -> list[tuple[dict, str]]:
        if options.get("optimizer", "adamw") != "adamw":  # 8-bit, factored or GaLore state: small already, GPU only
            return [(options, "")]
        return host_variants([(dict(options), "")], options)

    def trainable_params(self, shape, setup) -> int:
        return shape.params

    def prepare(self, model, opts, cfg):
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def make_optimizer(self, model, opts, cfg, device: str):
        import torch

        if opts.optimizer_on_host:
            params = self.trained_parameters(model)
            return host_optimizer(params, params, cfg)
        precision = {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(next(model.parameters()).dtype, "fp16")
        if problem := self.precision_problem(opts, precision):  # (a run config written by hand)
            raise KnownError(problem)
        if opts.optimizer in optimizers.LOW_RANK:
            return optimizers.build(opts.optimizer, galore_groups(model, self.trained_parameters(model), opts),
                                    cfg.lr, cfg.weight_decay, masters=True, stochastic=opts.stochastic_rounding)
        return optimizers.build(opts.optimizer, self.trained_parameters(model), cfg.lr, cfg.weight_decay,
                                masters=True, stochastic=opts.stochastic_rounding)

    def placement(self, model, opts) -> dict[str, str]:
        return host_placement(super().placement(model, opts), opts)

    def load(self, base, folder):
        return load_full_model(base, folder)
