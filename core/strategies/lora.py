"""LoRA through peft: low-rank adapters on the attention and MLP projections; the base stays frozen.

Why attention and MLP both: adapting every linear layer of a block is what QLoRA found to match
full fine-tuning, where attention-only LoRA falls short. The module names differ by architecture,
so they come from a table; an architecture not in it gets peft's "all-linear" (every linear layer
but the output head).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import KnownError
from core.settings import check, option
from core.strategies import ACTIVATIONS_HELP, Strategy, register

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]
TARGETS = {  # model_type → the projections adapters go on
    **{t: ATTENTION + MLP for t in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2",
                                    "gemma3_text", "smollm3", "olmo2", "olmo3", "granite")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],  # fused projections
}


@dataclass(frozen=True)
class LoraOptions:
    r: int = option(16, help="Rank: width of the low-rank adapters (more = more capacity, more memory).")
    alpha: int = option(32, help="Scale numerator: adapters are scaled by alpha / r (alpha / √r with rslora).")
    dropout: float = option(0.0, help="Dropout on the adapters' input; 0.05–0.1 helps on small datasets.")
    rslora: bool = option(False, help="Rank-stabilized LoRA: scale by alpha / √r, so high ranks learn as fast "
                                      "as low ones.")
    targets: str = option("auto", help="'auto' (attention and MLP projections of the architecture), or module "
                                       "names separated by commas, e.g. 'q_proj,v_proj'.")
    activations_on_host: bool = option(False, help=ACTIVATIONS_HELP)
    experts: bool = option(True, help="A mixture of experts: adapters on every expert too (with 'auto' targets); off, "
                                      "on its attention and other linear layers alone, a few percent of the weights "
                                      "to train. The planner turns it off where the experts' adapters do not fit.",
                           experts_only=True)

    def __post_init__(self):
        check(self.r >= 1, "r", "must be at least 1.")
        check(self.alpha > 0, "alpha", "must be above 0.")
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1).")
        check(bool(self.targets.strip()), "targets", "name at least one module, or use 'auto'.")


def targets_for(model, targets: str, experts: bool = True) -> dict:
    """peft's target_modules (and target_parameters) as LoraConfig takes them. 'auto': the table's projections, or
    every linear layer but the head; in a vision-language model that loads whole (Gemma 3 from 4B, Gemma 4), those of
    its language model's layers alone (a pattern peft matches whole names against): the data is text, so adapters on
    the vision tower would never learn, and no GGUF file has a place for them. So too a text model with linear layers
    outside its decoder layers besides the head (a text-only Gemma 4's per-layer model projection, which llama.cpp
    multiplies without LoRA: an adapter there cost the run its LoRA file).

    A mixture of experts (transformers keeps each layer's experts as 3-D weights, `experts.gate_up_proj`
    [experts, out, in]) gets adapters on every linear layer of its decoder layers and on each expert (peft's
    target_parameters: a rank-r pair per expert), its router left frozen: the router decides which experts see which
    tokens, and a few thousand rows of new data are no reason to rebalance what pretraining spread over 128 experts.
    The layers are named in full, so peft's translation of older checkpoints' names (`gate_proj` → the fused experts,
    at twice the rank) cannot add anything we did not count (`lora_size`). `experts` False leaves the experts frozen
    too (the option of that name: the planner's way to fit a small GPU)."""
    if targets != "auto":
        return {"target_modules": [t.strip() for t in targets.split(",") if t.strip()]}
    adapt_experts = experts
    experts = sorted({".".join(name.split(".")[-2:]) for name, _ in expert_weights(model)})
    layers = layer_prefix(model)
    if experts:
        inside = sorted({_in_layer(name, layers) for name in _linears(model)
                         if re.match(layers, name) and "router" not in name.split(".")})  # Gemma 4's is linear
        modules = layers + f"({'|'.join(map(re.escape, inside))})" if inside else []
        return {"target_modules": modules, **({"target_parameters": experts} if adapt_experts else {})}
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    names = TARGETS.get(getattr(config, "model_type", ""))
    if "language_model" not in layers and (names or not _outside_layers(model, layers)):
        return {"target_modules": names or "all-linear"}
    names = names or sorted({name.rsplit(".", 1)[-1] for name in _linears(model) if re.match(layers, name)})
    return {"target_modules": layers + rf"(.*\.)?({'|'.join(names)})"}  # (Gemma 4's per-layer gate sits in the layer)


def lora_size(model, r: int, experts: bool = True) -> int:
    """The weights LoRA of rank r adds to `model` (meta tensors will do) with the 'auto' targets: r × (in + out) for
    each linear layer targeted, r × experts × (in + out) for each expert weight (none with `experts` False)."""
    chosen = targets_for(model, "auto", experts)
    modules = chosen["target_modules"]
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    total = 0
    linears = set(_linears(model))
    for name, module in model.named_modules():
        if name not in linears:
            continue
        if modules == "all-linear":
            hit = module is not head
        elif isinstance(modules, str):
            hit = re.fullmatch(modules, name) is not None
        else:
            hit = name.rsplit(".", 1)[-1] in modules
        total += r * (module.in_features + module.out_features) if hit else 0
    wanted = chosen.get("target_parameters") or ()
    for name, shape in expert_weights(model):
        total += r * shape[0] * (shape[1] + shape[2]) if ".".join(name.split(".")[-2:]) in wanted else 0
    return total


def _linears(model) -> list[str]:
    """The linear layers' names: torch's, and those standing in for them (bitsandbytes' 4-bit ones subclass it)."""
    import torch

    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def expert_weights(model) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of a mixture of experts' 3-D expert weights (none for a dense model), also those QLoRA keeps in
    4 bits (core/four_bit_experts.py's FourBitStack, which only frozen experts are)."""
    stacks = [(name, m.shape) for name, m in model.named_modules() if type(m).__name__ == "FourBitStack"]
    return [(name, tuple(p.shape)) for name, p in model.named_parameters() if p.dim() == 3 and ".experts." in name
            ] + stacks


def _outside_layers(model, layers: str) -> list[str]:
    """The linear layers outside the decoder layers but the head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name in _linears(model) if not re.match(layers, name) and model.get_submodule(name) is not head]


def layer_prefix(model) -> str:
    """The pattern of the decoder layers' names: the language model's where a whole vision-language model loads."""
    inside = any(".language_model.layers." in name for name in _linears(model))
    return r".*\.language_model\.layers\.\d+\." if inside else r"(.*\.)?layers\.\d+\."


def _in_layer(name: str, layers: str) -> str:
    """A module's name within its decoder layer ("self_attn.q_proj")."""
    return name[re.match(layers, name).end():]


FROZEN_EXPERTS = ("The experts stay frozen: adapters on each of them (with their gradients and optimizer state, far "
                  "more than the model's other layers need) would not fit, or only with the weights read from the "
                  "disk every step, so the attention and other linear layers are adapted alone (experts=false).")


@register
class Lora(Strategy):
    name = "lora"
    summary = "Low-rank adapters on every linear layer; the base stays frozen."
    Options = LoraOptions
    use_dora = False
    kept_going_on = ("r", "alpha", "rslora", "targets", "experts")

    def trainable_params(self, shape, setup) -> int:
        return shape.lora_params(setup.lora_r, setup.lora_experts)

    def plan_variants(self, options: dict) -> list[tuple[dict, str]]:
        """Adapters on every expert of a mixture of experts, then (where those do not fit) on the rest alone; a
        dense model's second variant is its first, so it never fits where the first did not."""
        if "experts" in options:
            return [(dict(options), "")]
        return [({**options, "experts": True}, ""),
                ({**options, "experts": False}, FROZEN_EXPERTS)]

    def prepare(self, model, opts, cfg):
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, use_rslora=opts.rslora,
                            task_type="CAUSAL_LM", use_dora=self.use_dora,
                            **targets_for(model, opts.targets, opts.experts))
        return get_peft_model(model, config)

    def load(self, base, folder):
        from peft import PeftModel

        return PeftModel.from_pretrained(base, str(folder), is_trainable=False)

    def start_from(self, model, folder: Path) -> None:
        """The saved adapter's weights into this run's freshly made one (same rank and targets: the run takes
        its settings from the run it continues), replacing the random start."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        path = Path(folder) / "adapter_model.safetensors"
        if not path.is_file():
            raise KnownError(f"{folder}: no adapter_model.safetensors to start from; the run it continues used "
                             "another strategy, so continue it with that one.")
        try:
            loaded = set_peft_model_state_dict(model, load_file(str(path)))
        except RuntimeError as e:  # a tensor of another shape: another rank, or other target modules
            raise KnownError(f"{path}: the adapter does not fit this run's ({str(e).splitlines()[0][:160]}); "
                             "keep the settings (r, targets) of the run it continues.") from None
        if loaded.unexpected_keys:
            raise KnownError(f"{path}: the adapter holds {loaded.unexpected_keys[0]}, which this run's adapter lacks; "
                             "keep the settings (r, targets, DoRA) of the run it continues.")
