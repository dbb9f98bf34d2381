"""GGUF export of a model larger than RAM (core/gguf_export/merge.py `source`, tensor_check.py): the merged
weights are read a tensor at a time from the checkpoint's shards, the file is the same, byte for byte, as one
written from peft's whole-model merge, and when two copies would not fit in memory each tensor is checked
against the merged weight instead of comparing answers; a damaged tensor fails that check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import export
from core.gguf_export import merge, quants, reader, tensor_check, verify, writer
from core.progress import Progress
from tests.core.gguf_export import tiny

LLAMA = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def lora_run(tmp_path, use_dora: bool = False) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "base"))
    base = tiny.random_model("llama", tok, **LLAMA)
    base.save_pretrained(tmp_path / "base")
    return tiny.adapter_run(base, tmp_path, tmp_path / "base", ["q_proj", "v_proj", "down_proj"], use_dora)


def gguf_file(folder):
    return next(p for p in folder.iterdir() if p.name.endswith(".gguf") and ".lora." not in p.name)


@pytest.fixture
def short_of_memory(monkeypatch):
    """The memory the answer comparison may use, as a machine with a model larger than its RAM would report it;
    the whole model must then never be loaded."""
    from core import inference

    monkeypatch.setattr(verify, "_available", lambda: 1 << 20)

    def refuse(*args, **kwargs):
        raise AssertionError("the whole model was loaded")

    monkeypatch.setattr(inference, "trained_model", refuse)


def test_a_lora_run_is_written_shard_by_shard_and_checked_tensor_by_tensor(tmp_path, short_of_memory):
    run = lora_run(tmp_path)
    out = export.export(run, "gguf", tmp_path / "out", "q8_0", Progress())
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert "one tensor at a time from the checkpoint's shards" in report["merge"]
    check = report["verification"]
    assert check["ok"] and check["figures"]["compared"] is False
    assert 0 < check["figures"]["tensor_error"]["q8_0"] <= tensor_check.ROUND_TRIP["q8_0"]
    assert "each tensor was checked against the merged weight" in " ".join(check["checks"])
    assert (out / f"{gguf_file(out).name.split('.')[0]}.lora.gguf").is_file()


def test_the_file_is_the_one_peft_s_whole_model_merge_gives(tmp_path):
    """Byte for byte: the shard-by-shard merge in float32 and peft's merge_and_unload of the float32 model
    write the same GGUF file; answers are compared as before where memory allows."""
    from transformers import AutoTokenizer

    from core.inference import trained_model

    run = lora_run(tmp_path)
    out = export.export(run, "gguf", tmp_path / "out", "f16", Progress())
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert report["verification"]["figures"]["greedy_matches"] == report["verification"]["figures"]["prompts"]

    model = trained_model(run["model_path"], "lora", tmp_path / "run" / "result", torch.float32).merge_and_unload()
    tok = AutoTokenizer.from_pretrained(run["model_path"])
    source = merge.source(run)
    state = model.state_dict()
    assert set(state) - set(source.shapes) <= {"lm_head.weight"}  # a tied head is stored once
    for name, shape in source.shapes.items():
        assert shape == tuple(state[name].shape) and torch.equal(source.tensors[name], state[name]), name
    plan = tiny.plan(model, tok, "q8_0")
    ours = writer.write(plan, source.tensors, tmp_path / "ours.gguf", Progress())
    peft = writer.write(plan, state, tmp_path / "peft.gguf", Progress())
    assert ours.read_bytes() == peft.read_bytes()


def test_dora_and_the_nf4_base_are_merged_whole_by_peft_with_the_reason(tmp_path):
    run = lora_run(tmp_path, use_dora=True)
    source = merge.source(run)
    assert "DoRA's magnitudes are merged by peft" in source.reason and source.held > 0
    assert isinstance(source.tensors, dict)


def test_a_damaged_tensor_fails_the_tensor_check(tmp_path):
    """One block of one matrix overwritten in the file: the check names that tensor; the rest pass."""
    from transformers import AutoTokenizer

    run = lora_run(tmp_path)
    source = merge.source(run)
    tok = AutoTokenizer.from_pretrained(run["model_path"])
    model = tiny.random_model("llama", tok, **LLAMA)  # for the plan only: the same names and shapes
    plan = tiny.plan(model, tok, "q8_0")
    path = writer.write(plan, source.tensors, tmp_path / "m.gguf", Progress())
    problems, figures = tensor_check.check(path, plan, source.tensors, Progress())
    assert problems == [] and figures["tensor_error"]["q8_0"] > 0
    contents = reader.read(path)
    victim = next(i for i, t in enumerate(plan.tensors) if t.name == "blk.1.attn_q.weight")
    with open(path, "r+b") as f:
        f.seek(contents.data_start + contents.tensors[victim].offset + 34 * 40)
        f.write(bytes(34 * 8))  # eight q8_0 blocks zeroed: their scales become 0
    problems, _ = tensor_check.check(path, plan, source.tensors, Progress())
    assert len(problems) == 1 and problems[0].startswith("blk.1.attn_q.weight reads back")


@pytest.mark.parametrize("name", sorted(quants.TYPES))
def test_each_type_rounds_gaussian_weights_within_its_bar(name):
    """The bar of every registered type holds a healthy tensor with room, and a tensor read from the wrong
    rows fails it."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((64, 512)) * 0.02).astype(np.float32)
    q = quants.get(name)
    back = q.dequantize(q.quantize(w)).reshape(w.shape)
    error = np.sqrt(((back - w) ** 2).sum() / (w ** 2).sum())
    assert error <= tensor_check.ROUND_TRIP[name] / 1.5
    swapped = np.sqrt(((back[::-1] - w) ** 2).sum() / (w ** 2).sum())
    assert swapped > 6 * tensor_check.ROUND_TRIP[name]


def test_a_whole_model_result_is_read_from_its_own_shards(tmp_path, short_of_memory):
    """A run that trained every weight (full, LISA) saved the model itself: its shards are the source, no base
    and no merge, checked tensor by tensor all the same."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "base"))
    tiny.random_model("llama", tok, **LLAMA).save_pretrained(tmp_path / "base")
    trained = tiny.random_model("llama", tok, **LLAMA)
    with torch.no_grad():
        trained.model.layers[0].mlp.down_proj.weight.mul_(1.5)  # unlike the base: the result is what is read
    trained.save_pretrained(tmp_path / "run" / "result")
    run = {"id": "w1", "run_dir": str(tmp_path / "run"), "model_path": str(tmp_path / "base"), "strategy": "full",
           "status": "done"}
    source = merge.source(run)
    assert source.reason.startswith("the run's saved weights") and source.held == 0
    down = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(source.tensors[down], trained.model.layers[0].mlp.down_proj.weight)
    out = export.export(run, "gguf", tmp_path / "out", "q8_0", Progress())
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert report["verification"]["ok"] and report["verification"]["figures"]["compared"] is False
    assert report["lora"]["written"] is False
