"""Export a run as GGUF: merge, plan, write, Modelfile, LoRA file, verify; all or nothing.

The merged model is read a tensor at a time from the checkpoint's shards where it can be (merge.source), so
memory holds one tensor and its quantized bytes, and a model larger than RAM exports too.

The folder it makes holds:
- `<model>-<run>.<type>.gguf`: the merged model, verified (verify.py) before the folder appears;
- `Modelfile`: for `ollama create`, with the chat template and stop token (modelfile.py), and tools where the
  exported template writes them in parts Ollama's can (template_parts.py);
- `<model>-<run>.lora.gguf`, for runs that trained a LoRA adapter (LoRA, QLoRA): a few megabytes that
  let llama.cpp (`--lora`) or Ollama (ADAPTER) put the fine-tune on a base GGUF the person already
  has, or switch fine-tunes without a copy of the model each. DoRA and whole-model runs have no such
  file (llama.cpp's LoRA cannot carry DoRA's magnitudes; a whole-model run has no adapter);
- `chat_template.jinja` beside the LoRA file where the exported chat template is not the base model's (it writes
  tools as the run learned them): a base GGUF carries its own, so llama.cpp is given this one with `--lora`;
- `mmproj-<model>-<run>.f16.gguf`, for a vision-language model whose vision tower we write (Gemma 3 and 4, Qwen 3.5,
  Mistral 3), or the `mmproj-*.gguf` that sat beside a GGUF base: llama.cpp's projector file (`--mmproj`; LM Studio
  finds it by its name), so the exported model still sees (projectors/);
- `export.json`: what was decided and why, and the verification, for the person and the UI;
- `README.md`: the model card (core.model_card): what it was made from, how it was trained, which file is which.
The GGUF's metadata names its base model, licence and dataset too (writer.add_lineage), as llama.cpp's converter
does for a fine-tune.

Everything is written in a temporary folder beside the target and renamed at the end (core.atomic),
so a cancel, a failure or a file that does not pass its check leaves nothing where the person looks.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from core import atomic, lineage, model_card, results, strategies
from core.data import reasoning, tool_render
from core.errors import BadArgument, KnownError
from core.gguf_export import architectures, chat_format, lora_adapter, merge, modelfile, template_parts
from core.gguf_export import projectors, tensor_types, verify
from core.gguf_export import vocab as vocab_mod
from core.gguf_export import writer
from core.progress import Span

REPORT = "export.json"
CHAT_TEMPLATE = "chat_template.jinja"  # the exported template, where it is not the base model's (the LoRA file's)


def model_config(run: dict) -> dict:
    """The trained model's config.json (the result holds it for whole-model runs), read before loading: its language
    model's, for a vision-language model (GGUF holds that: merge.language_model)."""
    folder = results.folder(run)
    if strategies.get(run["strategy"]).result == "adapter" or not (folder / "config.json").is_file():
        folder = Path(run["model_path"])
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return config.get("text_config", config)


