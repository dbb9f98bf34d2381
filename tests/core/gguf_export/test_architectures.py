"""Every registered architecture, one table: a tiny random model written as f32 and f16, read back.

f32 through transformers' GGUF loader (its own name map, de-permutation and norm offsets) must give
the HF model's logits; f16 through our own reader (our dequantization and inverse transforms) must give
the logits of the HF model rounded to f16 the same way. The layout and metadata are checked against
the plan, and each architecture's own metadata is looked for by key.
"""

import numpy as np
import pytest

from core.gguf_export import architectures, compare, verify, writer
from core.progress import Progress
from tests.core.gguf_export import tiny

COMMON = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=256)
# Settings chosen as the released models have them, where transformers' GGUF reader assumes them:
# Qwen3's head size is 128 (the reader ignores attention.key_length), Gemma's 256 with a matching
# query_pre_attn_scalar (neither is stored in GGUF; llama.cpp derives the scale from the head size).
CASES = {
    "llama": dict(tie_word_embeddings=False),
    "mistral": dict(sliding_window=None),
    "qwen2": dict(tie_word_embeddings=True),
    "qwen3": dict(head_dim=128),
    "gemma2": dict(head_dim=256, query_pre_attn_scalar=256, sliding_window=64),
    "gemma3_text": dict(head_dim=256, query_pre_attn_scalar=256, sliding_window=64),
    "phi3": dict(),
    "smollm3": dict(num_hidden_layers=4),  # its fourth layer without rope, as llama.cpp has it
    "granite": dict(embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.0078125,
                    logits_scaling=8.0, tie_word_embeddings=True),  # Granite 3's scales
    "olmo2": dict(tie_word_embeddings=False, rms_norm_eps=1e-6),  # as OLMo 2 1B and 7B have it
    "olmo3": dict(tie_word_embeddings=False, rms_norm_eps=1e-6, num_hidden_layers=4, sliding_window=8),  # 3 of 4
    # three linear layers and a full one; two key heads for four value heads, so their order in llama.cpp matters;
    # 32-wide heads roped over 8, which the default mrope sections (11, 11, 10: 32 in all) just fit
    "qwen3_5_text": dict(num_hidden_layers=4, head_dim=32, linear_key_head_dim=8, linear_value_head_dim=8,
                         linear_num_key_heads=2, linear_num_value_heads=4),
    # every feature llama.cpp's gemma4 reads: full layers (3, 5) with heads twice as wide and one key head, used as
    # values too, sliding ones over 8 tokens; per-layer inputs (as E2B's, their vocabulary the tokenizer's),
    # the last two layers reusing the keys and values of layers 2 and 3, with a double-wide MLP; the final soft cap
    "gemma4_text": dict(num_hidden_layers=6, head_dim=16, global_head_dim=32, sliding_window=8,
                        layer_types=["sliding_attention"] * 3 + ["full_attention", "sliding_attention",
                                                                 "full_attention"],
                        attention_k_eq_v=True, num_global_key_value_heads=1, hidden_size_per_layer_input=16,
                        vocab_size_per_layer_input=384, num_kv_shared_layers=2, use_double_wide_mlp=True,
                        final_logit_softcapping=30.0),
    # convolution and attention layers alternating, as full_attn_idxs gives them; the feed-forward width adjusted as
    # the released models have it (128 → two thirds, rounded up to 256), the kernel three wide, an untied head
    "lfm2": dict(num_hidden_layers=4, full_attn_idxs=[1, 3], tie_word_embeddings=False, norm_eps=1e-6),
    # Granite 4.0 micro's kind (every layer attention, no experts, rope) with Granite 3's scales, written as granite:
    # its feed-forward 96 wide (shared_intermediate_size), not the config's intermediate_size, which nothing uses
    "granitemoehybrid": dict(layer_types=["attention"] * 2, num_local_experts=0, num_experts_per_tok=0,
                             position_embedding_type="rope", shared_intermediate_size=96, embedding_multiplier=12.0,
                             residual_multiplier=0.22, attention_multiplier=0.0078125, logits_scaling=8.0,
                             tie_word_embeddings=True),
    # 4 experts of 32 in every layer, 2 chosen per token and their weights renormalized, as the released models have it
    "qwen3_moe": dict(head_dim=16, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True),
    # Qwen 3.5's layers as its row has them, each with 4 experts of 32 (2 chosen per token) and a shared expert 48
    # wide, so a width read from the wrong key shows
    "qwen3_5_moe_text": dict(num_hidden_layers=4, head_dim=32, linear_key_head_dim=8, linear_value_head_dim=8,
                             linear_num_key_heads=2, linear_num_value_heads=4, num_experts=4, num_experts_per_tok=2,
                             moe_intermediate_size=32, shared_expert_intermediate_size=48),
    # a sliding layer over 8 tokens then a full one, as gpt-oss alternates them; 4 experts of 32, 2 chosen per token;
    # the released models' YaRN (32 × 4096 positions), its ramp's ends rounded as llama.cpp rounds them (truncate:
    # architectures/gpt_oss.py)
    "gpt_oss": dict(head_dim=16, num_local_experts=4, num_experts_per_tok=2, intermediate_size=32, sliding_window=8,
                    max_position_embeddings=131072,
                    rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0, "beta_fast": 32.0,
                                     "beta_slow": 1.0, "original_max_position_embeddings": 4096, "truncate": True}),
    # 4 experts of 32 in every layer (the config's intermediate_size, llama.cpp's feed_forward_length), 2 chosen per
    # token and renormalized, written as llama; the head size stated, without which transformers' Mixtral cannot build
    # YaRN rope (its config's head_dim is None)
    "mixtral": dict(head_dim=16, num_local_experts=4, num_experts_per_tok=2, intermediate_size=32),
    # 4 experts of 32, 2 chosen per token and not renormalized, as the released models have it; a shared expert 48
    # wide beside them, so a width read from the wrong key shows
    "qwen2_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
                      shared_expert_intermediate_size=48),
    # 4 experts of 32, 2 chosen per token and not renormalized; as many key-value heads as heads, as llama.cpp's olmoe
    # reads its K norm as wide as the model
    "olmoe": dict(num_experts=4, num_experts_per_tok=2, intermediate_size=32, num_key_value_heads=4),
}
# rows of a registered model type that another llama.cpp architecture writes: row → (model_type, settings).
# Granite 4.0 H's kind: Mamba2 layers (8 heads of 16 in 2 groups, a state of 16) with one attention layer between,
# no experts, no rope; Granite 3's scales, the feed-forward 96 wide as both of the config's widths say
VARIANTS = {
    "granitemoehybrid-h": ("granitemoehybrid", dict(
        num_hidden_layers=4, layer_types=["mamba", "attention", "mamba", "mamba"], num_local_experts=0,
        num_experts_per_tok=0, position_embedding_type="nope", intermediate_size=96, shared_intermediate_size=96,
        mamba_n_heads=8, mamba_d_state=16, mamba_n_groups=2, mamba_d_conv=4, mamba_chunk_size=8,
        embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.0078125, logits_scaling=8.0,
        tie_word_embeddings=True)),
}
# a hybrid whose two attention layers rope (llama.cpp's rope.scaling.finetuned), its head untied
VARIANTS["granitemoehybrid-h-rope"] = ("granitemoehybrid", {
    **VARIANTS["granitemoehybrid-h"][1], "layer_types": ["mamba", "attention", "attention", "mamba"],
    "position_embedding_type": "rope", "tie_word_embeddings": False})
