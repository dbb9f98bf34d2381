"""A run's result as one plain model: the adapter merged into the base weights (or the saved model itself).

`source` is what the GGUF export reads. Where it can, it merges one tensor at a time from the checkpoint's
shards in float32 (core.merge_stream), so exporting a model larger than RAM works; otherwise (DoRA, an
nf4-rounded base, checkpoint names that differ from the model's) peft merges the whole model in RAM:

The whole-model merge runs in the base's own precision (float32 for the default model, bf16 for most downloaded
ones): the weights are written at 16 bits or fewer anyway, and a 7B model merged in float32 would need
28 GB of RAM. A QLoRA run trained its adapter against the nf4-rounded base; by default it is merged into
the full-precision base (the better model, and what other tools do), and `nf4_base=True` merges it into
the base as training saw it (dequantized from the same nf4 codes), so the export answers exactly as
the run did during training.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core import expert_checkpoint, results, strategies
from core.gguf_export.architectures import SKIPPED
from core.offload.layerwise import language_name, name_index


@dataclass
class Source:
    """The merged model as the GGUF writer and its check take it: tensors by HF name, one at a time."""
    tensors: Mapping  # HF name → tensor (a state dict, or merge_stream.Merged reading shard by shard)
    shapes: dict  # HF name → shape
    cfg: dict  # the model's config.to_dict(), with transformers' defaults filled in
    reason: str  # how it was merged, for export.json
    params: int  # parameters, for the memory that comparing answers needs
    held: int  # bytes of the merged model already in RAM (0 when read shard by shard)
    model: Callable[[], object]  # the merged model in eval mode, loaded when first asked for (to compare answers)


def source(run: dict, nf4_base: bool = False) -> Source:
    """The run's merged model: read and merged a tensor at a time from the checkpoint's shards where that
    gives what peft's merge gives (RAM never holds the model, so a 70B trained with offload exports on the
    machine that trained it), else merged whole in RAM by peft, with the reason."""
    result = results.need(run)
    base, adapter = _folders(run, result)
    model = None if nf4_base else _meta_model(base)
    why = ("merging into the nf4-rounded base needs the whole model" if nf4_base
           else _not_by_shards(model, base, adapter))
    if why:
        model, reason = merged_model(run, nf4_base)
        state, cfg = language_model(model.state_dict(), model.config)
        held = sum(p.numel() * p.element_size() for p in model.parameters())
        language = as_language_model(model)
        return Source(state, {k: tuple(v.shape) for k, v in state.items()}, cfg,
                      f"{reason} ({why}, so peft merged the whole model)", sum(p.numel() for p in model.parameters()),
                      held, lambda: language)
    from core.merge_stream import Merged
    from core.offload.layerwise import model_names, weight_files

    files = weight_files(base)
    names = model_names(model, files, stacked=True)
    tensors = Merged(base, adapter, names)
    shapes = tensors.shapes()
    loaded = []

    def reference():  # in float32, as the shards were merged, so the exact types compare bit for bit
        import torch

        from core.inference import trained_model

        if not loaded:
            model = trained_model(run["model_path"], run["strategy"], result, torch.float32)
            loaded.append(as_language_model(model.merge_and_unload() if adapter is not None else model).eval())
        return loaded[0]

    what = "the adapter merged into each weight" if adapter is not None else "the run's saved weights"
    others = len(set(files) - _read(names, files) - {n for n in files if n.endswith(SKIPPED)})
    left_out = (f"; the checkpoint's {others} tensors outside the language model (a vision tower, a draft block for "
                "speculative decoding) are left out of it, a vision tower written to the projector file beside it "
                "(mmproj-*.gguf) where its type is one we write") if others else ""
    return Source(tensors, shapes, model.config.to_dict(),
                  f"{what} in float32, one tensor at a time from the checkpoint's shards{left_out}",
                  sum(math.prod(s) for s in shapes.values()), 0, reference)


def _folders(run: dict, result: Path) -> tuple[Path, Path | None]:
    """(the folder whose shards hold the weights, the adapter folder or None)."""
    if strategies.get(run["strategy"]).result == "adapter":
        return Path(run["model_path"]), result
    return result, None


def _meta_model(base: Path):
    """The causal LM the base's config makes, on the meta device (nothing allocated): its names and config are what
    the GGUF export writes. A vision-language model that transformers loads whole (Gemma 3 from 4B: its causal-LM
    class is the whole model) gives its language model's: GGUF holds the language model, and llama.cpp keeps a
    vision tower in a projector file of its own."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from core import causal_lm

    config = AutoConfig.from_pretrained(str(base))
    with torch.device("meta"):
        model = causal_lm.from_config(config)
        if any(language_name(name) != name for name, _ in model.named_parameters()):
            model = AutoModelForCausalLM.from_config(config.get_text_config())
    return model