def export(run: dict, out: Path, quant: str | None, progress, nf4_base: bool = False,
           story: model_card.Story | None = None) -> Path:
    pick = tensor_types.pick(quant or tensor_types.DEFAULT)
    if nf4_base and run["strategy"] != "qlora":
        raise BadArgument(f"--qlora-base nf4 applies to QLoRA runs; run {run['id']} used {run['strategy']}.")
    architectures.get(model_config(run).get("model_type", "?"))  # refuse an unsupported model before loading it
    from transformers import AutoTokenizer

    stem = f"{Path(run['model_path']).name}-{run['id']}".lower()
    with atomic.folder(out, replace=out.exists()) as tmp:  # an empty folder may exist already
        progress.update(0.02, "Reading the trained model")
        source = merge.source(run, nf4_base)
        tokenizer = AutoTokenizer.from_pretrained(str(run["model_path"]))
        trained_tools = bool((run.get("config") or {}).get("tools"))
        base_template = getattr(tokenizer, "chat_template", None)
        thinks_as_text = bool((run.get("config") or {}).get("thinks")) and not reasoning.native(tokenizer)[0]
        tools_note = tool_render.for_export(tokenizer, trained_tools)
        thinking_note = reasoning.for_export(tokenizer, thinks_as_text)  # in front: it runs before the tools' prelude
        cfg = source.cfg
        arch = architectures.for_config(cfg)
        detected = chat_format.detect(tokenizer)
        fmt = detected.format
        tools = template_parts.tools(tokenizer, fmt)  # as the exported template writes them, where Ollama can too
        thinking = reasoning.AS_TEXT if thinks_as_text and fmt else template_parts.thinking(tokenizer, fmt, tools)
        vocab = vocab_mod.build(tokenizer, cfg["vocab_size"], fmt.end_of_turn if fmt else None, run["model_path"], arch)
        plan = writer.plan(arch, cfg, source.shapes, vocab, pick, stem)
        origin = (lineage.base_model(run.get("model") or "", run["model_path"]),
                  lineage.dataset(run.get("data_path", "")), ["tuneforge", run["strategy"]])
        writer.add_lineage(plan, *origin)
        gguf_path = writer.write(plan, source.tensors, tmp / f"{stem}.{pick.name}.gguf", Span(progress, 0.15, 0.6))
        eos = vocab.tokens[vocab.special["eos"]] if "eos" in vocab.special else None
        atomic.write_text(tmp / "Modelfile", modelfile.modelfile(
            gguf_path.name, fmt, vocab.add_bos, eos, detected.reason, tools=tools, thinking=thinking))
        ollama = modelfile.tools_reason(trained_tools, tools, fmt)
        if thinking is not None:
            ollama = " ".join(filter(None, (ollama, modelfile.THINKING_REASON)))
        lora = _lora(run, arch, cfg, tmp / f"{stem}.lora.gguf", stem, source, origin)
        if lora["written"] and tokenizer.chat_template != base_template:  # the LoRA file on a base GGUF would chat
            atomic.write_text(tmp / CHAT_TEMPLATE, tokenizer.chat_template)  # through the base's own template
            lora |= {"chat_template": CHAT_TEMPLATE, "chat_template_why": (
                f"With the LoRA file on a base GGUF, give llama.cpp {CHAT_TEMPLATE} too (--jinja --chat-template-file "
                f"{CHAT_TEMPLATE}): the base's own chat template does not write what the run learned as this one "
                "does.")}
        projector = projectors.write(run, tmp / f"mmproj-{stem}.f16.gguf", Span(progress, 0.6, 0.62))
        progress.update(0.62, "Checking the file")
        result = verify.verify(gguf_path, plan, source, tokenizer, Span(progress, 0.62, 0.98))
        if not result.ok:
            raise KnownError(f"The GGUF file did not pass its check ({'; '.join(result.problems)}), so nothing was "
                             "kept; try a type with more bits such as q8_0, and report it if f16 fails.")
        said = (report(run, plan, source.reason, detected, lora, result, gguf_path)
                | ({"tool_calls": tools_note} if tools_note else {})
                | ({"reasoning": thinking_note} if thinking_note else {})
                | ({"ollama": ollama} if ollama else {}) | ({"thinks": True} if thinking else {})
                | ({"learned_tools": True} if trained_tools else {})
                | ({"projector": projector} if projector else {}))
        atomic.write_json(tmp / REPORT, said)
        model_card.write(tmp, out.name, run, "gguf", story, said)
    progress.update(1.0, result.summary)
    return out


def _lora(run: dict, arch, cfg: dict, target: Path, stem: str, source, origin: tuple) -> dict:
    strategy = strategies.get(run["strategy"])
    if strategy.result != "adapter":
        return {"written": False, "adapter": False,
                "why": f"the run trained the whole model ({run['strategy']}), so there is no adapter"}
    if getattr(strategy, "use_dora", False):
        return {"written": False, "why": "llama.cpp's LoRA files cannot carry DoRA's magnitude vectors"}
    result = results.folder(run)
    why = lora_adapter.unwritable(result, arch)
    if why:
        return {"written": False, "why": why}
    def base_tensor(hf_name: str):  # one of the merged model's tensors, which the adapter leaves as they were
        return source.tensors[hf_name].detach().float().cpu().numpy()

    lora_adapter.write(result, arch, cfg, target, stem, base_tensor, origin)
    return {"written": True, "file": target.name, "check": lora_adapter.check(target, result, arch, cfg, base_tensor),
            "why": "a small file that puts this fine-tune on a base GGUF with llama.cpp --lora or Ollama's ADAPTER"}


def _weights(run: dict) -> dict:
    """Which of the run's weights the file holds (core.results.pick put the choice in the run)."""
    choice = run.get("picked")
    if choice is None:
        return {"which": results.LAST, "step": run.get("steps_done")}
    return {"which": choice.which, "step": choice.step, "why": choice.note}


def report(run, plan, merge_reason, detected, lora, result, gguf_path) -> dict:
    return {
        "run": run["id"], "weights": _weights(run), "file": gguf_path.name, "bytes": gguf_path.stat().st_size,
        "quant": plan.pick.name, "quant_summary": plan.pick.summary, "architecture": plan.arch.name,
        "tensor_types": dict(Counter(t.type for t in plan.tensors)),
        "fallbacks": tensor_types.fallbacks(plan.tensors),
        "merge": merge_reason,
        "tokenizer": {"model": plan.vocab.model, "pre": plan.vocab.pre, "why": plan.vocab.pre_reason,
                      "eos": plan.vocab.tokens[plan.vocab.special["eos"]] if "eos" in plan.vocab.special else None},
        "chat_format": detected.format.family if detected.format else None, "modelfile": detected.reason,
        "lora": lora,
        "verification": {"ok": result.ok, "summary": result.summary, "checks": result.checks,
                         "figures": result.figures},
    }