# Gemma 4's mixture of experts (26B-A4B's kind) on the dense row's layers: 4 experts of 32, 2 chosen per token, beside
# each layer's dense MLP
VARIANTS["gemma4_text-moe"] = ("gemma4_text", {**CASES["gemma4_text"], "enable_moe_block": True, "num_experts": 4,
                                               "top_k_experts": 2, "moe_intermediate_size": 32})
ROWS = sorted(CASES) + sorted(VARIANTS)


def row(name: str) -> tuple[str, dict]:
    """A row's model type and its settings (past COMMON)."""
    return VARIANTS[name] if name in VARIANTS else (name, CASES[name])


# architectures transformers' GGUF reader does not know (or, Gemma 4, reads too little of): ours reads them back
THEIRS_CANNOT = {"smollm3", "granite", "olmo2", "olmo3", "gemma4_text", "granitemoehybrid",
                 "qwen3_moe",  # transformers knows qwen3moe but not its experts' width (expert_feed_forward_length)
                 "gpt_oss",  # nor gpt-oss's expert names (ffn_*_exps) and width
                 "mixtral",  # it reads a llama file as a Llama, without experts
                 "qwen2_moe",  # it knows qwen2moe but neither expert width
                 "olmoe"}
OWN_KEYS = {  # metadata each architecture must carry beyond the shared keys
    "llama": {"llama.rope.dimension_count": 16},
    "mistral": {"llama.rope.dimension_count": 16},
    "qwen2": {},
    "qwen3": {"qwen3.attention.key_length": 128},
    "gemma2": {"gemma2.attention.sliding_window": 64, "gemma2.final_logit_softcapping": 30.0,
               "gemma2.attn_logit_softcapping": 50.0, "gemma2.attention.key_length": 256},
    "gemma3_text": {"gemma3.attention.sliding_window": 64, "gemma3.attention.key_length": 256},
    "phi3": {"phi3.rope.dimension_count": 16, "phi3.rope.scaling.original_context_length": 4096},  # config default
    "smollm3": {"smollm3.rope.dimension_count": 16, "smollm3.block_count": 4},
    "granite": {"granite.embedding_scale": 12.0, "granite.residual_scale": 0.22, "granite.attention.scale": 0.0078125,
                "granite.logit_scale": 8.0, "granite.rope.dimension_count": 16},
    "olmo2": {"olmo2.attention.layer_norm_rms_epsilon": 1e-6, "olmo2.block_count": 2},
    "olmo3": {"olmo2.attention.sliding_window": 8, "olmo2.attention.sliding_window_pattern": [True, True, True, False]},
    "qwen3_5_text": {"qwen35.rope.dimension_count": 8, "qwen35.rope.dimension_sections": [11, 11, 10, 0],
                     "qwen35.full_attention_interval": 4, "qwen35.ssm.conv_kernel": 4, "qwen35.ssm.state_size": 8,
                     "qwen35.ssm.group_count": 2, "qwen35.ssm.time_step_rank": 4, "qwen35.ssm.inner_size": 32,
                     "qwen35.attention.key_length": 32, "qwen35.attention.value_length": 32},
    "gemma4_text": {"gemma4.attention.key_length": 32, "gemma4.attention.key_length_swa": 16,
                    "gemma4.rope.dimension_count": 32, "gemma4.rope.dimension_count_swa": 16,
                    "gemma4.rope.freq_base": 1e6, "gemma4.rope.freq_base_swa": 1e4,
                    "gemma4.attention.head_count_kv": [2, 2, 2, 1, 2, 1],
                    "gemma4.feed_forward_length": [128, 128, 128, 128, 256, 256],
                    "gemma4.attention.sliding_window": 8,
                    "gemma4.attention.sliding_window_pattern": [True, True, True, False, True, False],
                    "gemma4.attention.shared_kv_layers": 2, "gemma4.embedding_length_per_layer_input": 16,
                    "gemma4.final_logit_softcapping": 30.0},
    "lfm2": {"lfm2.attention.head_count_kv": [0, 2, 0, 2], "lfm2.shortconv.l_cache": 3,
             "lfm2.feed_forward_length": 256, "lfm2.attention.layer_norm_rms_epsilon": 1e-6},
    "granitemoehybrid": {"general.architecture": "granite", "granite.feed_forward_length": 96,
                         "granite.embedding_scale": 12.0, "granite.residual_scale": 0.22,
                         "granite.attention.scale": 0.0078125, "granite.logit_scale": 8.0},
    "granitemoehybrid-h": {"general.architecture": "granitehybrid", "granitehybrid.feed_forward_length": 96,
                           "granitehybrid.attention.head_count_kv": [0, 2, 0, 0], "granitehybrid.ssm.conv_kernel": 4,
                           "granitehybrid.ssm.state_size": 16, "granitehybrid.ssm.group_count": 2,
                           "granitehybrid.ssm.inner_size": 128, "granitehybrid.ssm.time_step_rank": 8,
                           "granitehybrid.rope.scaling.finetuned": False, "granitehybrid.embedding_scale": 12.0,
                           "granitehybrid.residual_scale": 0.22, "granitehybrid.attention.scale": 0.0078125,
                           "granitehybrid.logit_scale": 8.0, "granitehybrid.expert_shared_feed_forward_length": 96},
    "granitemoehybrid-h-rope": {"general.architecture": "granitehybrid", "granitehybrid.rope.scaling.finetuned": True,
                                "granitehybrid.attention.head_count_kv": [0, 2, 2, 0],
                                "granitehybrid.rope.dimension_count": 16},
    "gemma4_text-moe": {"gemma4.expert_count": 4, "gemma4.expert_used_count": 2,
                        "gemma4.expert_feed_forward_length": 32, "gemma4.feed_forward_length": [128, 128, 128, 128, 256,
                                                                                              256]},
    "qwen3_moe": {"qwen3moe.expert_count": 4, "qwen3moe.expert_used_count": 2,
                  "qwen3moe.expert_feed_forward_length": 32, "qwen3moe.attention.key_length": 16},
    "qwen3_5_moe_text": {"qwen35moe.expert_count": 4, "qwen35moe.expert_used_count": 2,
                         "qwen35moe.expert_feed_forward_length": 32, "qwen35moe.expert_shared_feed_forward_length": 48,
                         "qwen35moe.rope.dimension_count": 8, "qwen35moe.rope.dimension_sections": [11, 11, 10, 0],
                         "qwen35moe.full_attention_interval": 4, "qwen35moe.ssm.state_size": 8,
                         "qwen35moe.ssm.group_count": 2, "qwen35moe.ssm.time_step_rank": 4,
                         "qwen35moe.ssm.inner_size": 32, "qwen35moe.attention.key_length": 32},
    "gpt_oss": {"gpt-oss.expert_count": 4, "gpt-oss.expert_used_count": 2, "gpt-oss.expert_feed_forward_length": 32,
                "gpt-oss.attention.sliding_window": 8, "gpt-oss.attention.sliding_window_pattern": [True, False],
                "gpt-oss.attention.key_length": 16, "gpt-oss.rope.scaling.factor": 32.0,
                "gpt-oss.rope.scaling.original_context_length": 4096},
    "mixtral": {"general.architecture": "llama", "llama.expert_count": 4, "llama.expert_used_count": 2,
                "llama.feed_forward_length": 32, "llama.rope.dimension_count": 16, "llama.attention.key_length": 16},
    "qwen2_moe": {"qwen2moe.expert_count": 4, "qwen2moe.expert_used_count": 2,
                  "qwen2moe.expert_feed_forward_length": 32, "qwen2moe.expert_shared_feed_forward_length": 48},
    "olmoe": {"olmoe.expert_count": 4, "olmoe.expert_used_count": 2, "olmoe.feed_forward_length": 32},
}


