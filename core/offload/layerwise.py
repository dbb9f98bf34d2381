"""Loading a model for streaming one decoder layer at a time, so host RAM never holds the whole model.

transformers' `from_pretrained` materializes every weight before returning (in RAM, for a model bound
for the weight store), which for a 70B base is more than many machines have: the reason weights go to
NVMe in the first place. Here instead:

1. `skeleton` builds the model on the meta device (no memory), swaps the decoder layers' linear
   modules for bitsandbytes' 4-bit ones when the base is quantized (as transformers' bnb loader does),
   and loads only the weights outside the layers (embeddings, head, final norm) onto the device;
2. `layer_reader` is the WeightStore's `materialize`: it reads layer i's tensors from the safetensors
   files, quantizes them on the training device (as transformers' loader does, with the module's own
   settings) and returns them, and the store packs them into RAM or a file and frees them.

A vision-language checkpoint keeps its language model under a prefix, which transformers renames as it loads (and
back as it saves): `model.language_model.` (Qwen 3.5's, whose causal-LM class loads `model.`) or
`language_model.model.` (Gemma 3's release, in llava's layout, loaded whole as `model.language_model.`).
`stored_name` finds a tensor by any of these names, for everything here that reads a checkpoint by the model's
names (also the merged and GGUF exports, core/merge_stream.py and core/gguf_export/merge.py).

Anything this does not cover (no safetensors, checkpoint names that differ from the module names, or
a module whose meta buffers cannot be rebuilt from the config) returns None from `skeleton` with the
reason, and the caller loads the whole model the ordinary way instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from core import expert_checkpoint

INDEX = "model.safetensors.index.json"
LAYOUTS = (("model.language_model.", "model."), ("language_model.model.", "model."), ("language_model.", ""))


def weight_files(path: Path) -> dict[str, Path] | None:
    """Checkpoint name → the safetensors file that holds it; None without safetensors."""
    if (path / INDEX).is_file():
        index = json.loads((path / INDEX).read_text(encoding="utf-8"))["weight_map"]
        return {name: path / file for name, file in index.items()}
    if (path / "model.safetensors").is_file():
        from safetensors import safe_open

        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            return {name: path / "model.safetensors" for name in f.keys()}
    return None


def language_name(name: str) -> str:
    """A tensor's name as the language model's own causal-LM class names it (`model.layers.0...`, `lm_head.weight`):
    a vision-language layout's prefix (LAYOUTS) taken off; other names as they are."""
    for prefix, plain in LAYOUTS:
        if name.startswith(prefix):
            return plain + name.removeprefix(prefix)
    return name


def name_index(files) -> dict[str, str]:
    """language_name → the checkpoint's name, for every tensor of a checkpoint."""
    return {language_name(name): name for name in files}


def stored_name(name: str, files, index: dict | None = None) -> str | None:
    """The checkpoint's name for the model's tensor `name`: the same, or the same language_name (`index`, name_index
    of `files`, where a caller asks for many); None where it has none."""
    if name in files:
        return name
    index = index if index is not None else name_index(files)
    found = index.get(language_name(name))
    bare = name.removeprefix("model.")  # a tower or projector in llava's layout: `vision_tower.`, loaded as model.
    if found is None and bare in files:
        return bare
    other = expert_checkpoint.renamed(language_name(name))  # Mixtral's router, in its checkpoints' MoE block
    return found if found is not None or other is None else index.get(other)


class Checkpoint:
    """Reads tensors by the model's names from a model folder's safetensors files, keeping them open; a mixture of
    experts' 3-D expert weights as transformers makes them where the checkpoint keeps them otherwise (a tensor per
    expert, MXFP4: core/expert_checkpoint.py)."""

    def __init__(self, files: dict[str, Path]):
        self.files, self._open, self.index = files, {}, name_index(files)

    def get(self, name: str):
        stored = stored_name(name, self.files, self.index)
        if stored is None:
            kept = expert_checkpoint.find(language_name(name), self.index)
            if kept is None:
                raise KeyError(f"{name} is not in the checkpoint")
            return kept.read(self._stored)
        return self._stored(stored)

    def _stored(self, stored: str):
        from safetensors import safe_open

        file = self.files[stored]
        if file not in self._open:
            self._open[file] = safe_open(str(file), framework="pt", device="cpu")
        return self._open[file].get_tensor(stored)


