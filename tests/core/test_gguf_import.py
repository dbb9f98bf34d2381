"""GGUF → Hugging Face folder (core/gguf_import.py through model_source.resolve): exact weights for every
architecture we export, quantized files equal to transformers' own reading rounded to float16, shards,
and damaged files or a full disk stopped with one sentence and no folder left behind."""

import json
import shutil

import numpy as np
import pytest

from core import gguf_import, model_source
from core.errors import DiskFull, IncompleteModel
from core.gguf_export import reader, writer
from core.gguf_export.architectures import lfm2
from core.progress import Progress
from tests.core.gguf_export import tiny
from tests.core.gguf_export.test_architectures import CASES, COMMON, ROWS, THEIRS_CANNOT, row


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path_factory.mktemp("tok")))


OWN_FIELDS = {  # config fields an architecture's file must bring back beyond the shared ones
    "smollm3": ("no_rope_layers",),
    "granite": ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling"),
    "qwen3_5_text": ("head_dim", "layer_types", "linear_conv_kernel_dim", "linear_key_head_dim",
                     "linear_value_head_dim", "linear_num_key_heads", "linear_num_value_heads"),
    "gemma4_text": ("head_dim", "layer_types", "sliding_window", "per_layer_config", "attention_k_eq_v",
                    "hidden_size_per_layer_input", "vocab_size_per_layer_input", "num_kv_shared_layers",
                    "use_double_wide_mlp", "final_logit_softcapping", "rope_parameters"),
    "lfm2": ("layer_types", "conv_L_cache", "conv_bias"),
    "granitemoehybrid": ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling"),
    "qwen3_moe": ("head_dim", "num_local_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob"),
    "granitemoehybrid-h": ("embedding_multiplier", "residual_multiplier", "attention_multiplier", "logits_scaling",
                           "layer_types", "shared_intermediate_size", "num_local_experts", "position_embedding_type",
                           "mamba_n_heads", "mamba_n_groups", "mamba_d_state", "mamba_d_head", "mamba_d_conv",
                           "mamba_expand", "mamba_conv_bias", "mamba_proj_bias"),
}
OWN_FIELDS["granitemoehybrid-h-rope"] = OWN_FIELDS["granitemoehybrid-h"]


def export(model, tokenizer, quant, path):
    writer.write(tiny.plan(model, tokenizer, quant), model.state_dict(), path, Progress())
    return path


def load(folder):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()


def leftovers(models_dir):
    return sorted(p.name for p in models_dir.iterdir()) if models_dir.exists() else []


