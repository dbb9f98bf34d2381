"""Training strategies: one file each, registered here (STYLE §9).

A strategy is a subclass of `Strategy` decorated with `@register`. It says:

- its settings: `Options`, a dataclass with help on every field (they travel in a run's config as
  `strategy_options`; `tuneforge strategies` lists them);
- how it uses memory, for core.memory_model: the frozen base's storage, the activation family that
  was measured for it, whether the trained weights are base weights, and how many train;
- how the trainer runs it: `load_model` (the base as it wants it, e.g. 4-bit), `prepare` (exactly the
  trained parameters require grad), `make_optimizer`, and `before_step` (a hook run before every
  optimizer step; LISA switches layers there);
- where each part lives (`placement`: GPU, RAM or NVMe), recorded with the run;
- how its result is kept: `save` writes it in a loadable layout, `load` applies it to a base, and
  `start_from` puts a saved adapter into a new run that goes on from it.

Strategies that are planned but not built are listed with built=False: the planner may name them,
the trainer refuses them with a sentence, and nothing silently runs something else instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

from core import optimizers, settings
from core.errors import BadArgument, KnownError, NotBuiltYet


PARTS = ("frozen weights", "trained weights", "optimizer state", "activations")  # what `placement` reports
ACTIVATIONS_HELP = ("Keep the activations saved for backward in pinned host RAM instead of GPU memory (copied "
                    "back in backward; with gradient checkpointing, each layer's input): saves GPU memory at the cost "
                    "of PCIe traffic each step. The planner turns it on when nothing else fits.")
ACTIVATIONS_WHY = ("What forward saves for backward does not fit the GPU beside the rest, so it waits in pinned RAM "
                   "and comes back layer by layer in backward (--option activations_on_host=false keeps it on the "
                   "GPU).")


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A strategy without settings of its own."""


class Strategy:
    name: ClassVar[str]
    summary: ClassVar[str]  # one line for lists and plans
    Options: ClassVar[type] = NoOptions
    built: ClassVar[bool] = True
    result: ClassVar[str] = "adapter"  # "adapter" (PEFT layout) or "model" (a full HF folder)
    # Settings a run that goes on from this one's weights keeps (train --from): those its saved weights depend on
    # (an adapter's shape and scale); the rest (optimizer, memory placement) the new run's plan chooses afresh.
    kept_going_on: ClassVar[tuple[str, ...]] = ()
    # How it uses memory (core.memory_model):
    base_storage: ClassVar[str] = "compute"  # the frozen base: "compute" (the run's precision) or "nf4"
    activations: ClassVar[str] = "lora"  # family in memory_model.ACTIVATION_COEFFICIENTS
    trains_base: ClassVar[bool] = False  # trained weights are base weights (grads in their dtype, fp32 masters)
    streams_weights: ClassVar[bool] = False  # frozen weights live in RAM/NVMe and stream in per layer
    experts_in_4bit: ClassVar[bool] = False  # a 4-bit base keeps a mixture of experts' frozen experts in 4 bits too

    # --- settings -------------------------------------------------------------------------------------
    def options(self, values: dict | None = None):
        """The Options from a dict (unknown names and bad values fail with the field named)."""
        return settings.from_dict(self.Options, dict(values or {}), source=f"{self.name} settings")

    def accepts(self, values: dict) -> bool:
        """Whether these settings make valid Options (the planner's and re-planner's tries skip those that do not)."""
        try:
            self.options(values)
        except BadArgument:
            return False
        return True

    def optimizer_name(self, opts, device: str) -> str:
        """The optimizer this strategy trains with on `device` (a name in core.optimizers.NAMES)."""
        chosen = getattr(opts, "optimizer", "auto")
        return "adamw" if chosen == "auto" else chosen

    def uses_bitsandbytes(self, opts, device: str) -> bool:
        """Whether a run needs bitsandbytes: a 4-bit base, or one of its 8-bit optimizers. The trainer of a run
        that does not leaves it out (runtime_env.leave_out)."""
        return self.base_storage == "nf4" or self.optimizer_name(opts, device) in optimizers.BITSANDBYTES

    def model_problem(self, shape) -> str | None:
        """A sentence when this strategy cannot train a model of this shape (core.model_shape), else None: the
        planner refuses it when asked for, and lists it as not chosen with the sentence."""
        return None

    def precision_problem(self, opts, precision: str) -> str | None:
        """A sentence when these settings cannot train in `precision` ("bf16", "fp16", "fp32"), else None: the
        planner refuses such a plan, the trainer such a run."""
        return None

    def plan_variants(self, options: dict) -> list[tuple[dict, str]]:
        """Settings for the planner to try, best first, each with the sentence that explains the choice
        (LISA: with the embeddings trained, then without). Settings the person gave are kept as given."""
        return [(options, "")]

    # --- memory (core.memory_model) --------------------------------------------------------------------
    def setup_fields(self, opts, device: str) -> dict:
        """The memory model's Setup fields that depend on this strategy's settings."""
        return {"optimizer": self.optimizer_name(opts, device), "lora_r": getattr(opts, "r", 0),
                "lora_experts": getattr(opts, "experts", True),
                "activations_on_host": getattr(opts, "activations_on_host", False)}

    def trainable_params(self, shape, setup) -> int:
        raise NotImplementedError

    # --- training ------------------------------------------------------------------------------------
    def load_model(self, path: str, dtype, device, opts):
        """The base model on `device`, weights in `dtype`. Loaded straight onto the device (device_map), so
        host RAM never holds the whole model on the way to the GPU."""
        import torch

        from core import causal_lm

        return causal_lm.from_pretrained(str(path), dtype=dtype, device_map={"": torch.device(device)})

    def prepare(self, model, opts, cfg):
        """Return the model with exactly the trained parameters requiring grad."""
        raise NotImplementedError

    def trained_parameters(self, model) -> list:
        """Every parameter that may change during the run: what the optimizer steps and a checkpoint keeps
        (LISA: all layers, though only a few require grad at a time)."""
        return [p for p in model.parameters() if p.requires_grad]

    def make_optimizer(self, model, opts, cfg, device: str):
        return optimizers.build(self.optimizer_name(opts, device), self.trained_parameters(model), cfg.lr,
                                cfg.weight_decay, masters=self.trains_base)

    def before_step(self, step: int, model, optimizer, opts, cfg) -> str | None:
        """Called before optimizer step `step` (0-based), also the first after a resume; may say what it did."""
        return None

    def placement(self, model, opts) -> dict[str, str]:
        """Where each part of the run lives ('GPU', 'RAM', 'NVMe'), for the trainer's start event and the
        run's record: everything on the training device unless a strategy offloads a part."""
        device = next(model.parameters()).device.type
        placement = {part: "GPU" if device == "cuda" else "RAM" for part in PARTS}
        if getattr(opts, "activations_on_host", False):
            placement["activations"] = "RAM"
        return placement

    def weights_on_host(self, model, write: bool = False):
        """A context in which every weight is a real tensor (a streamed layer's are empty while it is away):
        checkpoints and saving run inside it; with `write`, what is written into them there is kept."""
        import contextlib

        return contextlib.nullcontext()

    def start_from(self, model, folder: Path) -> None:
        """Put another run's trained adapter (saved in `folder`) into the prepared model, so this run goes on from
        it. Whole-model strategies never get here: they load such a folder as their base (training.Session)."""
        raise KnownError(f"The {self.name} strategy cannot go on from saved weights; start a new run instead.")

    # --- result --------------------------------------------------------------------------------------
    def save(self, model, folder) -> None:
        model.save_pretrained(str(folder), safe_serialization=True)

    def load(self, base, folder):
        """The base with the saved result applied, ready for inference."""
        raise NotImplementedError


