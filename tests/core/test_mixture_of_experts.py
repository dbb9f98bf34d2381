"""Mixtures of experts (transformers keeps each layer's experts as 3-D weights, `experts.gate_up_proj`): LoRA adapts
the attention and every expert and never the router (core/strategies/lora.py `targets_for`); the plan counts those
adapters as peft makes them (`lora_size`, ModelShape.lora_params: the config's dense MLP width said 1/30 of it for
Qwen3-30B-A3B, a plan 10 GB short); the merged export of such a run answers as the run did, also from a checkpoint
in the released layout of one tensor per expert (which transformers' save_pretrained writes too), which the
shard-by-shard merge cannot read (peft merges it)."""

from __future__ import annotations

import json

import pytest
import torch

from core import export, merge_stream
from core.model_shape import ModelShape
from core.strategies.lora import lora_size, targets_for
from tests.core.test_offload_optimizer import tiny_tokenizer
from tests.core.test_offload_stream import one_thread, session  # noqa: F401  (fixtures)
from tests.core.test_strategies import examples, run_steps

COMMON = dict(vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128)
FAMILIES = {  # model_type → its expert fields: 4 experts of 32, two per token
    "qwen3_moe": dict(moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2, head_dim=16),
    "qwen2_moe": dict(moe_intermediate_size=32, shared_expert_intermediate_size=48, num_experts=4,
                      num_experts_per_tok=2),  # a shared expert (plain linear layers) beside the routed ones
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2),
    "olmoe": dict(num_experts=4, num_experts_per_tok=2),
    "gpt_oss": dict(num_local_experts=4, num_experts_per_tok=2, head_dim=16, intermediate_size=32,
                    sliding_window=32),  # experts stored [experts, in, out], with biases; a router with a bias
    # Gemma 4's 26B-A4B kind: a dense MLP beside the experts in every layer, a router with scales of its own
    "gemma4_text": dict(enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32, head_dim=16,
                        global_head_dim=32, sliding_window=8),
}


def built(model_type: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **{**COMMON, **FAMILIES[model_type]})
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_every_expert_is_adapted_the_router_is_not_and_the_plan_counts_what_peft_makes(model_type):
    from peft import LoraConfig, get_peft_model

    model = built(model_type)
    experts = {n for n, p in model.named_parameters() if p.dim() == 3}
    chosen = targets_for(model, "auto")
    counted = lora_size(model, 4)
    adapted = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", **chosen))
    trained = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == counted
    assert adapted.peft_config["default"].rank_pattern == {}  # no weight at another rank than asked
    assert len(experts) == 4 and sorted(chosen["target_parameters"]) == sorted({".".join(n.split(".")[-2:])
                                                                                 for n in experts})
    assert not any(".gate." in n or "router" in n for n in trained)  # the router stays as pretrained
    assert any("shared_expert." in n for n in trained) == (model_type == "qwen2_moe")
    shape = ModelShape.from_config(model.config.to_dict())  # the plan, from the config alone
    assert shape.lora_params(4) == counted and shape.lora_params(8) == 2 * counted


def test_a_trained_mixture_of_experts_exports_merged_as_it_answers(tmp_path):
    from transformers import AutoModelForCausalLM

    from core.inference import trained_model

    base = tmp_path / "base"
    built("qwen3_moe").save_pretrained(base)
    tiny_tokenizer(base)
    run = session(tmp_path, base, "lora", {"r": 4, "alpha": 8}, "run", lr=3e-3)
    run_steps(run, examples(vocab=1000), 2)
    run.save_result(tmp_path / "run" / "result")
    assert "peft merges adapters on parameters" in merge_stream.unsupported(base, tmp_path / "run" / "result")
    row = {"id": "moe", "run_dir": str(tmp_path / "run"), "strategy": "lora", "model_path": str(base),
           "status": "done"}
    out = export.export(row, "safetensors", tmp_path / "merged")
    ids = torch.tensor([[5, 17, 230, 999, 64, 8]])
    with torch.no_grad():
        tuned = trained_model(base, "lora", tmp_path / "run" / "result", torch.float32)(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(ids).logits
        before = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)(ids).logits
    torch.testing.assert_close(merged, tuned, atol=1e-5, rtol=1e-4)
    assert (tuned - before).abs().max() > 1e-3  # the experts' adapters moved the answer
    assert json.loads((out / "config.json").read_text())["model_type"] == "qwen3_moe"