@pytest.mark.parametrize("case", ROWS)
def test_an_f32_file_comes_back_exactly(case, tokenizer, tmp_path):
    """Every architecture we export, those transformers' GGUF reader does not know (SmolLM3, Granite, OLMo 2:
    their config is our inverse of export's metadata) included: the same weights, logits and tokens; Granite 4.0's
    dense models as the granite model they are written as (its gate and up projections apart); Qwen3 MoE's fused
    gate_up_proj put back together from ffn_gate_exps and ffn_up_exps; Granite 4.0's hybrids (granitehybrid) as the
    granitemoehybrid model they are, input_linear put back together from ffn_gate and ffn_up."""
    import torch
    from transformers import AutoTokenizer

    model_type, settings = row(case)
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **settings})
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    assert gguf_import.reads_config(reader.read(gguf)) == (model_type in THEIRS_CANNOT)
    ref = model_source.resolve(str(gguf), tmp_path / "models")
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Where is the gold, matey? Arr!"}],
                                         tokenize=False, add_generation_prompt=True)
    theirs = AutoTokenizer.from_pretrained(ref.path)
    assert theirs.chat_template == tokenizer.chat_template
    if model_type not in ("gemma2", "gemma3_text"):  # transformers' Gemma class assumes its own SentencePiece one
        assert theirs(chat)["input_ids"] == tokenizer(chat)["input_ids"]
    loaded = load(ref.path)
    assert loaded.config.tie_word_embeddings == model.config.tie_word_embeddings
    same = ["hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "max_position_embeddings", "vocab_size", "eos_token_id", *OWN_FIELDS.get(case, ())]
    (ours, expected), theirs = tiny.written(model), loaded.config.to_dict()  # Gemma 4's per-layer fields refuse getattr
    if model_type == "lfm2":  # the file states the width the layers have; the config, before its adjustment, 128
        theirs, ours = ({**c, "intermediate_size": lfm2.ff_width(c)} for c in (theirs, ours))
    assert {k: theirs[k] for k in same} == {k: ours[k] for k in same}
    # GGUF stores float32: ours gives back 1e-06, transformers' mapping the float32 itself (9.99999997e-07)
    eps = "norm_eps" if model_type == "lfm2" else "rms_norm_eps"  # LFM2's name for it
    assert getattr(loaded.config, eps) == pytest.approx(getattr(model.config, eps), rel=1e-7)
    assert json.loads((ref.path / "config.json").read_text())["dtype"] == "float32"
    got = loaded.state_dict()
    assert sorted(got) == sorted(expected)
    inexact = [k for k in expected if not torch.equal(got[k], expected[k])]
    # Gemma 2's, 3's and Qwen 3.5's norms travel as weight + 1 (llama.cpp's convention; not Qwen 3.5's gated norm of
    # its linear layers, nor Gemma 4's, which multiply by the weight itself): float32 rounding of the sum, within 1 ulp
    # of 1. (Qwen 3.5's A = -exp(A_log), computed in float64, comes back exactly.)
    offset = model_type in ("gemma2", "gemma3_text", "qwen3_5_text", "qwen3_5_moe_text")
    assert inexact == [k for k in expected if offset and "norm" in k and ".linear_attn.norm." not in k]
    assert all(torch.allclose(got[k], expected[k], rtol=0, atol=2 ** -23) for k in inexact)
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type", sorted(THEIRS_CANNOT - {"gemma4_text"}))  # its own: the test below
@pytest.mark.parametrize("scaling", [{"rope_type": "linear", "factor": 2.0},
                                     {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}])
def test_rope_scaling_comes_back_where_the_config_is_ours(model_type, scaling, tokenizer, tmp_path):
    import torch

    rope = {"rope_theta": 50000.0, **scaling}
    if model_type == "olmo3":  # scaling on the full-attention layers only, as OLMo 3's long-context models have it
        rope = {"full_attention": rope, "sliding_attention": {"rope_type": "default", "rope_theta": 50000.0}}
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **CASES[model_type], "rope_parameters": rope})
    ref = model_source.resolve(str(export(model, tokenizer, "f32", tmp_path / "m.gguf")), tmp_path / "models")
    loaded = load(ref.path)
    for theirs, ours in ([(loaded.config.rope_parameters[t], rope[t]) for t in rope] if model_type == "olmo3" else
                         [(loaded.config.rope_parameters, rope)]):
        assert {k: v for k, v in theirs.items() if k in ours} == ours
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr! " * 8)["input_ids"]])  # past the original 64
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


def test_gemma_4s_rope_factor_comes_back(tokenizer, tmp_path):
    """Gemma 4's full layers divide their proportional rope's frequencies by a factor: llama.cpp's linear scaling,
    which it applies to them alone; the sliding layers keep theirs."""
    import torch

    rope = {"full_attention": {"rope_type": "proportional", "rope_theta": 50000.0, "partial_rotary_factor": 0.25,
                               "factor": 2.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}
    model = tiny.random_model("gemma4_text", tokenizer, **{**COMMON, **CASES["gemma4_text"], "rope_parameters": rope})
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    assert reader.read(gguf).metadata["gemma4.rope.scaling.type"] == "linear"
    loaded = load(model_source.resolve(str(gguf), tmp_path / "models").path)
    assert loaded.config.rope_parameters == rope
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr! " * 4)["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


def test_a_gemma_4_file_whose_full_layers_have_values_comes_back(tokenizer, tmp_path):
    """No key says whether Gemma 4's full layers use their keys as values: the file's attn_v tensors do. The table's
    case has none (attention_k_eq_v); here they have their own, with the sliding layers' key heads."""
    import torch

    settings = {**COMMON, **CASES["gemma4_text"], "attention_k_eq_v": False, "num_global_key_value_heads": None}
    model = tiny.random_model("gemma4_text", tokenizer, **settings)
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    assert "blk.3.attn_v.weight" in {t.name for t in reader.read(gguf).tensors}
    loaded = load(model_source.resolve(str(gguf), tmp_path / "models").path)
    assert not loaded.config.attention_k_eq_v
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "low_freq_factor": 1.0}
KEPT_AS_TENSORS = {  # rope settings llama.cpp keeps as tensors: (model type, config, the tensor)
    "llama 3.2": ("llama", dict(rope_parameters={**LLAMA3, "factor": 32.0, "high_freq_factor": 4.0,
                                                 "original_max_position_embeddings": 64}), "rope_freqs.weight"),
    # another original context and step: found from the line the step's factors lie on (64-wide heads)
    "llama 3, other step": ("llama", dict(hidden_size=256, rope_parameters={**LLAMA3, "factor": 8.0,
                                                                           "high_freq_factor": 2.5,
                                                                           "original_max_position_embeddings": 96}),
                            "rope_freqs.weight"),
    "phi-3.5 long context": ("phi3", dict(original_max_position_embeddings=64, rope_parameters={
        "rope_type": "longrope", "rope_theta": 10000.0, "long_factor": [1.0 + i for i in range(8)],
        "short_factor": [1.0 + 0.1 * i for i in range(8)]}), "rope_factors_long.weight"),
}


