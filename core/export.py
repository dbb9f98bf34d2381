"""Export a run: the adapter (PEFT layout), the merged model (safetensors HF folder), or GGUF (core.gguf_export).

Every export is written into a temporary folder beside the target and renamed at the end, so a
failed or cancelled export never leaves half a model where the person looks for one. Each carries a model card
(README.md, core.model_card) written last, from the run's history (`story`), so it lists every file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from core import atomic, merge_stream, model_card, results, strategies
from core.merge_stream import DTYPES
from core.data import reasoning, tool_render
from core.errors import BadArgument
from core.progress import Progress, Span

FORMATS = ("adapter", "safetensors", "gguf")
REPORT = "export.json"  # what the export decided and why (core.gguf_export.exporter writes a GGUF's)


def _report(folder: Path, run: dict, dtype_why: str) -> None:
    """A merged export's export.json: which weights, and the dtype written and why (a GGUF's says much more)."""
    atomic.write_json(folder / REPORT, {"run": run["id"], "format": "safetensors", "dtype_why": dtype_why,
                                        "dtype": merge_stream.stored_dtype(folder)})


def said(folder: Path) -> str:
    """The sentence on a merged export's dtype ('' for other exports)."""
    try:
        return json.loads((Path(folder) / REPORT).read_text(encoding="utf-8")).get("dtype_why", "")
    except (OSError, ValueError, AttributeError):
        return ""


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def export(run: dict, fmt: str, out: str | Path, quant: str | None = None, progress: Progress | None = None,
           nf4_base: bool = False, story: model_card.Story | None = None, dtype: str = "auto") -> Path:
    """Write the run's result at `out` (a new folder). GGUF: `quant` is the tensor type (q4_k_m when
    left out) and `nf4_base` merges a QLoRA adapter into the nf4-rounded base it was trained on. Safetensors:
    `dtype` the merged weights' (core.merge_stream.DTYPES; `auto`: as the weights are stored). `story`: what the
    history holds of the run, for the model card (without it the card tells what the run's row alone holds)."""
    progress = progress or Progress()
    out = Path(out).expanduser()
    if fmt not in FORMATS:
        raise BadArgument(f"Unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    if quant and fmt != "gguf":
        raise BadArgument(f"A quantization type applies to GGUF only; leave it out for a {fmt} export.")
    if fmt == "gguf":
        from core.gguf_export import tensor_types

        tensor_types.pick(quant or tensor_types.DEFAULT)  # a wrong type is refused before anything is loaded
    elif nf4_base:
        raise BadArgument("--qlora-base applies to GGUF export only.")
    if dtype not in DTYPES:
        raise BadArgument(f"Unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}.")
    if dtype != "auto" and fmt != "safetensors":
        raise BadArgument(f"A dtype applies to a merged safetensors export; a {fmt} export "
                          + ("takes its type from --quant." if fmt == "gguf" else "keeps the adapter as trained."))
    result = results.need(run)  # the last step's weights, or those picked by core.results.pick
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise BadArgument(f"{out} already exists; choose a new folder so nothing is overwritten.")
    if fmt == "gguf":
        from core.gguf_export import exporter

        return exporter.export(run, out, quant, progress, nf4_base=nf4_base, story=story)
    strategy = strategies.get(run["strategy"])
    model_path = Path(run["model_path"])
    if fmt == "adapter":
        if strategy.result != "adapter":
            raise BadArgument(f"Run {run['id']} trained every weight ({run['strategy']}), so there is no adapter; "
                              "export merged safetensors instead.")
        with atomic.folder(out, replace=out.exists()) as tmp:
            for f in result.iterdir():
                if f.name != model_card.CARD:  # peft's card template, whose base_model is a path on this machine
                    shutil.copy2(f, tmp / f.name)
            model_card.write(tmp, out.name, run, fmt, story)
        progress.update(1.0, "Adapter exported")
        return out
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    tool_render.for_export(tokenizer, bool((run.get("config") or {}).get("tools")))  # as the run trained them
    reasoning.for_export(tokenizer, bool((run.get("config") or {}).get("thinks")))  # in front of the tools' prelude
    base, adapter = (model_path, result) if strategy.result == "adapter" else (result, None)
    if not merge_stream.unsupported(base, adapter):  # one shard at a time: RAM never holds the model
        dtype, why = merge_stream.choose(base, adapter, dtype)
        with atomic.folder(out, replace=out.exists()) as tmp:
            merge_stream.write(base, adapter, tmp, Span(progress, 0.05, 0.95), dtype)
            tokenizer.save_pretrained(str(tmp))
            _report(tmp, run, why)
            model_card.write(tmp, out.name, run, fmt, story, {"dtype": why})
        progress.update(1.0, "Model exported")
        return out
    from core.inference import trained_model

    progress.update(0.1, "Loading the trained model")
    model = trained_model(model_path, run["strategy"], result, torch.float32)
    progress.update(0.5, "Merging")
    if strategy.result == "adapter":
        model = model.merge_and_unload()
    # peft merged it (DoRA, a mixture of experts' adapters): the share a 16-bit rounding would keep is not measured
    # here, so `auto` keeps float32 for an adapter; a whole-model result stays as it is stored
    written = dtype if dtype != "auto" else "float32" if adapter is not None else merge_stream.stored_dtype(base)
    model = model.to(getattr(torch, written))  # merged in float32, rounded once
    why = (f"Weights in {written}, as asked." if dtype != "auto" else f"Weights in {written}, as stored."
           if adapter is None else "Weights in float32: peft merged this adapter, and how much of it a 16-bit "
           "rounding would keep is not measured for it; --dtype bfloat16 or float16 writes that anyway.")
    progress.update(0.7, "Writing safetensors")
    with atomic.folder(out, replace=out.exists()) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        _report(tmp, run, why)
        model_card.write(tmp, out.name, run, fmt, story, {"dtype": why})
    progress.update(1.0, "Model exported")
    return out