def test_gemma_4s_linear_router_is_not_adapted_and_its_experts_and_dense_mlp_are_counted():
    """Gemma 4's router is a linear layer (`router.proj`, beside a scale per expert): LoRA's 'auto' targets name the
    decoder's linear layers in full, the router's no longer among them (it was adapted); the plan reads its top-k
    (`top_k_experts`) and counts the dense MLP it keeps beside the experts in what a token goes through."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    moe = dict(enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32)
    config = AutoConfig.for_model("gemma4_text", **COMMON, head_dim=16, global_head_dim=32, sliding_window=8, **moe)
    model = AutoModelForCausalLM.from_config(config)
    chosen, counted = targets_for(model, "auto"), lora_size(model, 4)
    adapted = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", **chosen))
    trained = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert not any("router" in n for n in trained) and any("experts" in n for n in trained)
    assert any(".mlp.gate_proj." in n for n in trained)  # the dense MLP beside the experts is adapted
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == counted
    shape = ModelShape.from_config(config.to_dict())
    assert (shape.experts, shape.experts_used, shape.intermediate) == (4, 2, 2 * 32 + 96)


def test_dora_is_refused_for_a_mixture_of_experts_and_listed_with_why():
    from core import hardware, planner
    from core.errors import BadArgument

    config = built("qwen3_moe").config.to_dict()
    cpu = hardware.HardwareProfile(cores_physical=2, ram_total_bytes=24 << 30, ram_available_bytes=20 << 30)
    with pytest.raises(BadArgument, match="DoRA cannot adapt this mixture of experts' experts: .* 4 experts as one "
                                          "3-D weight; train it with lora"):
        planner.make_plan(cpu, config, [40] * 50, planner.Wishes(strategy="dora"))
    plan = planner.make_plan(cpu, config, [40] * 50)
    dora = next(r for r in plan.rejected if r["strategy"] == "dora")
    assert plan.strategy == "lora" and not dora["fits"] and dora["why"].startswith("DoRA cannot adapt")
    assert any("train on every linear layer and each of its 4 experts a layer" in r for r in plan.reasons)
    dense = planner.make_plan(cpu, config | {"model_type": "qwen3", "num_local_experts": 0},
                              [40] * 50, planner.Wishes(strategy="dora"))
    assert dense.strategy == "dora"  # a dense model of the same size trains it


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_a_layer_lisa_trains_is_counted_with_its_experts(model_type):
    """Each layer with its experts, and nothing from outside the layers: Gemma 4's per-layer embeddings (a table of
    134 M weights in this tiny model) once counted as experts, a layer 67 M. Its full-attention layer is wider than
    its sliding one: each layer is counted on its own (as the layers' mean, the largest came out 10% short)."""
    model = built(model_type)
    sizes = sorted((sum(p.numel() for p in layer.parameters()) for layer in model.model.layers), reverse=True)
    shape = ModelShape.from_config(model.config.to_dict())
    assert [shape.largest_blocks(n) for n in range(1, len(sizes) + 1)] == [sum(sizes[:n]) for n in
                                                                          range(1, len(sizes) + 1)]


@pytest.mark.parametrize("experts", [True, False], ids=["experts-adapted", "experts-frozen"])
def test_a_trained_mixture_of_experts_exports_as_gguf_checked_against_its_answers(tmp_path, experts):
    """A LoRA run of a Qwen3 MoE in the Hub's per-expert layout exports as llama.cpp's qwen3moe: each layer's fused
    gate_up_proj split into ffn_gate_exps and ffn_up_exps by the rows of each expert's matrix, the router kept in
    float32, and the file's answers checked against the trained model's. With adapters on the experts peft merges
    the whole model; with the experts frozen the merge reads a tensor at a time, each layer's experts stacked from
    a tensor per expert (core/expert_checkpoint.py), so a 30B mixture of experts does not load whole (61 GB)."""
    import numpy as np

    from core.gguf_export import reader
    from core.inference import trained_model
    from tests.core.gguf_export import tiny

    base = tmp_path / "base"
    model = built("qwen3_moe")
    model.config.norm_topk_prob = True  # as the released models have it, and llama.cpp's qwen3moe always does
    model.save_pretrained(base)
    tiny.byte_level(base)  # a chat template and a vocabulary llama.cpp reads (padded to the model's 1000 rows)
    run = session(tmp_path, base, "lora", {"r": 4, "alpha": 8, "experts": experts}, "run", lr=3e-3)
    run_steps(run, examples(vocab=1000), 2)
    run.save_result(tmp_path / "run" / "result")
    row = {"id": "moe", "run_dir": str(tmp_path / "run"), "strategy": "lora", "model_path": str(base),
           "status": "done"}
    out = export.export(row, "gguf", tmp_path / "gguf", "f16")
    report = json.loads((out / "export.json").read_text())
    check = report["verification"]
    assert report["architecture"] == "qwen3moe" and check["ok"], check
    assert check["figures"]["greedy_matches"] == check["figures"]["prompts"] == 3
    assert "read with our own dequantization" in " ".join(check["checks"])
    assert ("peft merged the whole model" if experts else "one tensor at a time from the checkpoint's shards") in (
        report["merge"])
    assert report["lora"]["written"] and "equals the adapter's" in report["lora"]["check"]  # the experts' too
    assert (out / report["lora"]["file"]).is_file()

    gguf = next(p for p in out.iterdir() if p.name.endswith(".f16.gguf"))
    contents = reader.read(gguf)
    tensors = {t.name: t for t in contents.tensors}
    assert tensors["blk.1.ffn_gate_exps.weight"].shape == tensors["blk.1.ffn_up_exps.weight"].shape == (4, 32, 64)
    assert tensors["blk.1.ffn_down_exps.weight"].shape == (4, 64, 32)
    assert tensors["blk.1.ffn_gate_inp.weight"].ggml_type == 0  # F32
    merged = trained_model(base, "lora", tmp_path / "run" / "result", torch.float32).merge_and_unload()
    fused = merged.model.layers[1].mlp.experts.gate_up_proj.detach()
    before = built("qwen3_moe").model.layers[1].mlp.experts.gate_up_proj.detach()
    assert ((fused - before).abs().max() > 1e-4) == experts  # the experts' adapters changed them

    def stored(name):
        t = tensors[name]
        raw = reader.tensor_bytes(gguf, contents, t, 2 * int(np.prod(t.shape)))
        return torch.from_numpy(raw.view(np.float16).reshape(t.shape).astype(np.float32))

    torch.testing.assert_close(stored("blk.1.ffn_gate_exps.weight"), fused[:, :32].half().float(), rtol=0, atol=0)
    torch.testing.assert_close(stored("blk.1.ffn_up_exps.weight"), fused[:, 32:].half().float(), rtol=0, atol=0)


@pytest.mark.parametrize("strategy,options", [("qlora", {}), ("offload", {"stream": "always", "where": "ram"})])
def test_over_a_4_bit_or_streamed_base_the_attention_is_adapted_too(tmp_path, strategy, options):
    """QLoRA's and offload's linear layers are bitsandbytes' 4-bit ones (a subclass of torch's): they are targeted as
    the plain ones are. Before, only the experts were adapted there, the attention left as it was."""
    base = tmp_path / "base"
    built("qwen3_moe").save_pretrained(base)
    tiny_tokenizer(base)
    run = session(tmp_path, base, strategy, {"r": 4, "alpha": 8, **options}, "run")
    trained = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in run.model.named_parameters() if p.requires_grad}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "experts"} <= trained, trained
    if strategy == "offload":  # its experts stacked from a tensor per expert as it reads (core/expert_checkpoint.py)
        assert "loaded one layer at a time" in run.model.get_base_model().tuneforge_offload_note
    assert run_steps(run, examples(vocab=1000), 1)[0] > 0


