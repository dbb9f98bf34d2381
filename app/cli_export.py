"""`tuneforge export`: a run's weights as an adapter, merged safetensors or GGUF; a GGUF also handed to the apps that
run it on this machine where asked (`--ollama NAME`, `--lmstudio`), each checked before anything is exported so a
sentence comes before the work."""

from __future__ import annotations

import json
import os

from app import operations as ops
from app.cli_verbs import say_weights
from app.progress_bar import TerminalProgress
from core import export, model_card, ollama_create, other_apps
from core.errors import BadArgument
from core.gguf_export import lora_adapter, projectors


def cmd_export(a) -> int:
    for flag, asked in (("--lmstudio", a.lmstudio), ("--ollama", a.ollama)):
        if asked and a.format != "gguf":
            raise BadArgument(f"{flag} hands a GGUF file to another app; export with --format gguf.")
    lmstudio = other_apps.lmstudio_folder(os.path.basename(os.path.abspath(a.out))) if a.lmstudio else None
    ollama = ollama_create.target(a.ollama) if a.ollama else None
    say_weights(ops.run_weights(a.run, a.weights)["picked"], "Exporting")
    path = ops.export_run(a.run, a.format, a.out, a.quant, progress=TerminalProgress().as_progress(),
                          nf4_base=a.qlora_base == "nf4", weights=a.weights, dtype=a.dtype)
    print(f"Exported {a.format} to {path}")
    if a.format == "safetensors":
        print(export.said(path))
    if a.format == "gguf":
        report = json.loads((path / "export.json").read_text(encoding="utf-8"))
        print(report["verification"]["summary"])
        if report.get("fallbacks"):
            print(report["fallbacks"]["summary"])
        if ollama:
            print(f"Handing it to Ollama as {ollama.name} (Ollama copies the file in)...", flush=True)
            print(f"Ollama has it as {ollama.name}: {ollama_create.create(path, ollama)}")
        else:
            print(f"Ollama: ollama create NAME -f {path / 'Modelfile'}")
        if lmstudio:
            print(f"LM Studio: {other_apps.add_to_lmstudio(path / report['file'], lmstudio)}")
        for said in (report.get("ollama"), (report.get("lora") or {}).get("chat_template_why"),
                     lora_adapter.missing(report), projectors.said(report)):
            if said:
                print(said)
    print(model_card.said(path))  # last: what to do with the folder as a whole
    return 0