def model_names(model, files: dict, stacked: bool = False) -> dict[str, str]:
    """The model's name → the checkpoint's, for every tensor of the model's state the checkpoint holds (`model`
    may be on the meta device); the checkpoint's others (a vision tower the causal LM does not load) are left out.
    `stacked`: an expert weight the checkpoint keeps otherwise (a tensor per expert, MXFP4) maps to the model's own
    name, which a Checkpoint reads as transformers would load it (core/expert_checkpoint.py)."""
    index = name_index(files)
    names = {}
    for name in model.state_dict():
        stored = stored_name(name, files, index)
        if stored is None and stacked and expert_checkpoint.find(language_name(name), index):
            stored = name
        if stored is not None:
            names[name] = stored
    return names


def names_differ(model, files: dict, stacked: bool = False) -> str:
    """Why the checkpoint's tensor names do not cover the model's parameters ('' when they do); `model` may be
    on the meta device. A tied output head is stored once, under the embedding's name. `stacked`: expert weights
    the checkpoint keeps otherwise (core/expert_checkpoint.py) count as there (a Checkpoint reads them)."""
    names = {n for n, p in model.named_parameters(remove_duplicate=False)}
    head = next(n for n, m in model.named_modules() if m is model.get_output_embeddings())
    tied = getattr(model.config, "tie_word_embeddings", False)
    index = name_index(files)

    def absent(n: str) -> bool:
        return stored_name(n, files, index) is None and not (stacked and expert_checkpoint.find(language_name(n),
                                                                                                index))

    missing = sorted(n for n in names - ({f"{head}.weight"} if tied else set()) if absent(n))
    return f"the checkpoint's names differ from the model's ({missing[0]} is not in it)" if missing else ""


def skeleton(path, dtype, device, opts, layers_of) -> tuple[object | None, str]:
    """(model with empty decoder layers and everything else loaded, "") or (None, why not)."""
    import torch
    from transformers import AutoConfig

    from core import causal_lm

    path = Path(path)
    files = weight_files(path)
    if files is None:
        return None, "the model folder has no safetensors files"
    config = AutoConfig.from_pretrained(str(path))
    with torch.device("meta"):
        model = causal_lm.from_config(config, dtype=dtype)
    layers = layers_of(model)
    tied = getattr(config, "tie_word_embeddings", False)
    why = names_differ(model, files, stacked=True)
    if why:
        return None, why
    if opts.quantize:
        four_bit_modules(layers, dtype, opts.quant_type, opts.double_quant)
        model.is_loaded_in_4bit = True  # peft wraps bitsandbytes modules with its 4-bit LoRA layer by this
    in_layers = {id(p) for p in layers.parameters()}
    ckpt = Checkpoint(files)
    with torch.no_grad():
        for name, p in list(model.named_parameters()):
            if id(p) not in in_layers:
                module_name, _, attr = name.rpartition(".")
                value = torch.nn.Parameter(ckpt.get(name).to(device=device, dtype=dtype), requires_grad=False)
                setattr(model.get_submodule(module_name), attr, value)
        if tied:
            model.get_output_embeddings().weight = model.get_input_embeddings().weight
        for module in model.modules():  # rotary frequencies and the like: computed from the config, not saved
            meta = [n for n, b in module.named_buffers(recurse=False) if b.is_meta]
            if meta:
                if any(module is m for m in layers.modules()):
                    return None, f"{type(module).__name__} inside a decoder layer has buffers not in the checkpoint"
                try:
                    fresh = type(module)(config)
                except Exception:  # a constructor that wants more than the config: the ordinary load will do
                    return None, f"{type(module).__name__}'s buffers cannot be rebuilt from the config"
                for n in meta:
                    module._buffers[n] = fresh._buffers[n].to(device)
    model.tuneforge_checkpoint = ckpt
    return model, ""


