"""The LoRA file (core/gguf_export/lora_adapter.py) of a run on a mixture of experts (Qwen3 MoE): peft's adapters on
the experts' 3-D weights (target_parameters, one pair per weight: A [rank·experts, in], B [out, rank·experts]) are
written as llama.cpp's converter writes expert stacks, `ffn_*_exps.weight.lora_a` [experts, rank, in] and `.lora_b`
[experts, out, rank] (ggml's ne the other way round), the fused gate_up split into the gate's and the up's rows of B.
Before, such an adapter got no file. llama.cpp's own answers with the file: the report of the change (llama-server
with --lora on the f32 base against the merged file)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import export
from core.gguf_export import reader
from tests.core.gguf_export import tiny
from tests.core.gguf_export.test_architectures import CASES, COMMON


def stored(path) -> dict[str, np.ndarray]:
    contents = reader.read(path)
    assert {t.ggml_type for t in contents.tensors} == {0}  # F32
    return {t.name: reader.tensor_bytes(path, contents, t, 4 * int(np.prod(t.shape))).view(np.float32).reshape(t.shape)
            for t in contents.tensors}


@pytest.fixture
def exported(tmp_path):
    """(base model's tensors, the export's folder) of a LoRA run with the trainer's targets on a tiny Qwen3 MoE."""
    from transformers import AutoTokenizer

    from core.strategies.lora import targets_for

    base = tmp_path / "base"
    tok = AutoTokenizer.from_pretrained(tiny.byte_level(base))
    model = tiny.random_model("qwen3_moe", tok, **{**COMMON, **CASES["qwen3_moe"]})
    model.save_pretrained(base)
    before = {k: t.detach().clone().numpy() for k, t in model.state_dict().items()}
    chosen = targets_for(model, "auto")
    assert sorted(chosen["target_parameters"]) == ["experts.down_proj", "experts.gate_up_proj"]
    run = tiny.adapter_run(model, tmp_path, base, chosen["target_modules"],
                           target_parameters=chosen["target_parameters"])
    return before, export.export(run, "gguf", tmp_path / "gguf", "f32")


def test_every_experts_update_from_the_lora_file_is_the_merged_models(exported):
    before, out = exported
    report = json.loads((out / "export.json").read_text())
    assert report["architecture"] == "qwen3moe" and report["verification"]["ok"]
    assert report["lora"]["written"] and "equals the adapter's" in report["lora"]["check"]  # lora_adapter.check
    lora_path = out / report["lora"]["file"]
    lora, merged = stored(lora_path), stored(next(out.glob("*.f32.gguf")))
    alpha = reader.read(lora_path).metadata["adapter.lora.alpha"]
    assert alpha == 8
    hidden, width, experts, rank = 64, 32, 4, 4
    for layer in range(2):
        stem = f"model.layers.{layer}.mlp.experts."
        gate_up, down = before[stem + "gate_up_proj"], before[stem + "down_proj"]
        for name, weight, shape in [("ffn_gate_exps", gate_up[:, :width], (width, hidden)),
                                    ("ffn_up_exps", gate_up[:, width:], (width, hidden)),
                                    ("ffn_down_exps", down, (hidden, width))]:
            gguf = f"blk.{layer}.{name}.weight"
            a, b = lora[f"{gguf}.lora_a"], lora[f"{gguf}.lora_b"]
            assert a.shape == (experts, rank, shape[1]) and b.shape == (experts, shape[0], rank)
            update = (alpha / rank) * b @ a  # llama.cpp's build_lora_mm_id, expert by expert
            assert np.abs(update).max() > 1e-3  # B was drawn at random: the update shows
            np.testing.assert_allclose(weight + update, merged[gguf], rtol=0, atol=2e-6)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):  # the attention's adapters, as before
            assert f"blk.{layer}.{name}.weight.lora_a" in lora
    assert not any(n.startswith("blk.0.ffn_gate_inp") for n in lora)  # the router is not adapted


def test_an_architecture_that_does_not_say_its_experts_shapes_gets_no_file(exported, tmp_path):
    from core.gguf_export import architectures, lora_adapter

    class Plain:  # an architecture without expert_shapes
        pass

    result = tmp_path / "run" / "result"
    assert "experts' stacked weights" in lora_adapter.unwritable(result, Plain())
    assert lora_adapter.unwritable(result, architectures.REGISTRY["qwen3_moe"]) == ""