def test_the_table_covers_every_registered_architecture():
    assert set(CASES) == set(architectures.REGISTRY) == set(OWN_KEYS) - set(VARIANTS)
    assert {model_type for model_type, _ in VARIANTS.values()} <= set(CASES)
    assert {t for t, a in architectures.REGISTRY.items() if not a.transformers_reads} == THEIRS_CANNOT


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path_factory.mktemp("tok")))


def export(model, tokenizer, quant, path):
    plan = tiny.plan(model, tokenizer, quant)
    writer.write(plan, model.state_dict(), path, Progress())
    return plan


@pytest.mark.parametrize("case", ROWS)
def test_round_trip(case, tokenizer, tmp_path):
    import torch
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM

    model_type, settings = row(case)
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **settings})
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        expected = model(ids).logits

    plan = export(model, tokenizer, "f32", tmp_path / "m.f32.gguf")
    assert verify.check_layout(tmp_path / "m.f32.gguf", plan) == []
    fields = GGUFReader(tmp_path / "m.f32.gguf").fields
    for key, value in OWN_KEYS[case].items():
        assert fields[key].contents() == (pytest.approx(value) if isinstance(value, float) else value), key
    if model_type in THEIRS_CANNOT:  # verification says it read the file with our own reader
        loaded, how = verify.load(tmp_path / "m.f32.gguf", plan, model)
        assert "read with our own dequantization" in how
    else:
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.f32.gguf", dtype=torch.float32).eval()
    assert compare.same_shapes(loaded, model)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), expected.numpy(), rtol=0, atol=1e-5)
    # the file's tokenizer passes verification's check (it once failed every architecture transformers does not
    # read); transformers' Gemma class assumes its own SentencePiece vocabulary, not this byte-level one
    checks = []
    if model_type not in ("gemma2", "gemma3_text"):  # Gemma 4's reads as a plain fast tokenizer, as ours builds it
        assert verify.check_tokenizer(tmp_path / "m.f32.gguf", plan, tokenizer, checks) == [] and len(checks) == 1

    plan = export(model, tokenizer, "f16", tmp_path / "m.f16.gguf")
    ours = verify.own_load(tmp_path / "m.f16.gguf", plan, model)
    compare.round_like_file(model, plan)
    with torch.no_grad():
        np.testing.assert_allclose(ours(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


def test_llama_3_rope_scaling_becomes_rope_freqs(tokenizer, tmp_path):
    """llama.cpp reads Llama 3.1's rope scaling as per-frequency factors: they must turn the plain rope
    frequencies into the ones transformers computes for "llama3". transformers' GGUF reader ignores
    them, so verification reads such a file with our own reader and says so."""
    import torch
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    model = tiny.random_model("llama", tokenizer, **COMMON, rope_parameters=rope)
    plan = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    factors = plan.extra["rope_freqs.weight"]
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](model.config, "cpu")
    plain = 1.0 / (500000.0 ** (torch.arange(0, 16, 2, dtype=torch.float64) / 16))
    np.testing.assert_allclose(plain.numpy() / factors, scaled.double().numpy(), rtol=1e-6)
    _, how = verify.load(tmp_path / "m.gguf", plan, model)
    assert "read with our own dequantization" in how and "rope" in how


@pytest.mark.parametrize("case,settings,words", [
    ("smollm3", dict(no_rope_layers=[1, 1, 0, 1]),
     "This SmolLM3 model leaves rope out of layers 2, and llama.cpp leaves it out of every fourth (3)"),
    ("smollm3", dict(use_sliding_window=True, sliding_window=64), "This SmolLM3 model attends through a sliding"),
    ("granite", dict(head_dim=32), "This Granite model's heads are 32 wide, and llama.cpp makes them 16"),
    ("gemma2", dict(head_dim=32, query_pre_attn_scalar=16),  # the width over the heads, but not the 27B's depth
     "This gemma2 model scales attention by query_pre_attn_scalar=16, and llama.cpp by 32 for a model of its shape"),
    ("gemma3_text", dict(sliding_window=64, layer_types=["sliding_attention", "full_attention"] * 2),
     "This Gemma 3 model attends globally in layers 1, 3, and llama.cpp in every 6th"),
    ("gemma3_text", dict(rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 50000.0},
                                          "full_attention": {"rope_type": "default", "rope_theta": 1e6}}),
     "This Gemma 3 model's local layers rope with base 50000, and llama.cpp's with 10000"),
    ("qwen3_5_text", dict(layer_types=["full_attention", "linear_attention", "linear_attention", "full_attention"]),
     "This Qwen 3.5 model attends fully in layers 0, 3, and llama.cpp only every Nth layer"),
    ("qwen3_5_text", dict(linear_value_head_dim=16),
     "This Qwen 3.5 model's linear attention has keys 8 and values 16 wide, and llama.cpp reads one width"),
    ("qwen3_5_text", dict(attention_bias=True), "This Qwen 3.5 model has attention biases"),
    ("qwen3_5_text", dict(head_dim=16),  # the default sections, 32 pairs in all, past a 16-wide head: ggml stops
     "This Qwen 3.5 model's rope sections [11, 11, 10] do not fit its 16-wide heads rotated over 4"),
    ("qwen3_5_text", dict(rope_parameters={"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                                           "mrope_section": [2, 0, 0]}),  # every other pair given position 0
     "This Qwen 3.5 model's rope sections [2, 0, 0] do not fit its 32-wide heads rotated over 8"),
    ("gemma4_text", dict(attention_bias=True), "This Gemma 4 model has attention biases"),
    ("gemma4_text", dict(layer_types=["full_attention"] * 6, num_kv_shared_layers=0),
     "This Gemma 4 model has no sliding-window layers, and llama.cpp's gemma4 stops loading"),
    ("gemma4_text", dict(use_bidirectional_attention="all"), "This Gemma 4 model attends both ways over text"),
    ("gemma4_text", dict(hidden_activation="gelu"), "This Gemma 4 model's activation is gelu, and llama.cpp's"),
    ("gemma4_text", dict(vocab_size_per_layer_input=512),
     "This Gemma 4 model's per-layer inputs have a vocabulary of 512 and the model one of 384"),
    ("gemma4_text", dict(per_layer_config={"3": {"head_dim": 32}, "5": {"head_dim": 64}}),
     "This Gemma 4 model's full attention layers differ in head_dim (32, 64)"),
    ("gemma4_text", dict(rope_parameters={
        "sliding_attention": {"rope_type": "proportional", "rope_theta": 1e4, "partial_rotary_factor": 0.5},
        "full_attention": {"rope_type": "proportional", "rope_theta": 1e6, "partial_rotary_factor": 0.25}}),
     "This Gemma 4 model ropes its sliding layers as proportional (a share of 0.5, factor 1.0)"),
    ("gemma4_text", dict(layer_types=["sliding_attention", "sliding_attention", "full_attention",
                                      "sliding_attention", "sliding_attention", "full_attention"]),
     "This Gemma 4 model's last 2 layers reuse the keys and values of earlier ones (full from layer 2, sliding from "
     "layer 3), and llama.cpp's of others (full from layer 3, sliding from layer 2)"),
    ("lfm2", dict(conv_bias=True), "This LFM2 model's convolution blocks have biases, and llama.cpp's lfm2 reads none"),
    ("lfm2", dict(full_attn_idxs=[0, 1, 2, 3]),  # transformers' default where a config names no layers
     "This LFM2 model has no convolution layers, and llama.cpp's lfm2 stops"),
    ("lfm2", dict(num_attention_heads=6), "This LFM2 model's 6 heads do not split its width of 64 evenly"),
    ("granitemoehybrid", dict(num_local_experts=4), "This Granite 4.0 model has 4 experts"),
    ("granitemoehybrid", dict(position_embedding_type="nope"), "This Granite 4.0 model's attention has no rope"),
    ("granitemoehybrid", dict(position_embedding_type=None), "This Granite 4.0 model's attention has no rope"),
    ("granitemoehybrid", dict(head_dim=32), "This Granite model's heads are 32 wide, and llama.cpp makes them 16"),
    ("granitemoehybrid-h", dict(num_local_experts=4), "This Granite 4.0 model has 4 experts"),
    ("granitemoehybrid-h", dict(mamba_expand=4), "This Granite 4.0 model's Mamba layers expand its width 4 times"),
    ("granitemoehybrid-h", dict(mamba_proj_bias=True), "This Granite 4.0 model's Mamba projections have biases"),
    ("granitemoehybrid-h", dict(mamba_conv_bias=False), "This Granite 4.0 model's Mamba convolutions have no bias"),
    ("granitemoehybrid-h", dict(time_step_limit=[0.001, 100.0]),
     "This Granite 4.0 model limits its Mamba time step to [0.001, 100.0]"),
    ("granitemoehybrid-h", dict(hidden_act="gelu"), "This Granite 4.0 model's activation is gelu"),
    ("granitemoehybrid-h", dict(head_dim=32), "This Granite model's heads are 32 wide, and llama.cpp makes them 16"),
    ("qwen3_moe", dict(norm_topk_prob=False), "This Qwen3 MoE model leaves the chosen experts' weights unnormalized"),
    ("qwen3_moe", dict(mlp_only_layers=[0, 2]), "This Qwen3 MoE model has layers without experts (0, 2)"),
    ("qwen3_moe", dict(decoder_sparse_step=2), "This Qwen3 MoE model has layers without experts (0, 2)"),
    ("qwen3_moe", dict(shared_expert_intermediate_size=48), "This Qwen3 MoE model has a shared expert"),
    ("qwen3_moe", dict(use_sliding_window=True, sliding_window=64),
     "This Qwen3 MoE model attends through a sliding window"),
    ("qwen3_moe", dict(attention_bias=True), "This Qwen3 MoE model has attention biases"),
    ("qwen3_5_moe_text", dict(shared_expert_intermediate_size=0), "This Qwen 3.5 MoE model has no shared expert"),
    ("qwen3_5_moe_text", dict(hidden_act="gelu"), "This Qwen 3.5 MoE model uses the activation gelu"),
    ("qwen3_5_moe_text", dict(attention_bias=True), "This Qwen 3.5 model has attention biases"),  # qwen35's refusals
    ("gpt_oss", dict(swiglu_limit=10.0), "This gpt-oss model clamps its experts' SwiGLU with alpha 1.702 and limit 10"),
    ("gpt_oss", dict(attention_bias=False), "This gpt-oss model has no attention biases"),
    ("gpt_oss", dict(tie_word_embeddings=True), "This gpt-oss model ties its output head to the embedding"),
    ("gpt_oss", dict(sliding_window=None), "This gpt-oss model has no sliding window"),
    ("gpt_oss", dict(rope_parameters={**CASES["gpt_oss"]["rope_parameters"], "beta_fast": 16.0}),
     "This gpt-oss model ramps YaRN with beta_fast 16 and beta_slow 1"),
    ("gpt_oss", dict(rope_parameters={**CASES["gpt_oss"]["rope_parameters"], "attention_factor": 1.0}),
     "This gpt-oss model scales YaRN's attention otherwise than 0.1·ln(factor) + 1"),
    ("gpt_oss", dict(rope_parameters={**CASES["gpt_oss"]["rope_parameters"], "partial_rotary_factor": 0.5}),
     "This gpt-oss model ropes 0.5 of each head"),
    ("mixtral", dict(sliding_window=64), "This Mixtral model attends through a sliding window of 64 tokens"),
    ("mixtral", dict(hidden_act="gelu"), "This Mixtral model uses the activation gelu"),
    ("mixtral", dict(rope_parameters={"rope_type": "dynamic", "rope_theta": 1e6, "factor": 2.0}),
     "This mixtral model uses 'dynamic' rope scaling"),  # llama.py's refusal
    ("qwen2_moe", dict(norm_topk_prob=True), "This Qwen2 MoE model renormalizes the chosen experts' weights"),
    ("qwen2_moe", dict(mlp_only_layers=[0, 2]), "This Qwen2 MoE model has layers without experts (0, 2)"),
    ("qwen2_moe", dict(decoder_sparse_step=2), "This Qwen2 MoE model has layers without experts (0, 2)"),
    ("qwen2_moe", dict(shared_expert_intermediate_size=0), "This Qwen2 MoE model has no shared expert"),
    ("qwen2_moe", dict(use_sliding_window=True, sliding_window=64),
     "This Qwen2 MoE model attends through a sliding window"),
    ("qwen2_moe", dict(tie_word_embeddings=True), "This Qwen2 MoE model ties its output head to the embedding"),
    ("qwen2_moe", dict(hidden_act="gelu"), "This Qwen2 MoE model uses the activation gelu"),
    ("olmoe", dict(norm_topk_prob=True), "This OLMoE model renormalizes the chosen experts' weights"),
    ("olmoe", dict(num_key_value_heads=2), "This OLMoE model has 2 key-value heads for 4 heads"),
    ("olmoe", dict(clip_qkv=8.0), "This OLMoE model clips its queries, keys and values at 8.0"),
    ("olmoe", dict(attention_bias=True), "This OLMoE model has attention biases"),
    ("olmoe", dict(tie_word_embeddings=True), "This OLMoE model ties its output head to the embedding"),
    ("olmoe", dict(hidden_act="gelu"), "This OLMoE model uses the activation gelu"),
])
def test_settings_llama_cpp_would_run_otherwise_are_refused(case, settings, words):
    """llama.cpp fixes SmolLM3's layers without rope at every fourth and has no sliding window for it; it derives
    Granite's head size from the width; it fixes Gemma 3's global layers at every sixth and its local rope base; it
    derives Gemma's attention scale from the shape; it reads Qwen 3.5's full layers as every Nth, one width for its
    linear keys and values, no attention output bias, and its rope sections as positions for each rotated pair. Its
    gemma4 has no attention biases, needs a sliding layer, attends causally on text, takes ggml's GELU, one
    vocabulary, one head size for each kind of layer, plain rope on sliding layers and fixed layers to share keys and
    values from (and Gemma 4's mixture of experts is not carried yet). Its lfm2 has no biases in the convolution
    blocks, stops on a model without convolution layers and has an attention output as wide as the model. Granite
    4.0's experts are not written (llama.cpp's granitemoe), nor attention without rope in a model without Mamba layers
    (llama.cpp's granite always ropes); its granitehybrid expands the width twice in a Mamba layer, adds a bias after
    the convolution (llama-server crashes on a file without one), has no biases on the projections, no limit on the
    time step, and SiLU.
    Its qwen3moe renormalizes the chosen experts' weights, routes every layer through experts, and has no shared
    expert, sliding window or attention output bias; its qwen35moe, Qwen 3.5's layers, needs a shared expert in every
    layer and uses SiLU in the experts. Its gpt-oss clamps the experts' SwiGLU at 1.702 and 7.0, needs the attention
    output's bias, a head of its own and a sliding window, and ropes whole heads with YaRN's default ramp and scale.
    Its llama with experts (Mixtral) has no sliding window and uses SiLU; its qwen2moe and olmoe never renormalize the
    chosen experts' weights and need a head of their own; qwen2moe routes every layer through experts beside a shared
    expert and has no sliding window; olmoe reads the K norm as wide as the model, clips nothing and has no attention
    output bias."""
    from core.errors import BadArgument

    model_type, given = row(case)
    plain = {**COMMON, "num_hidden_layers": 4, "vocab_size": 384, **given, "model_type": model_type}
    architectures.get(model_type).check(plain)  # the defaults go
    with pytest.raises(BadArgument, match="; export merged safetensors instead.$") as refused:
        architectures.get(model_type).check({**plain, **settings})
    assert str(refused.value).startswith(words)
