"""The merged safetensors export, one checkpoint shard at a time: the base's shards are read in turn, each LoRA
adapter's product added to the weight it targets, and the shard written out; a whole-model result's shards
are copied the same way. RAM holds one shard, never the model, so a 70B trained with offload exports on the
machine that trained it. `Merged` hands out the same merged tensors one at a time, for the GGUF export.

The arithmetic is peft's `merge_and_unload` in float32: W + (B·A)·scale, with scale = alpha / r (alpha / √r
with rsLoRA), rounded once to the dtype written: by default (`auto`) each weight's own stored dtype, so a bfloat16
base gives a bfloat16 model of the base's size (float32 doubled it: 32 GB for an 8B model), or the one asked for
(float32 is peft's merge exactly). Adapters that need the whole model to merge (DoRA's magnitudes, extra trained
modules, per-layer ranks) are left to peft: `unsupported` says why.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from core import atomic, expert_checkpoint
from core.offload.layerwise import INDEX, Checkpoint, language_name, name_index, stored_name, weight_files

ADAPTER_FILE, ADAPTER_CONFIG = "adapter_model.safetensors", "adapter_config.json"
DTYPES = ("auto", "float32", "bfloat16", "float16")  # what a merged export is written in (`auto`: as stored)
# The share of what the fine-tune changed that a 16-bit merge must keep, else `auto` writes float32: rounding W + ΔW
# to the base's 16-bit grid loses the parts of ΔW smaller than half a step of it. benchmarks/merge_dtype.py: on the
# default model, 91% kept kept 95.7% of the held-out loss gain, 84% kept 98%, 52% kept 78%, 24% kept 48%.
KEEP_BAR = 0.9
SAMPLE_ROWS = 64  # rows of each adapted weight the share is measured on (read alone, not the shard)
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


def write(base: Path, adapter: Path | None, out: Path, progress=None, dtype: str = "auto") -> None:
    """The merged model's shards and config into the folder `out` (which exists), from `base` (the base model's
    folder, or a whole-model result) and `adapter` (a LoRA result) or None, in `dtype` (DTYPES)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    base, out = Path(base), Path(out)
    files = weight_files(base)
    deltas = _deltas(adapter, set(files)) if adapter is not None else {}
    shards = sorted(set(files.values()))
    sizes, written = {}, Counter()  # written: each floating dtype's weights, for the config
    for k, shard in enumerate(shards, 1):
        with safe_open(str(shard), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(shard))
        for name in list(tensors):
            stored = tensors[name].dtype
            tensors[name] = cast(merged(tensors.pop(name), deltas.get(name)), dtype, stored)
            if stored.is_floating_point:
                written[str(tensors[name].dtype).removeprefix("torch.")] += tensors[name].numel()
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
    config["dtype"] = written.most_common(1)[0][0] if written else "float32"  # what the shards now hold
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


def stored_dtype(folder: Path) -> str:
    """The dtype a model folder's config says its weights are stored in (float32 where it names none we write)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "float32"
    found = (config.get("dtype") or config.get("torch_dtype")) if isinstance(config, dict) else None
    return found if found in DTYPES[1:] else "float32"


def kept_share(base: Path, adapter: Path, dtype: str, rows: int | None = SAMPLE_ROWS) -> float | None:
    """How much of the adapter's change to the weights survives rounding the merged weights to `dtype`: the
    rounded change projected on the intended one, over the intended one's square (1: all of it), on the first `rows`
    rows of every adapted weight (None: all of them); None where the adapter changes nothing."""
    import torch
    from safetensors import safe_open

    files = weight_files(Path(base))
    deltas = _deltas(Path(adapter), set(files))
    kept = total = 0.0
    for shard in sorted({files[name] for name in deltas}):  # each shard opened once
        with safe_open(str(shard), framework="pt") as f:
            for name in (n for n in deltas if files[n] == shard):
                a, b, scale = deltas[name]
                w = f.get_slice(name)[:rows].float()
                delta = (b[:len(w)].float() @ a.float()) * scale
                change = (w + delta).to(getattr(torch, dtype)).float() - w
                kept += float((change * delta).sum())
                total += float((delta * delta).sum())
    return kept / total if total > 0 else None


def choose(base: Path, adapter: Path | None, asked: str = "auto") -> tuple[str, str]:
    """(the dtype to write, for `write`; the sentence that says which and why) for merging `adapter` into `base`."""
    stored = stored_dtype(base)
    if asked != "auto":
        return asked, f"Weights in {asked}, as asked."
    if stored == "float32" or adapter is None:
        return "auto", f"Weights in {stored}, as they are stored."
    kept = kept_share(base, adapter, stored)
    if kept is None or kept >= KEEP_BAR:
        return "auto", (f"Weights in {stored}, as the base is stored" + (
            f": rounding to it keeps {kept:.2%} of what the fine-tune changed." if kept is not None else "."))
    return "float32", (f"Weights in float32, twice the base's size: rounding to {stored} would keep {kept:.0%} of "
                       f"what the fine-tune changed (under {KEEP_BAR:.0%}); --dtype {stored} writes it so anyway.")


def cast(tensor, dtype: str, stored):
    """A merged weight (float32) in the dtype written: `auto` the one it was `stored` in; a tensor that is not a
    floating-point weight goes back to its own dtype whatever is asked."""
    import torch

    return tensor.to(stored if dtype == "auto" or not stored.is_floating_point else getattr(torch, dtype))


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