@pytest.mark.parametrize("case", sorted(KEPT_AS_TENSORS))
def test_rope_settings_kept_as_tensors_come_back_into_the_config(case, tokenizer, tmp_path):
    """llama.cpp keeps Llama 3's rope scaling and Phi-3's long-context factors as tensors, which transformers'
    GGUF mapping does not read: such files (every Llama 3.1 and 3.2 GGUF) once failed as 'damaged'."""
    import torch

    model_type, settings, tensor = KEPT_AS_TENSORS[case]
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **settings})
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    assert tensor in {t.name for t in reader.read(gguf).tensors}
    loaded = load(model_source.resolve(str(gguf), tmp_path / "models").path)
    assert loaded.config.rope_parameters["rope_type"] == settings["rope_parameters"]["rope_type"]
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr! " * 12)["input_ids"]])  # past the original context
    assert ids.shape[1] > 96
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


MISSED_KEYS = {  # settings a file states in keys transformers' GGUF mapping does not read: once refused or wrong
    "qwen3 heads of 32": ("qwen3", {"head_dim": 32}),  # attention.key_length: refused as damaged (class default 128)
    "phi-4 mini partial rope": ("phi3", {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                             "partial_rotary_factor": 0.5}}),  # silently roped all
    # rope.scaling.*, read for gpt-oss alone: silently lost
    "llama linear rope": ("llama", {"rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}}),
    "qwen3 yarn rope": ("qwen3", {"head_dim": 128, "rope_parameters": {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64}}),
    # query_pre_attn_scalar is in no key: llama.cpp takes the width over the heads for the 27B model (known by its
    # depth: 46 layers), which transformers' class default (256) silently replaced
    "gemma 2 27b attention scale": ("gemma2", {**CASES["gemma2"], "num_hidden_layers": 46, "head_dim": 32,
                                               "query_pre_attn_scalar": 16}),
    "gemma 3 linear on its global layers": ("gemma3_text", {**CASES["gemma3_text"], "num_hidden_layers": 6,
                                                            "rope_parameters": {  # its sixth layer is global
        "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}),
    # transformers' lfm2 mapping writes the default rope whatever the file says
    "lfm2 linear rope": ("lfm2", {**CASES["lfm2"], "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                                                       "factor": 4.0}}),
    "lfm2 yarn rope": ("lfm2", {**CASES["lfm2"], "rope_parameters": {
        "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 8}}),
}


@pytest.mark.parametrize("case", sorted(MISSED_KEYS))
def test_settings_in_keys_transformers_mapping_misses_are_the_models(case, tokenizer, tmp_path):
    import torch

    model_type, settings = MISSED_KEYS[case]
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **settings})
    ref = model_source.resolve(str(export(model, tokenizer, "f32", tmp_path / "m.gguf")), tmp_path / "models")
    loaded = load(ref.path)
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


def test_rope_factors_no_setting_gives_are_refused_in_a_sentence(tokenizer, tmp_path):
    from core.gguf_export.architectures.llama import llama3_settings

    model_type, settings, _ = KEPT_AS_TENSORS["llama 3.2"]
    plan = tiny.plan(tiny.random_model(model_type, tokenizer, **{**COMMON, **settings}), tokenizer, "f32")
    plan.extra["rope_freqs.weight"] = plan.extra["rope_freqs.weight"][::-1].copy()  # slow frequencies sped up
    assert llama3_settings(plan.extra["rope_freqs.weight"], 500000.0, 16) is None
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **settings})
    writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    with pytest.raises(IncompleteModel, match="rope_freqs.weight hold rope factors that no llama rope setting we know "
                                              "gives; use the model's Hugging Face folder instead"):
        model_source.resolve(str(tmp_path / "m.gguf"), tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_a_model_split_into_parts_comes_back_from_any_part(tokenizer, tmp_path):
    """NAME-00001-of-00003.gguf, ...: every part's tensors, the head untied though its output matrix is in the last
    part (transformers' mapping looks at the first only), named and sized as one model."""
    import torch

    from core import model_listing

    model = tiny.random_model("llama", tokenizer, **{**COMMON, **CASES["llama"]})
    files = tiny.write_parts(tiny.plan(model, tokenizer, "f32"), model.state_dict(), tmp_path / "pirate.gguf", 8)
    assert [f.name for f in files] == [f"pirate-0000{k}-of-00003.gguf" for k in (1, 2, 3)]
    assert "output.weight" not in {t.name for t in reader.read(files[0]).tensors}
    entry = model_listing.describe(str(files[1]), tmp_path / "models")
    assert (entry.label, entry.size_bytes, entry.problem) == ("pirate", sum(f.stat().st_size for f in files), "")
    assert entry.params == sum(p.numel() for p in model.parameters())
    ref = model_source.resolve(str(files[1]), tmp_path / "models")
    assert ref.label == "pirate"
    loaded = load(ref.path)
    assert loaded.config.tie_word_embeddings is False
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("damage, words", [
    ("missing", "is part 1 of 3, and 1 part.s. are not beside it .pirate-00003-of-00003.gguf.; download every part "
                "into the same folder."),
    ("swapped", "pirate-00002-of-00003.gguf: says it is part 3 of 3, where its name says part 2 of 3; the parts are "
                "of different downloads: download them again."),
])
def test_a_model_split_into_parts_with_a_part_missing_or_wrong_is_refused_in_a_sentence(damage, words, tokenizer,
                                                                                        tmp_path):
    model = tiny.random_model("llama", tokenizer, **COMMON)
    files = tiny.write_parts(tiny.plan(model, tokenizer, "q8_0"), model.state_dict(), tmp_path / "pirate.gguf", 8)
    if damage == "missing":
        files[2].unlink()
    else:
        files[1].rename(tmp_path / "aside")
        files[2].rename(files[1])
        (tmp_path / "aside").rename(files[2])
    with pytest.raises(IncompleteModel, match=words):
        model_source.resolve(str(files[0]), tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_a_vision_tower_in_the_file_is_left_out_and_said(tokenizer, tmp_path):
    """As Ollama keeps its vision models: one file, the vision tower (v.*) and its projector (mm.*) beside the
    language model's tensors. The language model is what is tuned."""
    import torch

    model = tiny.random_model("llama", tokenizer, **COMMON)
    plan = tiny.plan(model, tokenizer, "f32")
    for name, shape in (("v.blk.0.attn_q.weight", (8, 8)), ("mm.input_projection.weight", (64, 8))):
        plan.tensors.append(writer.TensorPlan(name, None, shape, "f32", "f32"))
        plan.extra[name] = np.ones(shape, np.float32)
    gguf = writer.write(plan, model.state_dict(), tmp_path / "seeing.gguf", Progress())
    assert gguf_import.vision_tensors(reader.read(gguf)) == 2
    ref = model_source.resolve(str(gguf), tmp_path / "models")
    note = json.loads((ref.path / model_source.SOURCE_NOTE).read_text())
    assert note["left_out"] == "its vision tower (2 tensors): the language model is what is tuned"
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(load(ref.path)(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


def test_a_qwen_3_5_file_as_llama_cpps_converter_writes_it_comes_back(tokenizer, tmp_path, monkeypatch):
    """llama.cpp's converter lists which of Qwen 3.5's layers are linear (attention.recurrent_layers, which llama.cpp
    reads before full_attention_interval, and transformers' mapping not at all) and keeps the released models' draft
    block (multi-token prediction) as a layer past the model's own (nextn_predict_layers): the list is the model's
    layer pattern, and the draft block is left out. Here a pattern no interval gives (full, linear, linear, full),
    written with a wrong interval beside the list, so only the list gives the model its shape."""
    import torch
    from gguf import GGUFValue, GGUFValueType

    from core.gguf_export.architectures import qwen35

    full, linear = "full_attention", "linear_attention"
    model = tiny.random_model("qwen3_5_text", tokenizer, **{**COMMON, **CASES["qwen3_5_text"],
                                                             "layer_types": [full, linear, linear, full]})
    monkeypatch.setattr(qwen35.Qwen35, "check", lambda self, cfg: None)  # we would refuse to export this pattern
    monkeypatch.setattr(qwen35, "interval", lambda cfg: 4)
    plan = tiny.plan(model, tokenizer, "f32")
    plan.kv["qwen35.block_count"] = GGUFValue(5, GGUFValueType.UINT32)
    plan.kv["qwen35.nextn_predict_layers"] = GGUFValue(1, GGUFValueType.UINT32)
    plan.kv["qwen35.attention.recurrent_layers"] = GGUFValue([False, True, True, False, False], GGUFValueType.ARRAY,
                                                             GGUFValueType.BOOL)
    for name, shape in (("blk.4.attn_norm.weight", (64,)), ("blk.4.nextn.eh_proj.weight", (64, 128))):
        plan.tensors.append(writer.TensorPlan(name, None, shape, "f32", "f32"))
        plan.extra[name] = np.ones(shape, np.float32)
    gguf = writer.write(plan, model.state_dict(), tmp_path / "m.gguf", Progress())
    loaded = load(model_source.resolve(str(gguf), tmp_path / "models").path)
    assert (loaded.config.num_hidden_layers, loaded.config.layer_types) == (4, [full, linear, linear, full])
    ids = torch.tensor([tokenizer("Where is the gold, matey? Arr!")["input_ids"]])
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_a_quantized_file_equals_transformers_reading_in_float16(quant, tokenizer, tmp_path):
    """transformers de-quantizes to float32 with the same decoders; we store the folder as float16, which
    holds those values to 11 bits: transformers' weights rounded to float16 must be ours bit for bit."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = tiny.random_model("llama", tokenizer, **{**COMMON, "hidden_size": 256, "intermediate_size": 512})
    gguf = export(model, tokenizer, quant, tmp_path / f"m.{quant}.gguf")
    ref = model_source.resolve(str(gguf), tmp_path / "models")

    assert json.loads((ref.path / "config.json").read_text())["dtype"] == "float16"
    theirs = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=gguf.name, dtype=torch.float32).state_dict()
    ours = load_file(str(ref.path / "model.safetensors"))
    assert set(ours) <= set(theirs) and len(ours) == len(model.state_dict())
    assert {str(t.dtype) for t in ours.values()} == {"torch.float16"}  # the float32 norms too: one dtype
    assert [k for k, t in ours.items() if not torch.equal(theirs[k].to(t.dtype), t)] == []
    ours = load(ref.path).state_dict()
    # and the quantization really changed the weights (the check above is not comparing a model with itself)
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(ours[name], model.state_dict()[name])


@pytest.mark.parametrize("quant, dtype", [("q4_k_m", "float16"), ("bf16", "bfloat16")])
def test_the_folder_is_one_dtype_so_a_loaded_model_keeps_no_view_of_the_file(quant, dtype, tokenizer, tmp_path):
    """llama.cpp writes norms as float32 beside 16-bit or quantized matrices. Stored so, the norms of a model
    loaded in float32 would stay views of the memory-mapped file and keep all of it mapped (counted in the
    trainer's RAM: 0.27 GB for the default model) while every other tensor is a copy."""
    from gguf import GGMLQuantizationType

    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = export(model, tokenizer, quant, tmp_path / f"m.{quant}.gguf")
    assert GGMLQuantizationType.F32 in {t.ggml_type for t in reader.read(gguf).tensors}  # the norms
    ref = model_source.resolve(str(gguf), tmp_path / "models")
    assert json.loads((ref.path / "config.json").read_text())["dtype"] == dtype
    loaded = load(ref.path)
    mapped = [line.split()[-1] for line in open("/proc/self/maps", encoding="utf-8") if str(ref.path) in line]
    assert mapped == [] and {str(p.dtype) for p in loaded.parameters()} == {"torch.float32"}


def test_a_folder_an_older_converter_wrote_is_converted_again_once(tokenizer, tmp_path):
    """Folders from before the one-dtype rule hold float32 beside float16; they are redone on next use, and a
    folder of this converter is reused as it is."""
    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = export(model, tokenizer, "q8_0", tmp_path / "m.gguf")
    ref = model_source.resolve(str(gguf), tmp_path / "models")
    note = ref.path / model_source.SOURCE_NOTE
    assert model_source.converted_by(ref.path) == model_source.CONVERTER
    old = {k: v for k, v in json.loads(note.read_text()).items() if k != "converter"}  # as stop 26 wrote it
    note.write_text(json.dumps(old))
    config = json.loads((ref.path / "config.json").read_text())
    (ref.path / "config.json").write_text(json.dumps({**config, "dtype": "float32"}))

    said = []
    progress = Progress(lambda fraction, text: said.append(text))
    assert model_source.resolve(str(gguf), tmp_path / "models", progress).path == ref.path
    assert json.loads((ref.path / "config.json").read_text())["dtype"] == "float16"
    assert model_source.converted_by(ref.path) == model_source.CONVERTER
    assert "Converting m.gguf into a model folder again: an older Tuneforge converted it" in said
    assert leftovers(tmp_path / "models") == [ref.path.name]
    stamp = (ref.path / "config.json").stat().st_mtime_ns
    model_source.resolve(str(gguf), tmp_path / "models")
    assert (ref.path / "config.json").stat().st_mtime_ns == stamp


def test_a_value_past_float16s_range_keeps_its_tensor_in_float32(tokenizer, tmp_path):
    import torch
    from safetensors.torch import load_file

    model = tiny.random_model("llama", tokenizer, **COMMON)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight[3, 5] = 1e6  # a q8_0 block scale of 7874: the file holds it
    gguf = export(model, tokenizer, "q8_0", tmp_path / "m.gguf")
    ours = load_file(str(model_source.resolve(str(gguf), tmp_path / "models").path / "model.safetensors"))
    big = ours["model.layers.0.mlp.down_proj.weight"]
    assert big.dtype == torch.float32 and big[3, 5] == pytest.approx(1e6, rel=0.01)
    assert ours["model.layers.1.mlp.down_proj.weight"].dtype == torch.float16


@pytest.mark.parametrize("case", ROWS)
def test_untransforms_says_which_tensors_untransform_changes(case, tokenizer):
    """gguf_import reads the tensors `untransforms` leaves alone a chunk at a time, straight into their stored
    dtype: the predicate must agree with what untransform does, tensor by tensor."""
    from core.gguf_export import architectures

    model_type, settings = row(case)
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **settings})
    cfg, state = tiny.written(model)
    arch = architectures.for_config(model.config.to_dict())
    changed = []
    for hf_name, t in state.items():
        name = arch.gguf_name(hf_name, cfg)
        if name is None:
            continue
        values = t.numpy()
        assert arch.untransforms(name, cfg) == (arch.untransform(name, values, cfg) is not values), name
        changed += [name] if arch.untransforms(name, cfg) else []
    assert bool(changed) == (model_type in ("llama", "mistral", "mixtral", "gemma2", "gemma3_text", "smollm3",
                                            "granite", "qwen3_5_text", "qwen3_5_moe_text", "lfm2", "granitemoehybrid"))


def test_a_large_model_is_written_in_shards_with_an_index(tokenizer, tmp_path, monkeypatch):
    import torch

    model = tiny.random_model("qwen2", tokenizer, **COMMON, **CASES["qwen2"])
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    monkeypatch.setattr(gguf_import, "SHARD_BYTES", 64 << 10)
    ref = model_source.resolve(str(gguf), tmp_path / "models")

    shards = sorted(p.name for p in ref.path.glob("*.safetensors"))
    assert len(shards) > 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((ref.path / gguf_import.INDEX).read_text())
    assert set(index["weight_map"].values()) == set(shards)
    tensor_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values() if t is not None)
    assert index["metadata"]["total_size"] == tensor_bytes - model.lm_head.weight.numel() * 4  # tied: not stored
    alone = {s for s in shards if list(index["weight_map"].values()).count(s) == 1}
    # a shard keeps to the limit (plus its JSON header) unless one tensor alone is larger
    assert all((ref.path / s).stat().st_size <= (64 << 10) + 4096 for s in set(shards) - alone)
    assert any((ref.path / s).stat().st_size > 64 << 10 for s in alone)  # the 384 x 64 embedding: 96 KiB
    got = load(ref.path).state_dict()
    assert all(torch.equal(got[k], t) for k, t in model.state_dict().items())


def cut_short(gguf, keep):
    data = gguf.read_bytes()
    gguf.write_bytes(data[:keep(len(data))] or b"<html>Not found</html>")


@pytest.mark.parametrize("damage,words", [
    (lambda n: n - 1000, "is cut short"),
    (lambda n: 40, "its header is damaged"),
    (lambda n: 0, "is not a GGUF file"),
])
def test_a_damaged_file_is_one_sentence_and_leaves_no_folder(damage, words, tokenizer, tmp_path):
    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    cut_short(gguf, damage)
    with pytest.raises(IncompleteModel) as e:
        model_source.resolve(str(gguf), tmp_path / "models")
    assert str(gguf) in str(e.value) and "\n" not in str(e.value)
    assert words in str(e.value)
    assert leftovers(tmp_path / "models") == []


def test_a_tensor_type_gguf_does_not_know_is_named(tokenizer, tmp_path):
    import struct

    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    data = bytearray(gguf.read_bytes())
    name = b"output_norm.weight"  # in the tensor table: length, name, dims count, dims, type, offset
    at = data.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    (n_dims,) = struct.unpack_from("<I", data, at)
    struct.pack_into("<I", data, at + 4 + 8 * n_dims, 250)
    gguf.write_bytes(bytes(data))
    with pytest.raises(IncompleteModel, match="tensor output_norm.weight is of GGML type 250, which this version"):
        model_source.resolve(str(gguf), tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_truncation_is_caught_by_our_check_before_any_tensor_is_read(tokenizer, tmp_path):
    """A file cut inside its tensor data still has a readable header (transformers reads the config from
    it): our size check must be what stops it, naming both sizes."""
    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    cut_short(gguf, lambda n: n - 1000)
    with pytest.raises(IncompleteModel, match=r"is cut short \([\d,]+ bytes of the [\d,]+"):
        model_source.resolve(str(gguf), tmp_path / "models")


def test_a_tensor_of_the_wrong_shape_is_named(tokenizer, tmp_path):
    from transformers import AutoConfig

    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    config = AutoConfig.from_pretrained(str(tmp_path), gguf_file=gguf.name)
    config.intermediate_size = 96  # as if the metadata and the tensors disagreed
    with pytest.raises(IncompleteModel, match=r"tensor blk\.0\.ffn_\w+\.weight is \[\d+, \d+\] where the config asks"):
        gguf_import.plan(gguf, reader.read(gguf), config)


def test_a_full_disk_is_found_before_writing(tokenizer, tmp_path, monkeypatch):
    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = export(model, tokenizer, "f32", tmp_path / "m.gguf")
    real = shutil.disk_usage
    monkeypatch.setattr(gguf_import.shutil, "disk_usage", lambda p: real(p)._replace(free=100 << 20))
    with pytest.raises(DiskFull, match=r"the model folder needs about 0\.\d GiB .* which has 0\.1 GiB free"):
        model_source.resolve(str(gguf), tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_the_bundled_model_answers_after_conversion(default_model_dir):
    """The default Q4_1 file through our import: still SmolLM2, which knows where Paris is."""
    import torch
    from transformers import AutoTokenizer

    assert json.loads((default_model_dir / "config.json").read_text())["dtype"] == "float16"
    tok = AutoTokenizer.from_pretrained(str(default_model_dir))
    model = load(default_model_dir)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])


def test_transformers_parses_the_metadata_once_and_leaves_no_patch_behind(tokenizer, tmp_path, monkeypatch):
    """AutoConfig and AutoTokenizer each parse the whole metadata with gguf's reader (3 s apiece for a
    49,152-token vocabulary): the conversion lets the second reuse the first."""
    import gguf
    from transformers import modeling_gguf_pytorch_utils

    readers = []
    original = gguf.GGUFReader.__init__
    monkeypatch.setattr(gguf.GGUFReader, "__init__", lambda self, *a, **k: readers.append(a) or original(self, *a, **k))
    before = modeling_gguf_pytorch_utils.load_gguf_checkpoint
    gguf_file = export(tiny.random_model("llama", tokenizer, **COMMON), tokenizer, "q8_0", tmp_path / "m.gguf")
    ref = model_source.resolve(str(gguf_file), tmp_path / "models")
    assert len(readers) == 1 and (ref.path / "tokenizer.json").is_file()
    assert modeling_gguf_pytorch_utils.load_gguf_checkpoint is before