REGISTRY: dict[str, Strategy] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    for f in dataclasses.fields(cls.Options):
        if not f.metadata.get("help"):
            raise TypeError(f"{cls.__name__}.Options.{f.name} needs help text")
    REGISTRY[cls.name] = cls()
    return cls


def get(name: str, need_built: bool = True) -> Strategy:
    if name not in REGISTRY:
        raise BadArgument(f"Unknown strategy '{name}'; choose one of {', '.join(REGISTRY)}.")
    s = REGISTRY[name]
    if need_built and not s.built:
        built = ", ".join(n for n, x in REGISTRY.items() if x.built)
        raise NotBuiltYet(f"The '{name}' strategy is planned but not built yet; use one of {built} for now.")
    return s


def describe_options(name: str) -> list[dict]:
    """Each setting of a strategy: name, default, help, and whether it is for a mixture of experts alone (for
    `tuneforge strategies` and the UI)."""
    s = get(name, need_built=False)
    return [{"name": f.name, "default": f.default, "type": _type_name(f), "help": f.metadata["help"],
             "experts_only": f.metadata.get("experts_only", False)} for f in dataclasses.fields(s.Options)]


def experts_only(name: str) -> set[str]:
    """A strategy's settings that mean something for a mixture of experts alone."""
    return {o["name"] for o in describe_options(name) if o["experts_only"]}


def _type_name(f: dataclasses.Field) -> str:
    """'int', 'bool', ... (annotations are strings under `from __future__ import annotations`)."""
    return f.type if isinstance(f.type, str) else f.type.__name__


def parse_option(strategy: str | None, text: str) -> tuple[str, object]:
    """'NAME=VALUE' from the command line, typed by the strategy's Options field (without a strategy,
    by the first strategy that has such a setting: the planner keeps it only where it applies)."""
    key, sep, raw = text.partition("=")
    names = [strategy] if strategy else list(REGISTRY)
    fields = {}
    for name in reversed(names):
        fields.update({f.name: f for f in dataclasses.fields(get(name, need_built=False).Options)})
    if not sep or key not in fields:
        known = ", ".join(sorted(fields)) or "none"
        raise BadArgument(f"--option {text}: expected NAME=VALUE with a setting of {strategy or 'a strategy'} "
                          f"({known}); `tuneforge strategies` explains each.")
    kind = _type_name(fields[key])
    try:
        if kind == "bool":
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError
            return key, raw.lower() in ("true", "1", "yes", "on")
        return key, {"int": int, "float": float}.get(kind, str)(raw)
    except ValueError:
        wanted = {"bool": "true or false", "int": "a whole number", "float": "a number"}.get(kind, f"a {kind}")
        raise BadArgument(f"--option {text}: {key} takes {wanted}, not '{raw}'.") from None


from core.strategies import lora, qlora, dora, lisa, full, offload  # noqa: E402,F401,I001  (each registers itself; listed in this order)
