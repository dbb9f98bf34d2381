"""A run's result as one plain model: the adapter merged into the base weights (or the saved model itself).

The merge runs in the base's own precision (float32 for the default model, bf16 for most downloaded
ones): the weights are written at 16 bits or fewer anyway, and a 7B model merged in float32 would need
28 GB of RAM. A QLoRA run trained its adapter against the nf4-rounded base; by default it is merged into
the full-precision base (the better model, and what other tools do), and `nf4_base=True` merges it into
the base as training saw it (dequantized from the same nf4 codes), so the export answers exactly as
the run did during training.
"""

from __future__ import annotations

import json
from pathlib import Path

from core import strategies
from core.errors import KnownError


def stored_dtype(model_path: str | Path):
    """The precision the base's weights are stored in (config.json), float32 when it does not say."""
    import torch

    cfg = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    name = str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32").replace("torch.", "")
    return getattr(torch, name, torch.float32) if name in ("float32", "float16", "bfloat16") else torch.float32


def merged_model(run: dict, nf4_base: bool = False):
    """(model, reason): the run's trained model with any adapter merged in, on the CPU, in eval mode."""
    from core.inference import trained_model

    result = Path(run["run_dir"]) / "result"
    if not result.is_dir():
        raise KnownError(f"Run {run['id']} has no result yet ({run['status']}); let it finish or stop it first.")
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
    """Replace each adapted layer's base weight with its nf4 round trip (bitsandbytes, the run's settings)."""
    import torch
    from bitsandbytes import functional as bnb

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