def test_qwen3_30b_a3b_is_planned_by_the_weights_a_token_goes_through():
    """Qwen3-30B-A3B as released (resources/models): 30.5 B weights of which a token goes through 3.3 B (Qwen's own
    figures), which a step's compute scales with (core/speed_model.py); the experts are no linear layers bitsandbytes
    quantizes, so a 4-bit base holds them in 16 bits (57 GB) where they train adapters; frozen, QLoRA keeps them in
    4 bits too (core/four_bit_experts.py), 15 GB."""
    from core import memory_model as mm
    from tests.conftest import REPO

    config = json.loads((REPO / "resources" / "models" / "qwen3-30b-a3b.json").read_text())
    shape = ModelShape.from_config(config)
    assert (shape.experts, shape.experts_used, shape.intermediate) == (128, 8, 8 * 768)
    assert round(shape.params / 1e9, 1) == 30.5 and round(shape.active_params / 1e9, 1) == 3.3
    attention = 48 * 2048 * (2 * 32 * 128 + 2 * 4 * 128)  # q, o and k, v: the only linear layers in a layer
    assert shape.linear_params == attention
    assert mm.weight_bytes(shape, "nf4") > 2 * (shape.params - attention - 2 * 151936 * 2048)
    experts = 48 * 128 * 3 * 768 * 2048  # what the blocks leave out: the experts, and the routers and q/k norms
    assert shape.unmodelled == pytest.approx(experts, rel=1e-3)
    saved = mm.weight_bytes(shape, "nf4") - mm.weight_bytes(shape, "nf4", experts_4bit=True)
    assert saved == pytest.approx(experts * (2 - mm.NF4_BITS / 8), rel=1e-3)
    assert mm.weight_bytes(shape, "nf4", experts_4bit=True) < 17e9


