"""Qwen3 MoE (architectures/qwen3moe.py) beyond the table of test_architectures.py: the experts' stacked tensors as
llama.cpp reads them (ggml's ne [in, out, experts]), their types in a mix, and the import putting each layer's fused
gate_up_proj back together from ffn_gate_exps and ffn_up_exps. The end-to-end export of a trained run is in
tests/core/test_mixture_of_experts.py; llama.cpp's own answers on such a file in
benchmarks/llama_cpp_architectures.py."""

from __future__ import annotations

import json

import pytest

from core import gguf_import, model_source
from core.gguf_export import writer
from core.progress import Progress
from tests.core.gguf_export import tiny
from tests.core.gguf_export.test_architectures import CASES, COMMON


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path_factory.mktemp("tok")))


def moe(tokenizer, **settings):
    return tiny.random_model("qwen3_moe", tokenizer, **{**COMMON, **CASES["qwen3_moe"], **settings})


def test_the_experts_are_stacked_as_llama_cpp_reads_them_and_typed_as_its_mix_types_them(tokenizer, tmp_path):
    """In a Q4_K_M mix the stacked down projections get Q6_K on the layers with more bits, as ffn_down does (llama.cpp
    matches the name), the router stays float32; gguf's own reader sees ne = [in, out, experts]."""
    from gguf import GGUFReader

    model = moe(tokenizer, num_hidden_layers=8, moe_intermediate_size=256, intermediate_size=256)
    plan = tiny.plan(model, tokenizer, "q4_k_m")
    types = {t.name: t.wanted for t in plan.tensors}
    assert [types[f"blk.{i}.ffn_down_exps.weight"] for i in range(8)] == ["q6_k", "q4_k", "q4_k", "q6_k", "q4_k",
                                                                         "q4_k", "q6_k", "q6_k"]
    assert {types[f"blk.{i}.ffn_gate_exps.weight"] for i in range(8)} == {"q4_k"}
    assert {types[f"blk.{i}.ffn_gate_inp.weight"] for i in range(8)} == {"f32"}
    path = writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    shapes = {t.name: [int(n) for n in t.shape] for t in GGUFReader(path).tensors}
    assert shapes["blk.0.ffn_gate_exps.weight"] == shapes["blk.0.ffn_up_exps.weight"] == [64, 256, 4]
    assert shapes["blk.0.ffn_down_exps.weight"] == [256, 64, 4]
    assert shapes["blk.0.ffn_gate_inp.weight"] == [64, 4]


def test_the_parts_come_back_together_in_any_order_and_any_shard(tokenizer, tmp_path, monkeypatch):
    """The import puts each expert's gate rows and up rows back in one tensor, wherever the file lists them and
    however small the shards."""
    import torch
    from transformers import AutoModelForCausalLM

    model = moe(tokenizer)
    plan = tiny.plan(model, tokenizer, "f16")
    plan.tensors.sort(key=lambda t: t.name.endswith(".ffn_up_exps.weight"))  # the up halves last, far from the gates
    gguf = writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    monkeypatch.setattr(gguf_import, "SHARD_BYTES", 1)  # a shard for every model tensor
    ref = model_source.resolve(str(gguf), tmp_path / "models")
    index = json.loads((ref.path / gguf_import.INDEX).read_text())
    assert len(set(index["weight_map"].values())) == len(index["weight_map"])
    loaded = AutoModelForCausalLM.from_pretrained(str(ref.path), dtype=torch.float32)
    assert loaded.config.norm_topk_prob and loaded.config.moe_intermediate_size == 32
    got = loaded.state_dict()
    assert sorted(got) == sorted(model.state_dict())
    assert all(torch.equal(got[k], t.half().float()) for k, t in model.state_dict().items())


def test_short_of_memory_each_expert_stack_is_checked_against_its_rows(tokenizer, tmp_path):
    """verify.py's check for a model too large to compare answers (tensor_check.py) takes each part's rows of every
    expert from the fused weight: it passes the file, and fails one written with each expert's halves swapped."""
    import dataclasses

    from core.gguf_export import tensor_check

    model = moe(tokenizer)
    plan = tiny.plan(model, tokenizer, "q8_0")
    path = writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    problems, figures = tensor_check.check(path, plan, model.state_dict(), Progress())
    assert problems == [] and 0 < figures["tensor_error"]["q8_0"] < 0.015

    def swapped(rows: slice) -> slice:  # the gate's rows for the up's and the other way round
        return slice(32, 64) if rows.start == 0 else slice(0, 32)

    plan.tensors = [dataclasses.replace(t, rows=swapped(t.rows)) if t.rows else t for t in plan.tensors]
    writer.write(plan, model.state_dict(), tmp_path / "swapped.gguf", Progress())
    problems, _ = tensor_check.check(tmp_path / "swapped.gguf", tiny.plan(model, tokenizer, "q8_0"),
                                     model.state_dict(), Progress())
    assert len(problems) == 4 and all("_exps.weight reads back" in p for p in problems)
