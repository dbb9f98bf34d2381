"""GGUF export of a run on a vision-language checkpoint, as Qwen 3.5 (every size), Gemma 3 (4B on), Gemma 4 and Mistral
Small 3.1 (llava's layout, its language model loaded by core/causal_lm.py) are released: the file holds the language
model (llama.cpp keeps a vision tower in a projector file of its own), read shard by shard under the checkpoint's
layout (`model.language_model.`, or llava's `language_model.model.`), checked against the trained model's answers,
and the LoRA file puts the same update on a base GGUF. Before, Gemma 3 from 4B was refused ('gemma3' is the whole
model's type), and a Qwen 3.5 adapter file crashed on out_proj, whose columns llama.cpp orders by value head."""

from __future__ import annotations

import json

import pytest
import torch

from core import export
from tests.core import vision_language
from tests.core.gguf_export import tiny


def lora_run(tmp_path, build, use_dora: bool = False) -> dict:
    """A LoRA run's result on the checkpoint `build` writes, with the trainer's own targets."""
    from transformers import AutoTokenizer

    from core import causal_lm
    from core.strategies.lora import targets_for

    base = tmp_path / "base"
    tok = AutoTokenizer.from_pretrained(tiny.byte_level(base))
    build(base, vocab=len(tok))
    model = causal_lm.from_pretrained(base, dtype=torch.float32)
    return tiny.adapter_run(model, tmp_path, base, targets_for(model, "auto")["target_modules"], use_dora, run_id="v1")


@pytest.mark.parametrize("build,architecture", [
    (vision_language.qwen3_5, "qwen35"), (vision_language.gemma3, "gemma3"), (vision_language.mistral3, "llama"),
    (vision_language.gemma4, "gemma4")])
def test_the_language_model_of_a_vision_language_run_exports(tmp_path, build, architecture):
    run = lora_run(tmp_path, build)
    adapter = json.loads((tmp_path / "run" / "result" / "adapter_config.json").read_text())
    assert "vision" not in str(adapter["target_modules"])  # adapters on the language model's layers alone
    out = export.export(run, "gguf", tmp_path / "gguf", "f32")
    report = json.loads((out / "export.json").read_text())
    assert report["architecture"] == architecture and report["verification"]["ok"]
    assert "one tensor at a time" in report["merge"] and "vision tower" in report["merge"]
    assert report["lora"]["written"] and "equals the adapter's" in report["lora"]["check"]


def test_a_vision_language_run_merged_whole_by_peft_exports_its_language_model(tmp_path):
    """DoRA is merged by peft in RAM, the whole vision-language model: its language model is taken from it, renamed as
    its causal LM names it (merge.language_model), and checked against that causal LM's answers."""
    run = lora_run(tmp_path, vision_language.gemma3, use_dora=True)
    out = export.export(run, "gguf", tmp_path / "gguf", "f16")
    report = json.loads((out / "export.json").read_text())
    assert report["architecture"] == "gemma3" and report["verification"]["ok"] and "peft merged" in report["merge"]