def test_where_the_experts_adapters_do_not_fit_the_experts_stay_frozen():
    """Qwen3-30B-A3B's adapters on every expert are 643 M weights at r=16, about 10 GB with their gradients and
    AdamW's moments: a 12 GB card cannot hold them, so the plan freezes the experts (experts=false) and says so,
    and the count is what peft then makes. A 16 GB card holds them, but only with the 16-bit experts read from
    the disk every step (the machine's 32 GB of RAM cannot hold 57 GB), where frozen 4-bit experts stream from
    RAM, 30 times faster: frozen there too. With RAM for the 16-bit experts the adapters stay."""
    from peft import LoraConfig, get_peft_model

    from core import hardware, plan_text, planner
    from tests.conftest import REPO

    config = json.loads((REPO / "resources" / "models" / "qwen3-30b-a3b.json").read_text())
    small = planner.make_plan(hardware.load(REPO / "resources" / "hardware" / "gpu-12gb.json"), config, [300] * 200)
    assert small.fits and small.options["experts"] is False
    assert any(r.startswith("The experts stay frozen: adapters on each of them") for r in small.reasons)
    sixteen = hardware.load(REPO / "resources" / "hardware" / "gpu-16gb.json")
    in_ram = planner.make_plan(sixteen, config, [300] * 200)
    assert in_ram.fits and in_ram.strategy == "offload" and in_ram.options["experts"] is False
    assert in_ram.options.get("where", "auto") != "disk"
    sixteen.ram_total_bytes = sixteen.ram_available_bytes = 128 << 30
    roomy = planner.make_plan(sixteen, config, [300] * 200)
    assert roomy.fits and roomy.options["experts"] is True and roomy.options.get("where", "auto") != "disk"
    assert roomy.shown_options["experts"] is True and "experts=True" in plan_text.describe(roomy)[1]
    dense = planner.make_plan(sixteen, json.loads((REPO / "resources" / "models" / "llama-3.1-8b.json").read_text()),
                              [300] * 200)  # the setting is kept (a re-plan reads it) but not shown: it means nothing
    assert dense.options["experts"] is True and "experts" not in dense.shown_options
    assert "experts=" not in plan_text.describe(dense)[1] and "experts=" not in plan_text.describe(
        planner.Plan.from_dict(dense.to_dict()))[1]
    assert dense.options["optimizer"] == "auto" and plan_text.describe(dense)[1].endswith(
        f"double_quant=True; optimizer {dense.optimizer}")  # the optimizer once: the one planned
    model = built("qwen3_moe")
    chosen = targets_for(model, "auto", experts=False)
    assert "target_parameters" not in chosen
    adapted = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", **chosen))
    made = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    assert made == lora_size(built("qwen3_moe"), 4, experts=False) < lora_size(built("qwen3_moe"), 4)
    assert ModelShape.from_config(model.config.to_dict()).lora_params(4, experts=False) == made


def test_gemma_4s_router_stays_in_16_bits_under_qlora(tmp_path):
    """Gemma 4's linear router picks each token's experts: QLoRA keeps it as it is (layerwise.UNQUANTIZED), its
    attention and MLP in 4 bits, its frozen experts in 4 bits too."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.four_bit_experts import FourBitStack

    moe = dict(enable_moe_block=True, num_experts=4, top_k_experts=2, moe_intermediate_size=32)
    config = AutoConfig.for_model("gemma4_text", **COMMON, head_dim=16, global_head_dim=32, sliding_window=8, **moe)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "base")
    tiny_tokenizer(tmp_path / "base")
    run = session(tmp_path, tmp_path / "base", "qlora", {"r": 4, "alpha": 8, "experts": False}, "run")
    layer = run.model.get_base_model().model.layers[0]
    assert type(layer.router.proj) is torch.nn.Linear
    assert type(layer.self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    assert isinstance(layer.experts.gate_up_proj, FourBitStack)
    assert run_steps(run, examples(vocab=1000), 1)[0] > 0