def resident(path, dtype, device, settings, layers_of) -> tuple[object | None, str]:
    """(the whole model on `device`, "") read one decoder layer at a time, each quantized as `settings` say, so no
    more than a layer is ever in 16 bits; or (None, why not) as `skeleton`."""
    model, why = skeleton(path, dtype, device, settings, layers_of)
    if model is None:
        return None, why
    layers = layers_of(model)
    read = layer_reader(model, layers, device, dtype, settings)
    for i, layer in enumerate(layers):
        read(i)
        layer.to(device)
    del model.tuneforge_checkpoint
    return model, ""


# Linear layers a 4-bit base keeps in 16 bits: Gated DeltaNet's (Qwen 3.5) decay and beta projections give one number
# per value head (16 to 64): 4 bits would save a few kB a layer, and bitsandbytes' CPU kernel packs outputs by 32
# and refuses fewer ("N must be divisible by block_n", at the first validation of a QLoRA run).
# And Gemma 4's router, the one linear router (the others are weights of a router module): it picks each token's
# experts, which 4-bit rounding could change, and llama.cpp keeps routers in float32 too. Names end a module's path,
# as transformers' llm_int8_skip_modules matches them.
UNQUANTIZED = ("in_proj_a", "in_proj_b", "router.proj")


def four_bit_modules(layers, dtype, quant_type: str, double_quant: bool) -> None:
    """The layers' linear modules as bitsandbytes 4-bit ones, on the meta device (weights come per layer), but for
    UNQUANTIZED."""
    import bitsandbytes as bnb
    import torch

    for path, parent in list(layers.named_modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and not f"{path}.{name}".endswith(UNQUANTIZED):
                new = bnb.nn.Linear4bit(child.in_features, child.out_features, child.bias is not None, dtype,
                                        compress_statistics=double_quant, quant_type=quant_type, device="meta")
                new.source_cls = type(child)
                new.requires_grad_(False)
                setattr(parent, name, new)


def layer_reader(model, layers, device, dtype, settings=None):
    """materialize(i) for the WeightStore: layer i's frozen parameters read (and quantized) from the checkpoint;
    a mixture of experts' experts in 4 bits too where `settings.experts_4bit` (core/four_bit_experts.py)."""
    import torch

    from core import four_bit_experts

    ckpt = model.tuneforge_checkpoint
    prefix = {id(layer): name for name, layer in model.named_modules() if any(layer is x for x in layers)}

    def materialize(i: int) -> list:
        import bitsandbytes as bnb

        layer = layers[i]
        with torch.no_grad():
            for module_name, module in layer.named_modules():
                for attr, p in list(module.named_parameters(recurse=False)):
                    name = ".".join(x for x in (prefix[id(layer)], module_name, attr) if x)
                    value = ckpt.get(name).to(dtype=dtype)
                    if isinstance(p, bnb.nn.Params4bit):
                        # as transformers' loader does: the module's own 4-bit settings, quantized on the device
                        value = bnb.nn.Params4bit(value.to(device), requires_grad=False, **p.__dict__).to(device)
                    else:
                        value = torch.nn.Parameter(value, requires_grad=False)
                    setattr(module, attr, value)
        if settings is not None and settings.experts_4bit:
            four_bit_experts.quantize_experts(layer, device, settings.quant_type, settings.double_quant)
        return [p for p in layer.parameters() if not p.requires_grad]

    return materialize


def expected_bytes(layers, quantize: bool, experts_4bit: bool = False) -> int:
    """What the layers' frozen weights will take once loaded: 4-bit linear weights (and experts, where
    `experts_4bit`) pack two to a byte."""
    total = 0
    for module in layers.modules():
        for p in module.parameters(recurse=False):
            packed = quantize and type(p).__name__ == "Params4bit" or experts_4bit and p.dim() == 3
            total += (p.numel() + 1) // 2 if packed else p.numel() * p.element_size()
    return total