def as_language_model(model):
    """A vision-language model's language model as a causal LM of its own, made of the same modules (what the GGUF's
    answers are compared with); any other model as it is."""
    import torch
    from transformers import AutoModelForCausalLM

    decoder = getattr(getattr(model, "model", None), "language_model", None)
    if decoder is None:
        return model
    with torch.device("meta"):
        language = AutoModelForCausalLM.from_config(model.config.get_text_config())
    language.model, language.lm_head = decoder, model.lm_head
    return language.eval()


def language_model(state: dict, config) -> tuple[dict, dict]:
    """(tensors, config) of the language model in a whole model's state: a vision-language model's `model.
    language_model.*` renamed as its causal LM names them, its tower left out; any other's as they are."""
    if all(language_name(name) == name for name in state):
        return state, config.to_dict()
    kept = {language_name(name): value for name, value in state.items()
            if language_name(name) != name or not name.startswith("model.")}  # the language model and the head
    return kept, config.get_text_config().to_dict()


def _not_by_shards(model, base: Path, adapter: Path | None) -> str:
    """Why the shards cannot be merged one tensor at a time ('' when they can). A checkpoint that keeps the language
    model under a prefix (layerwise.LAYOUTS) may hold other parts beside it (left out); one that does not may hold
    nothing the model lacks (it would be lost without a word)."""
    from core import merge_stream
    from core.offload.layerwise import model_names, names_differ, weight_files

    why = merge_stream.unsupported(base, adapter)
    if why:
        return why
    files = weight_files(base)
    stored = _read(model_names(model, files, stacked=True), files)
    nested = any(language_name(name) != name for name in stored)
    extra = sorted(n for n in set(files) - stored
                   if not n.endswith(SKIPPED) and (not nested or language_name(n) != n))
    differ = names_differ(model, files, stacked=True)
    return differ or (f"the checkpoint holds {extra[0]}, which the model does not" if extra else "")


def _read(names: dict[str, str], files) -> set[str]:
    """The checkpoint's tensors that `names` (model_names, stacked) reads: a mixture of experts' expert weights
    stacked from a tensor per expert and projection as released (core/expert_checkpoint.py) read each of those."""
    index = name_index(files)
    kept = [expert_checkpoint.find(language_name(n), index) for n, stored in names.items() if stored not in files]
    return {stored for stored in names.values() if stored in files} | {name for k in kept for name in k.sources}


def stored_dtype(model_path: str | Path):
    """The precision the base's weights are stored in (config.json), float32 when it does not say."""
    import torch

    cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").replace("torch.", "")
    return getattr(torch, name, torch.float32) if name in ("float32", "float16", "bfloat16") else torch.float32


def merged_model(run: dict, nf4_base: bool = False):
    """(model, reason): the run's trained model with any adapter merged in, on the CPU, in eval mode."""
    from core.inference import trained_model

    result = results.need(run)
    strategy = strategies.get(run["strategy"])
    dtype = stored_dtype(run["model_path"])
    model = trained_model(run["model_path"], run["strategy"], result, dtype)
    reason = f"merged in {str(dtype).replace('torch.', '')}, the precision the base is stored in"
    if nf4_base:
        _round_base_to_nf4(model, run)
        reason += ", into the base rounded to nf4 as QLoRA training saw it"
    if strategy.result == "adapter":
        model = model.merge_and_unload()
    else:
        reason = f"the run saved the whole model ({run['strategy']}), so there was nothing to merge"
    return model.eval(), reason


def _round_base_to_nf4(peft_model, run: dict) -> None:
    """Replace each adapted layer's base weight with its nf4 round trip (bitsandbytes, the run's settings), and a
    mixture of experts' experts too where the run kept them frozen in 4 bits (core/four_bit_experts.py)."""
    import torch
    from bitsandbytes import functional as bnb

    from core import four_bit_experts
    from core.run_config import load as load_run_config

    config_file = Path(run["run_dir"]) / "run.json"
    values = load_run_config(config_file).strategy_options if config_file.is_file() else {}
    opts = strategies.get("qlora").options(values)
    with torch.no_grad():
        for module in peft_model.modules():
            base = getattr(module, "base_layer", None)
            if base is None or not hasattr(base, "weight"):
                continue
            w = base.weight
            codes, state = bnb.quantize_4bit(w.data.float(), quant_type=opts.quant_type,
                                             compress_statistics=opts.double_quant)
            w.data.copy_(bnb.dequantize_4bit(codes, state).to(w.dtype))
        if opts.experts is False:
            for experts in four_bit_experts.experts_modules(peft_model):
                for name in four_bit_experts.WEIGHTS:
                    param = getattr(experts, name, None)
                    if isinstance(param, torch.nn.Parameter) and param.dim() == 3:
                        param.data.copy_(four_bit_experts.rounded(param.data, getattr(experts, "is_transposed", False),
                                                                  opts.quant_type, opts.double_quant))
