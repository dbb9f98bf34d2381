"""The LoRA file (core/gguf_export/lora_adapter.py) of a run on a mixture of experts (Qwen3 MoE, whose gate_up is
split, Gemma 4's, whose stays fused as ffn_gate_up_exps, and gpt-oss, whose stacks are [in, out] with the gate's and
up's outputs interleaved): peft's adapters on
the experts' 3-D weights (target_parameters, one pair per weight: A [rank·experts, in], B [out, rank·experts]) are
written as llama.cpp's converter writes expert stacks, `ffn_*_exps.weight.lora_a` [experts, rank, in] and `.lora_b`
[experts, out, rank] (ggml's ne the other way round), the fused gate_up split into the gate's and the up's rows of B.
Before, such an adapter got no file. llama.cpp's own answers with the file: the report of the change (llama-server
with --lora on the f32 base against the merged file)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import export
from core.gguf_export import reader
from tests.core.gguf_export import tiny
from tests.core.gguf_export.test_architectures import COMMON, row

def rows(taken: slice):
    return lambda stack: stack[:, taken]


def columns_turned(taken: slice):  # gpt-oss's stacks are [in, out], the gate's and up's outputs interleaved
    return lambda stack: stack[:, :, taken].swapaxes(1, 2)


# row of the architectures' table → its experts' module, the writer's arch name and what each 3-D weight becomes:
# (GGUF name, its 3-D source, the source's part it is as llama.cpp holds it, [experts, out, in], and the layer's
# per-expert scale that llama.cpp multiplies the weight's output by before it adds the LoRA's, where there is one)
MOE = {
    "qwen3_moe": ("mlp.experts", "qwen3moe", [("ffn_gate_exps", "gate_up_proj", rows(slice(0, 32)), None),
                                              ("ffn_up_exps", "gate_up_proj", rows(slice(32, 64)), None),
                                              ("ffn_down_exps", "down_proj", rows(slice(None)), None)]),
    "gemma4_text-moe": ("experts", "gemma4", [("ffn_gate_up_exps", "gate_up_proj", rows(slice(None)), None),
                                              ("ffn_down_exps", "down_proj", rows(slice(None)),
                                               "router.per_expert_scale")]),
    "gpt_oss": ("mlp.experts", "gpt-oss", [("ffn_gate_exps", "gate_up_proj", columns_turned(slice(0, None, 2)), None),
                                           ("ffn_up_exps", "gate_up_proj", columns_turned(slice(1, None, 2)), None),
                                           ("ffn_down_exps", "down_proj", columns_turned(slice(None)), None)]),
    "mixtral": ("mlp.experts", "llama", [("ffn_gate_exps", "gate_up_proj", rows(slice(0, 32)), None),
                                         ("ffn_up_exps", "gate_up_proj", rows(slice(32, 64)), None),
                                         ("ffn_down_exps", "down_proj", rows(slice(None)), None)]),
    "qwen2_moe": ("mlp.experts", "qwen2moe", [("ffn_gate_exps", "gate_up_proj", rows(slice(0, 32)), None),
                                              ("ffn_up_exps", "gate_up_proj", rows(slice(32, 64)), None),
                                              ("ffn_down_exps", "down_proj", rows(slice(None)), None)]),
    "olmoe": ("mlp.experts", "olmoe", [("ffn_gate_exps", "gate_up_proj", rows(slice(0, 32)), None),
                                       ("ffn_up_exps", "gate_up_proj", rows(slice(32, 64)), None),
                                       ("ffn_down_exps", "down_proj", rows(slice(None)), None)]),
}


def stored(path) -> dict[str, np.ndarray]:
    contents = reader.read(path)
    assert {t.ggml_type for t in contents.tensors} == {0}  # F32
    return {t.name: reader.tensor_bytes(path, contents, t, 4 * int(np.prod(t.shape))).view(np.float32).reshape(t.shape)
            for t in contents.tensors}


@pytest.fixture(params=list(MOE))
def exported(tmp_path, request):
    """(row, base model's tensors, the export's folder) of a LoRA run with the trainer's targets on a tiny mixture of
    experts."""
    from transformers import AutoTokenizer

    from core.strategies.lora import targets_for

    base = tmp_path / "base"
    tok = AutoTokenizer.from_pretrained(tiny.byte_level(base))
    model_type, settings = row(request.param)
    model = tiny.random_model(model_type, tok, **{**COMMON, **settings})
    model.save_pretrained(base)
    before = {k: t.detach().clone().numpy() for k, t in model.state_dict().items()}
    chosen = targets_for(model, "auto")
    assert sorted(chosen["target_parameters"]) == ["experts.down_proj", "experts.gate_up_proj"]
    run = tiny.adapter_run(model, tmp_path, base, chosen["target_modules"],
                           target_parameters=chosen["target_parameters"])
    return request.param, before, export.export(run, "gguf", tmp_path / "gguf", "f32")


def test_every_experts_update_from_the_lora_file_is_the_merged_models(exported):
    case, before, out = exported
    module, arch, weights = MOE[case]
    report = json.loads((out / "export.json").read_text())
    assert report["architecture"] == arch and report["verification"]["ok"]
    assert report["lora"]["written"] and "equals the adapter's" in report["lora"]["check"]  # lora_adapter.check
    lora_path = out / report["lora"]["file"]
    lora, merged = stored(lora_path), stored(next(out.glob("*.f32.gguf")))
    alpha = reader.read(lora_path).metadata["adapter.lora.alpha"]
    assert alpha == 8
    experts, rank = 4, 4
    for layer in range(2):
        for name, source, part, scale in weights:
            weight = part(before[f"model.layers.{layer}.{module}.{source}"])
            shape = weight.shape[1:]
            gguf = f"blk.{layer}.{name}.weight"
            a, b = lora[f"{gguf}.lora_a"], lora[f"{gguf}.lora_b"]
            assert a.shape == (experts, rank, shape[1]) and b.shape == (experts, shape[0], rank)
            update = (alpha / rank) * b @ a  # llama.cpp's build_lora_mm_id, expert by expert
            assert np.abs(update).max() > 1e-3  # B was drawn at random: the update shows
            # llama.cpp: s·(W·x) + update·x, which must be the model's s·(merged W)·x
            s = before[f"model.layers.{layer}.{scale}"][:, None, None] if scale else np.ones((experts, 1, 1))
            assert scale is None or np.abs(s - 1).max() > 0.05  # (tiny.random_model moves scales off 1)
            np.testing.assert_allclose(s * weight + update, s * merged[gguf], rtol=0, atol=2e-6)
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):  # the attention's adapters, as before
            assert f"blk.{layer}.{name}.weight.lora_a" in lora
    # the router is not adapted (Qwen2 MoE's shared expert gate, ffn_gate_inp_shexp, a linear layer, is)
    assert not any(n.startswith("blk.0.ffn_gate_inp.") for n in lora)


@pytest.mark.parametrize("exported", ["qwen3_moe"], indirect=True)
def test_an_architecture_that_does_not_say_its_experts_shapes_gets_no_file(exported, tmp_path):
    from core.gguf_export import architectures, lora_adapter

    class Plain:  # an architecture without expert_shapes
        pass

    result = tmp_path / "run" / "result"
    assert "experts' stacked weights" in lora_adapter.unwritable(result, Plain())
    assert lora_adapter.unwritable(result, architectures.REGISTRY["qwen3_moe"]) == ""


@pytest.mark.parametrize("targets", ["auto", "all-linear"])
def test_an_adapter_on_a_weight_llama_cpp_multiplies_without_lora_gets_no_file(tmp_path, targets):
    """Gemma 4's per-layer model projection (E2B's and E4B's per-layer inputs) goes through ggml_mul_mat in llama.cpp,
    which adds no LoRA: with an adapter on it (peft's all-linear, what 'auto' gave a text-only Gemma 4),
    llama-server answered 0.19 away from the merged file in log-probability. Such a run's export says why there is
    no LoRA file, the merged GGUF holding the fine-tune; 'auto' now adapts the decoder layers alone (their per-layer
    gate and projection too, which llama.cpp does apply LoRA to), and gets its file."""
    import re

    from transformers import AutoTokenizer

    from core.strategies.lora import targets_for
    from tests.core.gguf_export.test_architectures import CASES

    base = tmp_path / "base"
    tok = AutoTokenizer.from_pretrained(tiny.byte_level(base))
    model = tiny.random_model("gemma4_text", tok, **{**COMMON, **CASES["gemma4_text"]})
    model.save_pretrained(base)
    chosen = targets_for(model, "auto")["target_modules"] if targets == "auto" else targets
    if targets == "auto":
        adapted = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and re.fullmatch(chosen, n)}
        assert "model.layers.0.per_layer_input_gate" in adapted and "model.per_layer_model_projection" not in adapted
    out = export.export(tiny.adapter_run(model, tmp_path, base, chosen), "gguf", tmp_path / "gguf", "f32")
    report = json.loads((out / "export.json").read_text())
    assert report["verification"]["ok"] and report["lora"]["written"] == (targets == "auto")
    if targets == "auto":
        assert "equals the adapter's" in report["lora"]["check"]
    else:
        assert report["lora"]["why"].startswith("the adapter also changes per_layer_model_projection, which llama.cpp")
        assert not list(out.glob("*.lora.gguf"))
        from core.gguf_export.lora_adapter import missing  # the line the command and the export page show

        assert missing(report).startswith("No LoRA file: the adapter also changes per_layer_model_projection")
