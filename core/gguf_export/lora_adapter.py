"""A run's LoRA adapter as a GGUF file for llama.cpp's `--lora` (and Ollama's ADAPTER).

Layout, as llama.cpp's convert_lora_to_gguf.py writes it: general.type "adapter", adapter.type "lora",
adapter.lora.alpha; for every adapted weight W (by its GGUF name) two tensors, `W.lora_a` = PEFT's A
[rank, in] and `W.lora_b` = PEFT's B [out, rank], and llama.cpp adds (alpha / rank) · B·A to W. So:
- B gets W's row transform (Llama's Q/K order), since B makes W's output rows, and A a column transform (Qwen
  3.5's value heads at out_proj's input), since A reads W's input;
- rank-stabilized LoRA (scale alpha/√rank) is written with alpha·√rank, so that alpha / rank is its scale;
- DoRA cannot be written: its magnitude vectors rescale whole columns, which llama.cpp's LoRA cannot do;
- a weight the architecture writes as several (Architecture.parts: Granite 4.0's input_linear, the gate's rows and
  the up's) gives a pair for each: the whole A, which reads the whole input, and the part's rows of B;
- a mixture of experts' 3-D expert weights (peft's target_parameters, Qwen3 MoE's `experts.gate_up_proj`
  [experts, out, in]) get stacks, as llama.cpp's converter writes them and build_lora_mm_id reads them: `W.lora_a`
  [experts, rank, in] (ggml's ne [in, rank, experts]) and `W.lora_b` [experts, out, rank], llama.cpp adding
  (alpha / rank) · B_e·A_e to expert e. peft keeps one pair per weight, A [rank·experts, in] expert by expert (A_e
  = A[e·rank:(e+1)·rank]) and B [out, rank·experts] rank by rank (B_e = B[:, e::experts]); which weight a pair is
  (peft nests a wrapper per weight: `experts.lora_A`, `experts.base_layer.lora_A`) is told by its shape
  (Architecture.expert_shapes). The fused gate_up splits as any fused weight does (Architecture.parts), B's rows
  of every expert. An architecture without expert_shapes gets no file (`unwritable`); the merged GGUF carries it.
  Where llama.cpp scales an expert's output before it adds the LoRA's (Gemma 4's per-expert scale on
  ffn_down_exps: Architecture.lora_output_scale), each expert's B is scaled by it, so the sum is the model's;
- an adapter on a weight llama.cpp multiplies without LoRA (Architecture.lora_unread: Gemma 4's per-layer
  model projection) gets no file either: llama.cpp would drop that part of the fine-tune without a word.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from core import atomic
from core.errors import BadArgument
from core.gguf_export import reader
from core.offload.layerwise import language_name


def unwritable(result: Path, arch) -> str:
    """Why the adapter in `result` gets no LoRA file though the merged GGUF is written ('' when it gets one): adapters
    on a mixture of experts' 3-D expert weights (peft's target_parameters) where the architecture does not say its
    experts' shapes (Architecture.expert_shapes), by which each of peft's pairs is told apart, or on a weight
    llama.cpp multiplies without LoRA (Architecture.lora_unread)."""
    config = json.loads((result / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("target_parameters") and getattr(arch, "expert_shapes", None) is None:
        return ("the adapter also changes the experts' stacked weights (a mixture of experts), which this LoRA file "
                "writer does not carry yet; the merged GGUF holds the whole fine-tune")
    unread = sorted({m for m in _modules(result) if _unwrapped(m).rpartition(".")[2] in arch.lora_unread})
    if unread:
        return (f"the adapter also changes {_unwrapped(unread[0]).rpartition('.')[2]}, which llama.cpp multiplies "
                "without applying a LoRA file, so the file would leave that part of the fine-tune out; the merged "
                "GGUF holds the whole fine-tune")
    return ""


def missing(report: dict) -> str | None:
    """The sentence for an export of an adapter run that holds no LoRA file, and why (from export.json's `lora`);
    None where the file was written or the run had no adapter."""
    lora = report.get("lora") or {}
    if lora.get("written", True) or lora.get("adapter") is False or not lora.get("why"):
        return None
    return f"No LoRA file: {lora['why']}."


def adapter_tensors(result: Path, arch, cfg: dict,
                    base_tensor) -> tuple[float, list[tuple[str, np.ndarray, np.ndarray]], int]:
    """(alpha to write, [(GGUF weight name, A, B)], rank) from a PEFT adapter folder (`cfg`: the model's config;
    `base_tensor(hf_name)`: one of the model's tensors as float32, for Architecture.lora_output_scale)."""
    cfg = arch.written_config(cfg)
    config = json.loads((result / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora"):
        raise BadArgument("A DoRA adapter cannot be written as a llama.cpp LoRA file (its magnitude vectors have "
                          "no place there); use the merged GGUF.")
    rank, alpha = int(config["r"]), float(config["lora_alpha"])
    if config.get("use_rslora"):
        alpha *= math.sqrt(rank)
    weights = _load(result)
    stacked = {t.rpartition(".")[0].rpartition(".")[2] for t in config.get("target_parameters") or ()}  # "experts"
    pairs, stacks = {}, {}
    for name, array in weights.items():
        base = language_name(name.removeprefix("base_model.model."))  # a vision-language model's: as its LM names it
        for part in (".lora_A.weight", ".lora_B.weight"):
            if base.endswith(part):
                module = base.removesuffix(part)
                if _unwrapped(module).rpartition(".")[2] in stacked:  # one of peft's nested ParamWrappers
                    stacks.setdefault(module, {})[part[6]] = array
                else:
                    pairs.setdefault(module + ".weight", {})[part[6]] = array
                break
        else:
            raise BadArgument(f"The adapter also holds {name}, which a llama.cpp LoRA file cannot carry; use the "
                              "merged GGUF.")
    for module, ab in stacks.items():
        hf_name, a, b = _experts(arch, cfg, _unwrapped(module), ab, rank)
        pairs[hf_name] = {"A": a, "B": b}
    out = []
    for hf_name, ab in sorted(pairs.items(), key=lambda kv: _order(kv[0])):
        for part, rows in arch.parts(hf_name, ab["B"].shape[-2]):  # B's rows are the weight's (each expert's)
            gguf_name = arch.gguf_name(part, cfg)
            if gguf_name is None:
                raise BadArgument(f"The adapter changes {hf_name}, which has no place in a GGUF file; use the merged "
                                  "GGUF.")
            a = ab["A"].astype(np.float32)
            b = ab["B"].astype(np.float32) if rows is None else np.ascontiguousarray(ab["B"][..., rows, :],
                                                                                      dtype=np.float32)
            factor = arch.lora_output_scale(gguf_name, cfg, base_tensor)
            if factor is not None:  # each expert's: [experts, out, rank] · [experts]
                b = b * np.asarray(factor, np.float32)[:, None, None]
            if arch.transforms_columns(gguf_name, cfg):  # W·P = B·(A·P): the columns' order is A's
                out.append((gguf_name, arch.lora_transform(gguf_name, a, cfg), b))
            else:  # P·W = (P·B)·A: the rows' order is B's
                out.append((gguf_name, a, arch.lora_transform(gguf_name, b, cfg)))
    return alpha, out, rank


def write(result: Path, arch, cfg: dict, target: Path, name: str, base_tensor, lineage: tuple = ()) -> Path:
    """Write the adapter of the run result in `result` at `target` (temporary name, then a rename); `base_tensor`
    as for adapter_tensors; `lineage`: (base, dataset, tags) for writer.name_lineage, so the file names the base
    model it goes on."""
    from gguf import GGUFType, GGUFWriter, Keys

    from core.gguf_export.writer import name_lineage

    alpha, tensors, _ = adapter_tensors(result, arch, cfg, base_tensor)
    with atomic.temp_file(target) as tmp:
        w = GGUFWriter(tmp, arch.name)
        try:
            w.add_type(GGUFType.ADAPTER)
            w.add_string(Keys.Adapter.TYPE, "lora")
            w.add_float32(Keys.Adapter.LORA_ALPHA, alpha)
            w.add_name(name)
            if lineage:
                name_lineage(w, *lineage)
            for gguf_name, a, b in tensors:
                w.add_tensor(f"{gguf_name}.lora_a", a)
                w.add_tensor(f"{gguf_name}.lora_b", b)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
        finally:
            w.close()
    return target


def check(path: Path, result: Path, arch, cfg: dict, base_tensor) -> str:
    """Read the file back: every pair present, and (alpha/rank)·B·A equal to PEFT's own update in GGUF
    layout for every adapted weight (for a stack of experts', expert by expert, times the factor llama.cpp leaves
    out of it: Architecture.lora_output_scale). Returns the sentence for the report; raises on a difference."""
    contents = reader.read(path)
    stored = {t.name: reader.tensor_bytes(path, contents, t, 4 * int(np.prod(t.shape))).view(np.float32)
              .reshape(t.shape) for t in contents.tensors}
    alpha = contents.metadata["adapter.lora.alpha"]
    _, tensors, rank = adapter_tensors(result, arch, cfg, base_tensor)
    peft = json.loads((result / "adapter_config.json").read_text(encoding="utf-8"))
    scale = float(peft["lora_alpha"]) / (math.sqrt(rank) if peft.get("use_rslora") else rank)
    for gguf_name, a, b in tensors:
        ours = (alpha / rank) * stored[f"{gguf_name}.lora_b"] @ stored[f"{gguf_name}.lora_a"]
        if not np.allclose(ours, scale * b @ a, rtol=1e-5, atol=1e-7):
            raise ValueError(f"{path.name}: {gguf_name} does not reproduce the adapter's update")
    return f"the LoRA file holds {len(tensors)} adapted weights whose update equals the adapter's"


def _unwrapped(module: str) -> str:
    """A module's name without the `.base_layer` peft nests a ParamWrapper in for each further weight it adapts."""
    while module.endswith(".base_layer"):
        module = module.removesuffix(".base_layer")
    return module


def _experts(arch, cfg: dict, module: str, ab: dict, rank: int) -> tuple[str, np.ndarray, np.ndarray]:
    """(HF name of the 3-D weight, A [experts, rank, in], B [experts, out, rank]) of one of peft's ParamWrapper pairs
    on `module`: A [rank·experts, in] holds expert e's rows at e·rank, B [out, rank·experts] its columns at
    k·experts + e (ParamWrapper.get_delta_weight); the weight is the one whose experts' [out, in] the pair fits."""
    a, b = ab["A"], ab["B"]
    count = a.shape[0] // rank
    shapes = arch.expert_shapes(cfg)
    names = [name for name, (rows, cols) in shapes.items()
             if a.shape == (count * rank, cols) and b.shape == (rows, count * rank)]
    if len(names) != 1:
        raise BadArgument(f"The adapter on {module} (A {tuple(a.shape)}, B {tuple(b.shape)}) matches none of its "
                          "expert weights, so a llama.cpp LoRA file cannot carry it; use the merged GGUF.")
    stack_a = a.reshape(count, rank, a.shape[1])
    stack_b = b.reshape(b.shape[0], rank, count).transpose(2, 0, 1)
    return f"{module}.{names[0]}", np.ascontiguousarray(stack_a), np.ascontiguousarray(stack_b)


def _modules(result: Path) -> set[str]:
    """The modules the adapter in `result` adapts, by PEFT's names (its files' keys, no tensor read)."""
    from safetensors import safe_open

    names = set()
    for f in sorted(result.glob("adapter_model*.safetensors")):
        with safe_open(str(f), "pt") as opened:
            names |= {k.removeprefix("base_model.model.").removesuffix(".lora_A.weight") for k in opened.keys()
                      if k.endswith(".lora_A.weight")}
    return names


def _load(result: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file  # torch reads bf16, numpy cannot

    files = sorted(result.glob("adapter_model*.safetensors"))
    if not files:
        raise BadArgument(f"{result} has no adapter_model.safetensors; the run's adapter cannot be exported.")
    return {name: t.float().numpy() for f in files for name, t in load_file(str(f)).items()}


def _order(hf_name: str) -> tuple:
    """Layer by layer, as a GGUF file lists its tensors."""
    parts = hf_name.split(".")
    layer = next((int(p) for p in parts if p.isdigit()), -1)
    return layer, hf_name
