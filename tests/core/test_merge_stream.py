"""The merged safetensors export, shard by shard (core/merge_stream.py): for each kind of result it writes
exactly what peft's merge_and_unload of the whole model in float32 gives, reading one shard at a time; DoRA
is left to peft, with the reason."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from core import export, merge_stream
from tests.core.test_offload_stream import four_layers, one_thread, session  # noqa: F401  (fixtures)
from tests.core.test_offload_optimizer import tiny_tokenizer
from tests.core import vision_language
from tests.core.test_strategies import examples, run_steps


def exported(tmp_path, run, strategy: str, name: str):
    tiny_tokenizer(run.cfg.model_path)  # (the export writes the base's tokenizer beside the weights)
    row = {"id": name, "run_dir": run.cfg.run_dir, "strategy": strategy, "model_path": run.cfg.model_path,
           "status": "done"}
    return export.export(row, "safetensors", tmp_path / name)


@pytest.mark.parametrize("strategy,options", [("lora", {"r": 4, "alpha": 8, "rslora": True}),
                                              ("lisa", {"layers": 1, "interval": 1, "embeddings": True})])
def test_the_merge_shard_by_shard_writes_what_peft_merges(four_layers, tmp_path, strategy, options):
    run = session(tmp_path, four_layers, strategy, options, "run", lr=3e-3)
    run_steps(run, examples(vocab=1000), 2)
    run.save_result(tmp_path / "run" / "result")
    out = exported(tmp_path, run, strategy, "merged")
    from core.inference import trained_model

    model = trained_model(four_layers, strategy, tmp_path / "run" / "result", torch.float32)
    expected = (model.merge_and_unload() if strategy == "lora" else model).state_dict()
    written = load_file(str(out / "model.safetensors"))
    assert set(written) == {n for n in expected if n != "lm_head.weight"}  # tied: stored once, as peft saves it
    assert all(torch.equal(written[n], expected[n]) for n in written)
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32" and (out / "tokenizer.json").is_file()


def test_a_sharded_base_is_merged_shard_by_shard_and_dora_is_left_to_peft(four_layers, tmp_path):
    """A base in two shards with an index: each shard comes out merged under its own name, the index's total
    size follows; one shard is in memory at a time. DoRA needs the whole model: the export says so and peft does
    it, with the same result format."""
    run = session(tmp_path, four_layers, "lora", {"r": 4, "alpha": 8}, "run", lr=3e-3)
    run_steps(run, examples(vocab=1000), 1)
    adapter = tmp_path / "run" / "result"
    run.save_result(adapter)
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    tensors = load_file(str(four_layers / "model.safetensors"))
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, str(sharded / file), metadata={"format": "pt"})
    (sharded / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 0}, "weight_map": {n: f for f, part in halves.items() for n in part}}))
    (sharded / "config.json").write_text((four_layers / "config.json").read_text())
    out = tmp_path / "out"
    out.mkdir()
    seen = []
    merge_stream.write(sharded, adapter, out, type("P", (), {"update": lambda self, f, t: seen.append(t)})())
    assert seen == ["Merged shard 1 of 2", "Merged shard 2 of 2"]
    whole = tmp_path / "whole"
    whole.mkdir()
    merge_stream.write(four_layers, adapter, whole)
    merged = load_file(str(whole / "model.safetensors"))
    for file, part in halves.items():
        shard = load_file(str(out / file))
        assert sorted(shard) == sorted(part) and all(torch.equal(shard[n], merged[n]) for n in part)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in merged.values())

    dora = session(tmp_path, four_layers, "dora", {"r": 4, "alpha": 8}, "dora", lr=3e-3)
    dora.save_result(tmp_path / "dora" / "result")
    assert merge_stream.unsupported(four_layers, tmp_path / "dora" / "result") == "DoRA's magnitudes are merged by peft"
    merged_by_peft = exported(tmp_path, dora, "dora", "dora-merged")
    assert (merged_by_peft / "model.safetensors").is_file()
    assert export.said(merged_by_peft).startswith("Weights in float32: peft merged this adapter")


@pytest.mark.parametrize("build,text_type", [(vision_language.qwen3_5, "qwen3_5_text"),
                                             (vision_language.gemma3, "gemma3_text"),
                                             (vision_language.mistral3, "mistral")],
                         ids=["qwen3_5", "gemma3", "mistral3"])
def test_a_vision_language_checkpoint_keeps_its_tower_and_its_language_model_is_merged(tmp_path, build, text_type):
    """Qwen 3.5 (all sizes), Gemma 3 (4B on) and Mistral Small 3.1 are released as vision-language checkpoints, the
    language model under `model.language_model.` or llava's `language_model.model.`; the run trained it under the
    names transformers loads (Mistral 3's by core/causal_lm.py: AutoModelForCausalLM refuses the whole model).
    The export is the whole checkpoint again (tower and config as they were, so it still takes images), with the
    language model's weights merged as peft merges them; the GGUF export's source is the language model alone, by
    its causal LM's names, read shard by shard and saying what it left out."""
    from core.gguf_export import merge
    from core.inference import trained_model
    from core.offload.layerwise import language_name, stored_name

    base = build(tmp_path / "base")
    run = session(tmp_path, base, "lora", {"r": 4, "alpha": 8}, "run", lr=3e-3)
    run_steps(run, examples(vocab=1000), 2)
    run.save_result(tmp_path / "run" / "result")
    out = exported(tmp_path, run, "lora", "merged")

    before, written = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(written) == set(before)
    tower = [n for n in before if "vision_tower." in n or "visual." in n]
    assert tower and all(torch.equal(written[n], before[n]) for n in tower)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == json.loads((base / "config.json").read_text())["architectures"]
    trained = trained_model(base, "lora", tmp_path / "run" / "result", torch.float32).merge_and_unload().state_dict()
    stored = {n: stored_name(n, before) for n in trained if language_name(n) != n or n.startswith("model.layers.")}
    assert stored and all(stored.values())
    assert sum(not torch.equal(before[s], trained[n]) for n, s in stored.items()) > 10  # the merge changed them
    assert all(torch.equal(written[s], trained[n]) for n, s in stored.items())

    row = {"id": "run", "run_dir": run.cfg.run_dir, "strategy": "lora", "model_path": str(base), "status": "done"}
    source = merge.source(row)
    assert "peft merged" not in source.reason and "vision tower" in source.reason
    assert source.cfg["model_type"] == text_type and not any("vision" in n or "visual" in n for n in source.tensors)
    assert all(torch.equal(source.tensors[language_name(n)], trained[n]) for n in stored)


@pytest.mark.parametrize("update, written", [(1.0, "bfloat16"), (1e-3, "float32")], ids=["kept", "rounded-away"])
def test_a_16_bit_base_is_merged_in_its_own_dtype_unless_rounding_would_lose_the_fine_tune(tmp_path, update, written):
    """`auto` writes a bfloat16 base's merge in bfloat16 (half float32's size) where rounding to it keeps the
    fine-tune's change, and float32, saying why, where the change is finer than bfloat16's grid; each weight is the
    float32 merge rounded once; a dtype asked for is written as asked."""
    from core.errors import BadArgument
    from tests.core.gguf_export import tiny
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "base"))
    model = tiny.random_model("llama", tok, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2).to(torch.bfloat16)
    model.save_pretrained(tmp_path / "base")
    run = tiny.adapter_run(model.float(), tmp_path, tmp_path / "base", ["q_proj", "down_proj"])
    adapter = tmp_path / "run" / "result"
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    save_file({n: t * update if "lora_B" in n else t for n, t in weights.items()},
              str(adapter / "adapter_model.safetensors"))
    kept = merge_stream.kept_share(tmp_path / "base", adapter, "bfloat16")
    assert (kept >= merge_stream.KEEP_BAR) == (written == "bfloat16")
    out = export.export(run, "safetensors", tmp_path / "out")
    config, report = (json.loads((out / n).read_text()) for n in ("config.json", "export.json"))
    assert config["dtype"] == report["dtype"] == written
    share = f"keeps {kept:.2%} of what" if written == "bfloat16" else f"would keep {kept:.0%} of what"
    assert report["dtype_why"].startswith(f"Weights in {written}") and share in report["dtype_why"]
    assert report["dtype_why"] in (out / "README.md").read_text()  # the card says it too
    base = load_file(str(tmp_path / "base" / "model.safetensors"))
    deltas = merge_stream._deltas(adapter, set(base))
    merged = load_file(str(out / "model.safetensors"))
    assert all(torch.equal(merged[n], merge_stream.merged(base[n], deltas.get(n)).to(merged[n].dtype))
               for n in base) and {str(t.dtype) for t in merged.values()} == {f"torch.{written}"}
    asked = export.export(run, "safetensors", tmp_path / "asked", dtype="float16")
    assert {t.dtype for t in load_file(str(asked / "model.safetensors")).values()} == {torch.float16}
    with pytest.raises(BadArgument, match="a gguf export takes its type from --quant"):
        export.export(run, "gguf", tmp_path / "g", dtype="float16")
    assert not (tmp_path / "g").exists()
