"""The merged safetensors export, one checkpoint shard at a time: the base's shards are read in turn, each LoRA
adapter's product added to the weight it targets, and the shard written out; a whole-model result's shards
are copied the same way. RAM holds one shard, never the model, so a 70B trained with offload exports on the
machine that trained it. `Merged` hands out the same merged tensors one at a time, for the GGUF export.

The arithmetic is peft's `merge_and_unload` in float32, the precision this export has always written:
W + (B·A)·scale, with scale = alpha / r (alpha / √r with rsLoRA). Adapters that need the whole model to
merge (DoRA's magnitudes, extra trained modules, per-layer ranks) are left to peft: `unsupported` says why.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path

from core import atomic, expert_checkpoint
from core.offload.layerwise import INDEX, Checkpoint, language_name, name_index, stored_name, weight_files

ADAPTER_FILE, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
PREFIX = "base_model.model."  # peft's name for the wrapped model in a saved adapter
EXTRA_FILES = ("generation_config.json",)


def unsupported(base: Path, adapter: Path | None) -> str:
    """Why this result cannot be merged shard by shard ('' when it can)."""
    if weight_files(Path(base)) is None:
        return "the model has no safetensors files"
    if adapter is None:
        return ""
    config = json.loads((Path(adapter) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    if config.get("use_dora"):
        return "DoRA's magnitudes are merged by peft"
    if config.get("target_parameters"):  # a mixture of experts' adapters, one per expert on its 3-D weights
        return "peft merges adapters on parameters (a mixture of experts' experts)"
    for key in ("modules_to_save", "rank_pattern", "alpha_pattern"):
        if config.get(key):
            return f"the adapter has {key}"
    if config.get("bias", "none") != "none" or config.get("fan_in_fan_out"):
        return "the adapter trains biases or stores transposed weights"
    names = _adapter_names(Path(adapter))
    if any(not n.endswith((".lora_A.weight", ".lora_B.weight")) for n in names):
        return "the adapter holds more than LoRA matrices"
    return ""


def write(base: Path, adapter: Path | None, out: Path, progress=None) -> None:
    """The merged model's shards and config into the folder `out` (which exists), from `base` (the base model's
    folder, or a whole-model result) and `adapter` (a LoRA result) or None."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    base, out = Path(base), Path(out)
    files = weight_files(base)
    deltas = _deltas(adapter, set(files)) if adapter is not None else {}
    shards = sorted(set(files.values()))
    sizes = {}
    for k, shard in enumerate(shards, 1):
        with safe_open(str(shard), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(shard))
        for name in list(tensors):
            tensors[name] = merged(tensors.pop(name), deltas.get(name))
        save_file(tensors, str(out / shard.name), metadata={**metadata, "format": "pt"})
        sizes[shard.name] = sum(t.numel() * t.element_size() for t in tensors.values())
        del tensors
        if progress is not None:
            progress.update(k / len(shards), f"Merged shard {k} of {len(shards)}")
    if (base / INDEX).is_file():
        index = json.loads((base / INDEX).read_text(encoding="utf-8"))
        index["metadata"] = {**index.get("metadata", {}), "total_size": sum(sizes.values())}
        atomic.write_json(out / INDEX, index)
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    config.pop("torch_dtype", None)
    config["dtype"] = "float32"  # what the shards now hold
    atomic.write_json(out / "config.json", config)
    for name in EXTRA_FILES:
        if (base / name).is_file():
            shutil.copy2(base / name, out / name)


def merged(weight, delta):
    """One weight in float32 with its adapter's product added; `delta` is (A, B, scale) or None."""
    import torch

    weight = weight.float()
    if delta is not None:
        a, b, scale = delta
        with torch.no_grad():
            weight = weight + (b.float() @ a.float()) * scale  # peft's merge: W += (B·A)·scale
    return weight.contiguous()


class Merged(Mapping):
    """The merged model's tensors by the model's names, each read from its shard and merged when asked for, so a
    consumer that takes one tensor at a time (the GGUF writer, its check) never holds the model. `names` (the
    model's name → the checkpoint's, core.offload.layerwise.model_names) picks the tensors that are the model's
    where the checkpoint holds more (a vision-language checkpoint's tower); every tensor by its own name without."""

    def __init__(self, base: Path, adapter: Path | None, names: dict[str, str] | None = None):
        self.files = weight_files(Path(base))
        self.names = names if names is not None else {name: name for name in self.files}
        self.deltas = _deltas(Path(adapter), set(self.files)) if adapter is not None else {}
        self._checkpoint = Checkpoint(self.files)

    def __getitem__(self, name: str):
        stored = self.names[name]
        return merged(self._checkpoint.get(stored), self.deltas.get(stored))

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor's shape, from the shards' headers (nothing is read)."""
        from safetensors import safe_open

        stored = {}
        for shard in sorted(set(self.files.values())):
            with safe_open(str(shard), framework="pt") as f:
                stored.update({name: tuple(f.get_slice(name).get_shape()) for name in f.keys()})
        index = self._checkpoint.index
        return {name: stored[inside] if inside in stored else
                expert_checkpoint.find(language_name(inside), index).shape(stored)
                for name, inside in self.names.items()}


def _adapter_names(adapter: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(adapter / ADAPTER_FILE), framework="pt") as f:
        return list(f.keys())


def _deltas(adapter: Path, base_names: set[str]) -> dict:
    """The base checkpoint's weight name → (A, B, scale) for every module the adapter trains (the adapter names
    them as the model does: layerwise.stored_name finds them in a vision-language checkpoint)."""
    from safetensors.torch import load_file

    config = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    weights = load_file(str(adapter / ADAPTER_FILE))
    index = name_index(base_names)
    deltas = {}
    for key, a in weights.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removeprefix(PREFIX).removesuffix(".lora_A.weight")
        target = stored_name(f"{module}.weight", base_names, index)
        if target is None:
            raise ValueError(f"{adapter}: the adapter trains {module}, which the base model does not have")
        deltas[target] = (a, weights[key.replace(".lora_A.", ".lora_B.")], scale)
    return deltas
