"""A LoRA run on a Granite 4.0 dense model (granitemoehybrid, every layer attention, no experts) exports as llama.cpp's
granite: the merged file checked against the trained GraniteMoeHybrid model's own answers (or, short of memory, each
tensor against its merged rows), and the LoRA file's pairs on input_linear split as the weight is: the whole A with
B's first half of rows for ffn_gate, with its second half for ffn_up (architectures/granitemoehybrid.py). A file of
one as llama.cpp's converter writes it imports as the granite model it is. A hybrid (Mamba2 layers beside attention)
exports as llama.cpp's granitehybrid, the LoRA on its Mamba projections as ssm_in and ssm_out pairs."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from core import export
from core.gguf_export import reader, verify
from tests.core.gguf_export import tiny
from tests.core.gguf_export.test_architectures import CASES, COMMON, VARIANTS

TARGETS = ["q_proj", "input_linear", "output_linear"]


def lora_run(tmp_path, settings: dict = CASES["granitemoehybrid"], targets=tuple(TARGETS)) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "base"))
    base = tiny.random_model("granitemoehybrid", tok, **{**COMMON, **settings})
    base.save_pretrained(tmp_path / "base")
    return tiny.adapter_run(base, tmp_path, tmp_path / "base", list(targets))


def stored(path) -> dict[str, np.ndarray]:
    contents = reader.read(path)
    return {t.name: reader.tensor_bytes(path, contents, t, 4 * int(np.prod(t.shape))).view(np.float32).reshape(t.shape)
            for t in contents.tensors}


def test_a_lora_run_exports_as_granite_checked_against_its_own_class(tmp_path):
    from safetensors.torch import load_file

    run = lora_run(tmp_path)
    out = export.export(run, "gguf", tmp_path / "out", "f16")
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    figures = report["verification"]["figures"]
    assert report["architecture"] == "granite" and report["verification"]["ok"]
    assert figures["greedy_matches"] == figures["prompts"] == 3
    assert "read with our own dequantization" in " ".join(report["verification"]["checks"])
    gguf = next(p for p in out.iterdir() if p.name.endswith(".f16.gguf"))
    shapes = {t.name: t.shape for t in reader.read(gguf).tensors}
    assert shapes["blk.0.ffn_gate.weight"] == shapes["blk.0.ffn_up.weight"] == (96, 64)
    assert shapes["blk.0.ffn_down.weight"] == (64, 96)

    # two layers: q, gate, up and down each
    assert report["lora"]["written"] and "holds 8 adapted weights" in report["lora"]["check"]
    lora = stored(out / report["lora"]["file"])
    peft = {k: v.float().numpy() for k, v in load_file(str(tmp_path / "run" / "result" / "adapter_model.safetensors"))
            .items()}
    mlp = "base_model.model.model.layers.1.shared_mlp."
    a, b = peft[mlp + "input_linear.lora_A.weight"], peft[mlp + "input_linear.lora_B.weight"]
    np.testing.assert_array_equal(lora["blk.1.ffn_gate.weight.lora_a"], a)
    np.testing.assert_array_equal(lora["blk.1.ffn_up.weight.lora_a"], a)
    np.testing.assert_array_equal(lora["blk.1.ffn_gate.weight.lora_b"], b[:96])
    np.testing.assert_array_equal(lora["blk.1.ffn_up.weight.lora_b"], b[96:])
    np.testing.assert_array_equal(lora["blk.1.ffn_down.weight.lora_b"], peft[mlp + "output_linear.lora_B.weight"])


def test_short_of_memory_each_tensor_is_checked_against_its_merged_rows(tmp_path, monkeypatch):
    from core import inference

    run = lora_run(tmp_path)
    monkeypatch.setattr(verify, "_available", lambda: 1 << 10)  # less than this tiny model needs

    def refuse(*args, **kwargs):
        raise AssertionError("the whole model was loaded")

    monkeypatch.setattr(inference, "trained_model", refuse)
    out = export.export(run, "gguf", tmp_path / "out", "q8_0")
    check = json.loads((out / "export.json").read_text(encoding="utf-8"))["verification"]
    assert check["ok"] and check["figures"]["compared"] is False and check["figures"]["tensor_error"]["q8_0"] > 0


@pytest.mark.parametrize("settings,words", [
    (dict(layer_types=["mamba", "attention"], mamba_proj_bias=True),
     "This Granite 4.0 model's Mamba projections have biases"),
    (dict(num_local_experts=4, num_experts_per_tok=2), "This Granite 4.0 model has 4 experts"),
])
def test_a_hybrid_or_expert_run_is_refused_before_anything_is_written(tmp_path, settings, words):
    from core.errors import BadArgument

    run = lora_run(tmp_path)
    config = tmp_path / "base" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **settings}))
    with pytest.raises(BadArgument, match=re.escape(words)):
        export.export(run, "gguf", tmp_path / "out", "f16")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kinds", [["mamba", "attention", "mamba", "mamba"],  # as config.json has them
                                   ["linear_attention", "full_attention", "linear_attention", "linear_attention"]])
def test_a_hybrid_lora_run_exports_as_granitehybrid_with_its_mamba_projections(tmp_path, kinds):
    """The layers named as config.json names them or as transformers 5 does; the merged file checked against the
    trained model's own class, the LoRA file's pairs on in_proj and out_proj as ssm_in and ssm_out."""
    from safetensors.torch import load_file

    settings = {**VARIANTS["granitemoehybrid-h"][1], "layer_types": kinds}
    run = lora_run(tmp_path, settings, (*TARGETS, "in_proj", "out_proj"))
    out = export.export(run, "gguf", tmp_path / "out", "f16")
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert report["architecture"] == "granitehybrid" and report["verification"]["ok"]
    gguf = next(p for p in out.iterdir() if p.name.endswith(".f16.gguf"))
    contents = reader.read(gguf)
    assert contents.metadata["granitehybrid.attention.head_count_kv"] == [0, 2, 0, 0]
    assert {t.name: t.shape for t in contents.tensors}["blk.0.ssm_conv1d.weight"] == (192, 4)

    # q on the attention layer, gate, up and down on each of the four, in and out on the three Mamba ones: 1 + 12 + 6
    assert report["lora"]["written"] and "holds 19 adapted weights" in report["lora"]["check"]
    lora = stored(out / report["lora"]["file"])
    peft = {k: v.float().numpy() for k, v in load_file(str(tmp_path / "run" / "result" / "adapter_model.safetensors"))
            .items()}
    mamba = "base_model.model.model.layers.2.mamba."
    for hf, ours in (("in_proj", "ssm_in"), ("out_proj", "ssm_out")):
        np.testing.assert_array_equal(lora[f"blk.2.{ours}.weight.lora_a"], peft[mamba + hf + ".lora_A.weight"])
        np.testing.assert_array_equal(lora[f"blk.2.{ours}.weight.lora_b"], peft[mamba + hf + ".lora_B.weight"])


def test_a_granite_4_file_as_llama_cpps_converter_writes_it_comes_back(tmp_path):
    """llama.cpp's converter writes Granite 4.0's dense models as granite with the key heads one a layer (and keys of
    the hybrid models beside, which a granite model does not read): they come back as the granite model they are."""
    import torch
    from gguf import GGUFValue, GGUFValueType
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core import model_source
    from core.gguf_export import writer
    from core.progress import Progress

    tokenizer = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "tok"))
    model = tiny.random_model("granitemoehybrid", tokenizer, **{**COMMON, **CASES["granitemoehybrid"]})
    plan = tiny.plan(model, tokenizer, "f32")
    plan.kv["granite.attention.head_count_kv"] = GGUFValue([2, 2], GGUFValueType.ARRAY, GGUFValueType.UINT32)
    plan.kv["granite.expert_shared_feed_forward_length"] = GGUFValue(96, GGUFValueType.UINT32)
    gguf = writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    folder = model_source.resolve(str(gguf), tmp_path / "models").path
    loaded = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    assert (loaded.config.model_type, loaded.config.num_key_value_heads) == ("granite", 2)
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)
