"""The export page's lines under a GGUF export, read from its export.json (core/gguf_export/exporter.py)."""

import json

import pytest

from ui.pages.export_page import gguf_notes

VERIFIED = {"verification": {"summary": "Verified: 272 tensors."}}
FELL = {"fallbacks": {"summary": "180 of 211 matrices could not take the type the pick asks for: …"}}


@pytest.mark.parametrize("report, modelfile, expected", [
    (None, False, []),  # a safetensors export: no export.json
    ("{broken", False, []),
    ({**VERIFIED, "fallbacks": None}, False, ["Verified: 272 tensors."]),
    ({**VERIFIED, **FELL}, True, ["Verified: 272 tensors.", FELL["fallbacks"]["summary"], "Ollama: ollama create"]),
    ({"fallbacks": FELL["fallbacks"]}, False, []),  # no verification: not ours to explain
    ({**VERIFIED, "ollama": "Ollama offers the model tools", "lora": {"chat_template_why": "With the LoRA file"}},
     True, ["Verified: 272 tensors.", "Ollama: ollama create", "Ollama offers the model tools", "With the LoRA file"]),
    # an adapter run whose adapter a LoRA file cannot carry says so; a whole-model run has nothing to say
    ({**VERIFIED, "lora": {"written": False, "why": "the adapter also changes per_layer_model_projection"}}, False,
     ["Verified: 272 tensors.", "No LoRA file: the adapter also changes per_layer_model_projection."]),
    ({**VERIFIED, "lora": {"written": False, "adapter": False, "why": "the run trained the whole model (full)"}},
     False, ["Verified: 272 tensors."]),
])
def test_gguf_notes(tmp_path, report, modelfile, expected):
    if report is not None:
        (tmp_path / "export.json").write_text(report if isinstance(report, str) else json.dumps(report))
    if modelfile:
        (tmp_path / "Modelfile").write_text("FROM ./x.gguf\n")
    notes = gguf_notes(tmp_path)
    assert len(notes) == len(expected) and all(n.startswith(e) for n, e in zip(notes, expected))
