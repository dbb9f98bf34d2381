"""Export a run: the adapter (PEFT layout), the merged model (safetensors HF folder), or GGUF (core.gguf_export).

Every export is written into a temporary folder beside the target and renamed at the end, so a
failed or cancelled export never leaves half a model where the person looks for one. Each carries a model card
(README.md, core.model_card) written last, from the run's history (`story`), so it lists every file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core import atomic, model_card, results, strategies
from core.data import reasoning, tool_render
from core.errors import BadArgument
from core.progress import Progress, Span

FORMATS = ("adapter", "safetensors", "gguf")


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def export(run: dict, fmt: str, out: str | Path, quant: str | None = None, progress: Progress | None = None,
           nf4_base: bool = False, story: model_card.Story | None = None) -> Path:
    """Write the run's result at `out` (a new folder). GGUF: `quant` is the tensor type (q4_k_m when
    left out) and `nf4_base` merges a QLoRA adapter into the nf4-rounded base it was trained on. `story`: what the
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

    from core import merge_stream

    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    tool_render.for_export(tokenizer, bool((run.get("config") or {}).get("tools")))  # as the run trained them
    reasoning.for_export(tokenizer, bool((run.get("config") or {}).get("thinks")))  # in front of the tools' prelude
    base, adapter = (model_path, result) if strategy.result == "adapter" else (result, None)
    if not merge_stream.unsupported(base, adapter):  # one shard at a time: RAM never holds the model
        with atomic.folder(out, replace=out.exists()) as tmp:
            merge_stream.write(base, adapter, tmp, Span(progress, 0.05, 0.95))
            tokenizer.save_pretrained(str(tmp))
            model_card.write(tmp, out.name, run, fmt, story)
        progress.update(1.0, "Model exported")
        return out
    from core.inference import trained_model

    progress.update(0.1, "Loading the trained model")
    model = trained_model(model_path, run["strategy"], result, torch.float32)
    progress.update(0.5, "Merging")
    if strategy.result == "adapter":
        model = model.merge_and_unload()
    progress.update(0.7, "Writing safetensors")
    with atomic.folder(out, replace=out.exists()) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        model_card.write(tmp, out.name, run, fmt, story)
    progress.update(1.0, "Model exported")
    return out
