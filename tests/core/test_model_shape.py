"""A model's size from its config (core/model_shape.py) against the model transformers builds from the same config:
the parameters, LoRA's adapters on every linear layer and DoRA's magnitudes, exactly, for a uniform decoder and for
Qwen 3.5's mix of Gated DeltaNet and gated full-attention layers (counted as uniform, 9B came out 0.6 B short)."""

from __future__ import annotations

import pytest

from core.model_shape import ModelShape

SMALL = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=300)
CASES = {
    "llama": dict(model_type="llama", tie_word_embeddings=False, **SMALL),
    "llama-tied": dict(model_type="llama", tie_word_embeddings=True, **SMALL),
    "qwen3_5": dict(model_type="qwen3_5_text", head_dim=16, linear_key_head_dim=8, linear_value_head_dim=12,
                    linear_num_key_heads=2, linear_num_value_heads=4, linear_conv_kernel_dim=3,
                    tie_word_embeddings=False, **SMALL),
}


def built(fields: dict):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**fields)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config), config.to_dict()


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_shape_counts_what_the_model_holds(case):
    from peft import LoraConfig, get_peft_model

    model, config = built(CASES[case])
    shape = ModelShape.from_config(config)
    assert shape.params == sum(p.numel() for p in model.parameters())
    assert shape.linear_layers == (5 if case == "qwen3_5" else 0)  # of 6, the 4th alone attends fully
    decoder = [m for name, m in model.named_modules() if type(m).__name__ == "Linear" and ".layers." in name]
    assert shape.linear_outputs == sum(m.out_features for m in decoder)
    assert shape.linear_params == sum(m.weight.numel() for m in decoder)
    adapted = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    assert shape.lora_params(4) == sum(p.numel() for n, p in adapted.named_parameters() if "lora_" in n)


def test_lisa_counts_the_largest_blocks_it_may_pick():
    _, config = built(CASES["qwen3_5"])
    shape = ModelShape.from_config(config)
    full, delta = shape.block_params(0), shape.block_params(1)  # one full-attention layer of 6
    assert full > delta  # the gated attention's query projection is twice as tall
    assert shape.largest_blocks(3) == full + 2 * delta and shape.largest_blocks(99) == shape.decoder_params


GEMMA4 = dict(model_type="gemma4_text", hidden_size=64, intermediate_size=96, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32, vocab_size=300,
              vocab_size_per_layer_input=300, hidden_size_per_layer_input=16, sliding_window=32)


def test_lisa_counts_gemma_4s_wider_full_attention_layer_as_it_is():
    """Gemma 4's full-attention layers have heads twice as wide as its sliding ones: LISA's largest layer is that
    one, not the layers' mean, and what the layers stream is what they hold."""
    from core.memory_model import layer_weight_bytes

    model, config = built(GEMMA4)
    sizes = sorted((sum(p.numel() for p in layer.parameters()) for layer in model.model.layers), reverse=True)
    shape = ModelShape.from_config(config)
    assert sizes[0] > sizes[-1] and shape.largest_blocks(1) == sizes[0] and shape.largest_blocks(9) == sum(sizes)
    assert layer_weight_bytes(shape, "bf16") == 2 * sum(sizes)


@pytest.mark.parametrize("fields", [GEMMA4, dict(model_type="mixtral", num_local_experts=4, **SMALL)],
                         ids=["gemma4-per-layer-embeddings", "mixtral-experts"])
def test_what_the_blocks_do_not_describe_is_counted_on_the_meta_device(fields):
    """Gemma 4's per-layer embeddings and a mixture's experts are not in the block model: the model transformers
    builds (allocating nothing) is counted instead, so a plan does not 'fit' short of its weights."""
    model, config = built(fields)
    shape = ModelShape.from_config(config)
    assert shape.unmodelled > 0 and shape.params == sum(p.numel() for p in model.parameters())


def test_a_plan_for_linear_attention_does_not_pack_rows():
    """Gated DeltaNet layers carry a state from one row to the next, so packed rows would see each other: the plan
    counts each row as a sequence of its own and says why (the trainer found it too late, by trying)."""
    from core import planner
    from tests.core.test_golden_plans import CHAT_LENGTHS, model, profile

    plan = planner.make_plan(profile("gpu-24gb"), model("qwen3.5-9b"), CHAT_LENGTHS)
    assert not plan.packing and plan.sequences == len(CHAT_LENGTHS)
    assert any("linear-attention layers carry a state" in r for r in plan.reasons)
    assert planner.make_plan(profile("gpu-24gb"), model("llama-3.1-8b"), CHAT_LENGTHS).packing


def test_a_gpu_plan_for_linear_attention_warns_without_its_kernels(monkeypatch):
    """On a GPU without flash-linear-attention, transformers runs Gated DeltaNet in plain PyTorch: the plan says its
    time may be far off; with it, or on the CPU (where the plain code is all there is), it says nothing."""
    import importlib.util

    from core import planner
    from tests.core.test_golden_plans import CHAT_LENGTHS, model, profile

    real = importlib.util.find_spec
    for installed in (False, True):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: (object() if installed else None)
                            if name == "fla" else real(name))
        plan = planner.make_plan(profile("gpu-24gb"), model("qwen3.5-9b"), CHAT_LENGTHS)
        assert (planner.SLOW_LINEAR in plan.warnings) == (not installed)
    cpu = planner.make_plan(profile("cpu-16gb-laptop"), model("qwen3.5-9b"), CHAT_LENGTHS)
    assert planner.SLOW_LINEAR not in cpu.warnings
