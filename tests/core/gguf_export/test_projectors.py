"""The vision projector file (core/gguf_export/projectors/): a Gemma 3, Qwen 3.5, Gemma 4 or Mistral 3 run's export
writes llama.cpp's mmproj file beside the language model, read back here with gguf's own reader: every tensor
llama.cpp's loader (tools/mtmd/clip.cpp; models/siglip.cpp, qwen3vl.cpp, gemma4v.cpp, pixtral.cpp) needs, in the
shape (ggml's order) and type it reads, its keys, and the checkpoint's values (float16 rounding; Gemma 3's
soft-embedding norm + 1; Qwen's patch convolution over two frames cut into one per frame; Gemma 4's patch matrix read
as a convolution's kernel; Pixtral's queries and keys paired for llama.cpp's rope, and its [IMG_BREAK] embedding
taken from the language model), one case per registered projector in one table (CASES). A text model's export
writes none. llama.cpp itself reads the files in benchmarks/llama_cpp_projectors.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core import export
from core.gguf_export import projectors
from core.offload.layerwise import weight_files
from core.progress import Progress
from tests.core import vision_language
from tests.core.gguf_export import tiny
from tests.core.gguf_export.test_vision_language import lora_run

# The tiny Gemma 3's tower: 32 wide, 64 in its MLP, one layer; 2×2 patches of 14 pixels; text 64 wide.
V, FF, TEXT, PATCH = 32, 64, 64, 14
LLAMA_CPP_READS = {  # GGUF name → (shape as ggml's ne, type), as clip.cpp and clip_graph_siglip use them
    "v.patch_embd.weight": ((PATCH, PATCH, 3, V), "F32"), "v.patch_embd.bias": ((V,), "F32"),
    "v.position_embd.weight": ((V, 4), "F32"),
    **{f"v.blk.0.{p}.weight": ((V, V), "F16") for p in ("attn_q", "attn_k", "attn_v", "attn_out")},
    **{f"v.blk.0.{p}.bias": ((V,), "F32") for p in ("attn_q", "attn_k", "attn_v", "attn_out", "ln1", "ln2")},
    "v.blk.0.ln1.weight": ((V,), "F32"), "v.blk.0.ln2.weight": ((V,), "F32"),
    # ffn_up's input is the tower's width; were ffn_down's, llama.cpp would swap the two (clip.cpp's is_ffn_swapped)
    "v.blk.0.ffn_up.weight": ((V, FF), "F16"), "v.blk.0.ffn_up.bias": ((FF,), "F32"),
    "v.blk.0.ffn_down.weight": ((FF, V), "F16"), "v.blk.0.ffn_down.bias": ((V,), "F32"),
    "v.post_ln.weight": ((V,), "F32"), "v.post_ln.bias": ((V,), "F32"),
    # its ne[0] is the width llama.cpp checks against the language model's (clip_n_mmproj_embd)
    "mm.input_projection.weight": ((TEXT, V), "F16"), "mm.soft_emb_norm.weight": ((V,), "F32"),
}
KEYS = {"general.architecture": "clip", "general.type": "mmproj", "clip.projector_type": "gemma3",
        "clip.has_vision_encoder": True, "clip.use_gelu": True, "clip.vision.image_size": 28,
        "clip.vision.patch_size": PATCH, "clip.vision.embedding_length": V, "clip.vision.feed_forward_length": FF,
        "clip.vision.block_count": 1, "clip.vision.attention.head_count": 2, "clip.vision.projection_dim": TEXT,
        "clip.vision.projector.scale_factor": 2, "clip.vision.image_mean": [0.5] * 3,
        "clip.vision.image_std": [0.5] * 3}
CHECKPOINT_NAMES = {"v.patch_embd.weight": "vision_tower.embeddings.patch_embedding.weight",
                    "v.blk.0.attn_q.weight": "vision_tower.encoder.layers.0.self_attn.q_proj.weight",
                    "v.blk.0.ffn_up.weight": "vision_tower.encoder.layers.0.mlp.fc1.weight",
                    "v.post_ln.bias": "vision_tower.post_layernorm.bias",
                    "mm.input_projection.weight": "multi_modal_projector.mm_input_projection_weight",
                    "mm.soft_emb_norm.weight": "multi_modal_projector.mm_soft_emb_norm.weight"}


def read(path):
    from gguf import GGUFReader

    r = GGUFReader(path)
    keys = {name: f.contents() for name, f in r.fields.items()}
    tensors = {t.name: (tuple(int(n) for n in t.shape), t.tensor_type.name, np.array(t.data)) for t in r.tensors}
    return keys, tensors


def checkpoint(folder) -> dict:
    from safetensors import safe_open

    out = {}
    for name, path in weight_files(folder).items():
        with safe_open(str(path), framework="pt") as f:
            out[name] = f.get_tensor(name).float().numpy()
    return out


def check_values(tensors, wants: dict) -> None:
    for gguf_name, want in wants.items():
        got = tensors[gguf_name][2]
        assert got.shape == want.shape, gguf_name
        assert np.array_equal(got, want.astype(got.dtype)), gguf_name  # the same, rounded to the file's type


def gemma3_wants(stored: dict, base=None) -> dict:
    """What Gemma 3's file holds of the checkpoint: its tensors, the soft-embedding norm + 1."""
    return {n: stored[hf] + (1.0 if n == "mm.soft_emb_norm.weight" else 0.0) for n, hf in CHECKPOINT_NAMES.items()}


# The tiny Qwen 3.5's tower: 32 wide, 64 in its MLP, one layer of 2 heads; patches of 16 over 2 frames, merged 2×2;
# a position grid of 48×48 (transformers' default); text 64 wide.
QV, QFF, QTEXT, QPATCH, GRID = 32, 64, 64, 16, 48 * 48
QWEN_READS = {  # GGUF name → (shape as ggml's ne, type), as clip.cpp and clip_graph_qwen3vl use them
    # the 3-D convolution [width, 3, 2 frames, 16, 16] as one 2-D kernel per frame
    "v.patch_embd.weight": ((QPATCH, QPATCH, 3, QV), "F16"), "v.patch_embd.weight.1": ((QPATCH, QPATCH, 3, QV), "F16"),
    "v.patch_embd.bias": ((QV,), "F32"), "v.position_embd.weight": ((QV, GRID), "F32"),
    # the fused query-key-value matrix kept whole: llama.cpp takes its thirds as views
    "v.blk.0.attn_qkv.weight": ((QV, 3 * QV), "F16"), "v.blk.0.attn_qkv.bias": ((3 * QV,), "F32"),
    "v.blk.0.attn_out.weight": ((QV, QV), "F16"), "v.blk.0.attn_out.bias": ((QV,), "F32"),
    **{f"v.blk.0.{p}.{k}": ((QV,), "F32") for p in ("ln1", "ln2") for k in ("weight", "bias")},
    "v.blk.0.ffn_up.weight": ((QV, QFF), "F16"), "v.blk.0.ffn_up.bias": ((QFF,), "F32"),
    "v.blk.0.ffn_down.weight": ((QFF, QV), "F16"), "v.blk.0.ffn_down.bias": ((QV,), "F32"),
    # the merger: its norm on each patch, then two layers on 2×2 patches side by side; mm.2's width is the text's
    "v.post_ln.weight": ((QV,), "F32"), "v.post_ln.bias": ((QV,), "F32"),
    "mm.0.weight": ((4 * QV, 4 * QV), "F16"), "mm.0.bias": ((4 * QV,), "F32"),
    "mm.2.weight": ((4 * QV, QTEXT), "F16"), "mm.2.bias": ((QTEXT,), "F32"),
}
QWEN_KEYS = {"general.architecture": "clip", "general.type": "mmproj", "clip.projector_type": "qwen3vl_merger",
             "clip.has_vision_encoder": True, "clip.use_gelu": True, "clip.vision.image_size": 48 * QPATCH,
             "clip.vision.patch_size": QPATCH, "clip.vision.embedding_length": QV,
             "clip.vision.feed_forward_length": QFF, "clip.vision.block_count": 1,
             "clip.vision.attention.head_count": 2, "clip.vision.projection_dim": QTEXT,
             "clip.vision.spatial_merge_size": 2, "clip.vision.image_mean": [0.5] * 3,
             "clip.vision.image_std": [0.5] * 3}
QWEN_NAMES = {"v.position_embd.weight": "model.visual.pos_embed.weight",
              "v.blk.0.attn_qkv.weight": "model.visual.blocks.0.attn.qkv.weight",
              "v.blk.0.attn_qkv.bias": "model.visual.blocks.0.attn.qkv.bias",
              "v.blk.0.ffn_down.weight": "model.visual.blocks.0.mlp.linear_fc2.weight",
              "v.post_ln.weight": "model.visual.merger.norm.weight",
              "mm.0.weight": "model.visual.merger.linear_fc1.weight",
              "mm.2.bias": "model.visual.merger.linear_fc2.bias"}


def test_a_qwen_tower_llama_cpp_cannot_run_gets_a_sentence():
    """A setting llama.cpp's qwen3vl graph does not take is refused with why, never written wrong."""
    from transformers import Qwen3_5Config

    cfg = Qwen3_5Config(vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2)).to_dict()
    qwen = projectors.REGISTRY["qwen3_5"]
    assert qwen.check(cfg) is None and projectors.REGISTRY["qwen3_5_moe"] is not None
    cfg["vision_config"]["spatial_merge_size"] = 3
    assert "merges 3² patches a token" in qwen.check(cfg)
    cfg["vision_config"] |= {"spatial_merge_size": 2, "deepstack_visual_indexes": [0]}
    assert "deepstack" in qwen.check(cfg)


def test_a_whole_model_run_s_own_tower_is_written(tmp_path):
    """A run that saved the whole model holds the tower too (here another one than the base's): that one is read."""
    from transformers import Gemma3ForConditionalGeneration

    vision_language.gemma3(tmp_path / "base")
    model = Gemma3ForConditionalGeneration.from_pretrained(tmp_path / "base")
    with torch.no_grad():
        for p in model.model.vision_tower.parameters():
            p.mul_(1.5)
    model.save_pretrained(tmp_path / "run" / "result")
    run = {"id": "w1", "run_dir": str(tmp_path / "run"), "model_path": str(tmp_path / "base"), "strategy": "full",
           "status": "done"}
    report = projectors.write(run, tmp_path / "out" / "mmproj.gguf", Progress())
    assert report["written"] and "run's own" in report["vision_tower"]
    check_values(read(tmp_path / "out" / "mmproj.gguf")[1], gemma3_wants(checkpoint(tmp_path / "run" / "result")))


def test_a_text_model_s_export_writes_no_projector(tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "base"))
    base = tiny.random_model("llama", tok, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)
    base.save_pretrained(tmp_path / "base")
    run = tiny.adapter_run(base, tmp_path, tmp_path / "base", ["q_proj", "v_proj"])
    out = export.export(run, "gguf", tmp_path / "gguf", "f16")
    assert "projector" not in json.loads((out / "export.json").read_text())
    assert not list(out.glob("mmproj-*"))


def test_every_layout_s_tower_names_come_to_the_same():
    """llava's layout, transformers 5's, with or without the tower's own `vision_model.` level."""
    for prefix in ("", "model."):
        for level in ("", "vision_model."):
            assert projectors.vision_name(f"{prefix}vision_tower.{level}post_layernorm.weight") == \
                "vision_tower.post_layernorm.weight"
        assert projectors.vision_name(f"{prefix}multi_modal_projector.mm_input_projection_weight") == \
            "multi_modal_projector.mm_input_projection_weight"
        assert projectors.vision_name(f"{prefix}visual.merger.norm.weight") == "visual.merger.norm.weight"  # Qwen's
    assert projectors.vision_name("model.language_model.layers.0.mlp.up_proj.weight") is None


# The tiny Gemma 4's tower: 32 wide, 64 in its gated MLP, one layer of 2 heads 16 wide; patches of 16; position
# tables of 10240 a side (transformers' default); text 64 wide.
GV, GFF, GTEXT, GPATCH, GHEAD, GPOS = 32, 64, 64, 16, 16, 10240
GEMMA4_READS = {  # GGUF name → (shape as ggml's ne, type), as clip.cpp and clip_graph_gemma4v use them
    # the patch matrix [width, 16·16·3] as a convolution's kernel [width, 3, 16, 16]; no bias
    "v.patch_embd.weight": ((GPATCH, GPATCH, 3, GV), "F16"),
    # the columns' table, then the rows': llama.cpp views each half of ne[1] rows
    "v.position_embd.weight": ((GV, GPOS, 2), "F32"),
    **{f"v.blk.0.{p}.weight": ((GV, GV), "F16") for p in ("attn_q", "attn_k", "attn_v", "attn_out")},
    **{f"v.blk.0.{p}.weight": ((GHEAD,), "F32") for p in ("attn_q_norm", "attn_k_norm")},
    **{f"v.blk.0.{p}.weight": ((GV,), "F32") for p in ("ln1", "attn_post_norm", "ln2", "ffn_post_norm")},
    "v.blk.0.ffn_gate.weight": ((GV, GFF), "F16"), "v.blk.0.ffn_up.weight": ((GV, GFF), "F16"),
    "v.blk.0.ffn_down.weight": ((GFF, GV), "F16"),
    # ne[0] the tower's width, ne[1] the text's (clip_n_mmproj_embd)
    "mm.input_projection.weight": ((GV, GTEXT), "F16"),
}
GEMMA4_KEYS = {"general.architecture": "clip", "general.type": "mmproj", "clip.projector_type": "gemma4v",
               "clip.has_vision_encoder": True, "clip.use_gelu": True, "clip.vision.patch_size": GPATCH,
               "clip.vision.embedding_length": GV, "clip.vision.feed_forward_length": GFF,
               "clip.vision.block_count": 1, "clip.vision.attention.head_count": 2,
               "clip.vision.projection_dim": GTEXT, "clip.vision.image_mean": [0.0] * 3,
               "clip.vision.image_std": [1.0] * 3}
GEMMA4_NAMES = {"v.position_embd.weight": "model.vision_tower.patch_embedder.position_embedding_table",
                "v.blk.0.attn_q.weight": "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear.weight",
                "v.blk.0.attn_k_norm.weight": "model.vision_tower.encoder.layers.0.self_attn.k_norm.weight",
                "v.blk.0.ln2.weight": "model.vision_tower.encoder.layers.0.pre_feedforward_layernorm.weight",
                "v.blk.0.attn_post_norm.weight":
                    "model.vision_tower.encoder.layers.0.post_attention_layernorm.weight",
                "v.blk.0.ffn_gate.weight": "model.vision_tower.encoder.layers.0.mlp.gate_proj.linear.weight",
                "v.blk.0.ffn_down.weight": "model.vision_tower.encoder.layers.0.mlp.down_proj.linear.weight",
                "mm.input_projection.weight": "model.embed_vision.embedding_projection.weight"}


def test_gemma4_s_clipped_linears_and_standardization_are_named_as_llama_cpp_reads_them():
    """Settings the tiny model leaves off: each clipped linear's four bounds (scalars in the checkpoint, one-element
    tensors named after their matrix in the file), the tower's standardization, and a model llama.cpp cannot run."""
    from transformers import Gemma4Config

    cfg = Gemma4Config(vision_config=dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                                          num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                          use_clipped_linears=True, standardize=True), audio_config=None).to_dict()
    g4 = projectors.REGISTRY["gemma4"]
    assert g4.check(cfg) is None
    layer = "vision_tower.encoder.layers.0."
    assert g4.gguf_name(layer + "self_attn.o_proj.input_max", cfg) == "v.blk.0.attn_out.input_max"
    assert g4.gguf_name(layer + "mlp.up_proj.output_min", cfg) == "v.blk.0.ffn_up.output_min"
    assert g4.gguf_name("vision_tower.std_scale", cfg) == "v.std_scale"
    required = g4.required(cfg)
    assert "v.blk.0.ffn_down.input_min" in required and "v.std_bias" in required
    assert g4.shape("v.blk.0.attn_q.input_max", ()) == (1,)
    assert g4.transform("v.blk.0.attn_q.input_max", np.array(2.5, dtype=np.float32)).tolist() == [2.5]
    assert projectors.vision_name("model.audio_tower.layers.0.conv.weight") is None  # an audio tower is left out
    cfg["vision_config"]["hidden_activation"] = "silu"
    assert "activation is silu" in g4.check(cfg)


# The tiny Mistral 3's Pixtral tower: 32 wide, 64 in its gated MLP, one layer of 2 heads 16 wide; patches of 14,
# merged 2×2; text 64 wide. Its tokenizer given Mistral's image tokens, as released ones have them.
MV, MFF, MTEXT, MPATCH, MHEAD = 32, 64, 64, 14, 16
MISTRAL3_READS = {  # GGUF name → (shape as ggml's ne, type), as clip.cpp and clip_graph_pixtral use them
    "v.patch_embd.weight": ((MPATCH, MPATCH, 3, MV), "F16"), "v.pre_ln.weight": ((MV,), "F32"),
    **{f"v.blk.0.{p}.weight": ((MV, MV), "F16") for p in ("attn_q", "attn_k", "attn_v", "attn_out")},
    "v.blk.0.ln1.weight": ((MV,), "F32"), "v.blk.0.ln2.weight": ((MV,), "F32"),
    "v.blk.0.ffn_gate.weight": ((MV, MFF), "F16"), "v.blk.0.ffn_up.weight": ((MV, MFF), "F16"),
    "v.blk.0.ffn_down.weight": ((MFF, MV), "F16"),
    # the merger: a norm on each patch, then one matrix on 2×2 patches side by side; mm.2's ne[1] is the text's width
    "mm.input_norm.weight": ((MV,), "F32"), "mm.patch_merger.weight": ((4 * MV, MV), "F16"),
    "mm.1.weight": ((MV, MTEXT), "F16"), "mm.2.weight": ((MTEXT, MTEXT), "F16"),
    # the [IMG_BREAK] token's embedding, which llama.cpp puts after each row of the image's tokens
    "v.token_embd.img_break": ((MTEXT,), "F32"),
}
MISTRAL3_KEYS = {"general.architecture": "clip", "general.type": "mmproj", "clip.projector_type": "pixtral",
                 "clip.has_vision_encoder": True, "clip.use_gelu": True, "clip.vision.image_size": 28,
                 "clip.vision.patch_size": MPATCH, "clip.vision.embedding_length": MV,
                 "clip.vision.feed_forward_length": MFF, "clip.vision.block_count": 1,
                 "clip.vision.attention.head_count": 2, "clip.vision.projection_dim": MTEXT,
                 "clip.vision.spatial_merge_size": 2, "clip.vision.image_mean": [0.48145466, 0.4578275, 0.40821073]}
MISTRAL3_NAMES = {"v.patch_embd.weight": "vision_tower.patch_conv.weight",
                  "v.blk.0.attn_v.weight": "vision_tower.transformer.layers.0.attention.v_proj.weight",
                  "v.blk.0.ln2.weight": "vision_tower.transformer.layers.0.ffn_norm.weight",
                  "mm.input_norm.weight": "multi_modal_projector.norm.weight",
                  "mm.patch_merger.weight": "multi_modal_projector.patch_merger.merging_layer.weight",
                  "mm.2.weight": "multi_modal_projector.linear_2.weight"}
IMAGE_TOKENS = ["[IMG]", "[IMG_BREAK]", "[IMG_END]"]


def mistral3_with_image_tokens(folder, vocab: int):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    tok.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS})
    tok.save_pretrained(folder)
    return vision_language.mistral3(folder, vocab=len(tok))


def test_a_mistral3_without_an_img_break_token_gets_a_sentence(tmp_path):
    """llama.cpp's pixtral projector cannot do without the [IMG_BREAK] embedding: no file, and why."""
    run = lora_run(tmp_path, vision_language.mistral3)
    report = projectors.write(run, tmp_path / "out" / "mmproj.gguf", Progress())
    assert not report["written"] and "no [IMG_BREAK] token" in report["why"]
    assert not (tmp_path / "out" / "mmproj.gguf").exists()


def qwen35_wants(stored: dict, base) -> dict:
    """Its tensors, the patch convolution [width, 3, frames, 16, 16] cut into one kernel per frame."""
    patch = stored["model.visual.patch_embed.proj.weight"]
    return {**{n: stored[hf] for n, hf in QWEN_NAMES.items()},
            "v.patch_embd.weight": patch[:, :, 0], "v.patch_embd.weight.1": patch[:, :, 1]}


def gemma4_wants(stored: dict, base) -> dict:
    """Its tensors, the patch matrix's columns ([row, column, colour] of a patch) as a kernel's colour, row, column."""
    patch = stored["model.vision_tower.patch_embedder.input_proj.weight"].reshape(GV, GPATCH, GPATCH, 3)
    return {**{n: stored[hf] for n, hf in GEMMA4_NAMES.items()}, "v.patch_embd.weight": patch.transpose(0, 3, 1, 2)}


def mistral3_wants(stored: dict, base) -> dict:
    """Its tensors, each head's query and key rows [first half, second half] paired as llama.cpp's 2-D rope takes
    them, and the language model's [IMG_BREAK] row."""
    from transformers import AutoTokenizer

    brk = AutoTokenizer.from_pretrained(base).convert_tokens_to_ids("[IMG_BREAK]")
    wants = {**{n: stored[hf] for n, hf in MISTRAL3_NAMES.items()},
             "v.token_embd.img_break": stored["language_model.model.embed_tokens.weight"][brk]}
    for p in ("q", "k"):
        w = stored[f"vision_tower.transformer.layers.0.attention.{p}_proj.weight"]
        wants[f"v.blk.0.attn_{p}.weight"] = w.reshape(2, 2, MHEAD // 2, MV).swapaxes(1, 2).reshape(MV, MV)
    return wants


# model → (its tiny checkpoint, what llama.cpp reads, the keys, the tower's norm epsilon, the report's note on what
# was assumed or None, the values the file holds from the checkpoint's tensors)
CASES = {
    "gemma3": (vision_language.gemma3, LLAMA_CPP_READS, KEYS, 1e-6, "Gemma 3's (mean and std 0.5)", gemma3_wants),
    "qwen3_5": (vision_language.qwen3_5, QWEN_READS, QWEN_KEYS, 1e-6, "Qwen 3.5's (mean and std 0.5)", qwen35_wants),
    "gemma4": (vision_language.gemma4, GEMMA4_READS, GEMMA4_KEYS, 1e-6, None, gemma4_wants),  # (no audio tower)
    "mistral3": (mistral3_with_image_tokens, MISTRAL3_READS, MISTRAL3_KEYS, 1e-5, "Pixtral's (CLIP's mean and std)",
                 mistral3_wants),
}


def test_every_registered_projector_has_a_case():
    assert {type(p) for p in projectors.REGISTRY.values()} == {type(projectors.REGISTRY[m]) for m in CASES}


@pytest.mark.parametrize("model", sorted(CASES))
def test_each_projector_writes_what_llama_cpp_reads(tmp_path, model):
    build, reads, keys_wanted, eps, note, wants = CASES[model]
    run = lora_run(tmp_path, build)
    out = export.export(run, "gguf", tmp_path / "gguf", "f16")
    report = json.loads((out / "export.json").read_text())["projector"]
    assert report["written"] and report["file"] == f"mmproj-base-{run['id']}.f16.gguf"
    assert report["projector_type"] == keys_wanted["clip.projector_type"] and "--mmproj" in report["why"]
    assert (note in report["note"]) if note else "note" not in report
    assert projectors.said({"projector": report}) == (
        f"Vision: {report['file']} holds the vision tower, the base model's (the run trained the language model): "
        f"give it to llama.cpp with --mmproj {report['file']}; LM Studio uses it beside the model.")
    keys, tensors = read(out / report["file"])
    assert {n: t[:2] for n, t in tensors.items()} == reads and report["tensors"] == len(reads)
    for key, value in keys_wanted.items():
        assert np.allclose(keys[key], value) if key == "clip.vision.image_mean" else keys[key] == value, key
    assert "clip.vision.projector.scale_factor" in keys_wanted or "clip.vision.projector.scale_factor" not in keys
    assert abs(keys["clip.vision.attention.layer_norm_epsilon"] - eps) < eps * 1e-5
    check_values(tensors, wants(checkpoint(tmp_path / "base"), tmp_path / "base"))
    assert sorted(f.name for f in out.glob("mmproj-*")) == [report["file"]]
    assert report["check"].startswith(f"read back as written: {len(reads)} tensors, byte for byte, and ")
    damaged_fails_its_read_back(out / report["file"])


def damaged_fails_its_read_back(file):
    """The read-back of a projector file (as _write makes it, from what was written) catches one byte changed."""
    import hashlib

    from core.errors import KnownError
    from core.gguf_export import projectors as p, reader

    contents = reader.read(file)
    sizes = {t.name: int(np.prod(t.shape)) * (2 if t.ggml_type == 1 else 4) for t in contents.tensors}
    digests = {t.name: hashlib.blake2b(reader.tensor_bytes(file, contents, t, sizes[t.name]).tobytes(),
                                       digest_size=16).digest() for t in contents.tensors}
    planned = [(t.name, t.shape, t.ggml_type, "") for t in contents.tensors]
    assert p._read_back(file, planned, {}, digests, sizes).startswith("read back as written")
    last = contents.tensors[-1]
    with open(file, "r+b") as f:  # one byte of the last tensor's data, flipped
        f.seek(contents.data_start + last.offset)
        byte = f.read(1)
        f.seek(contents.data_start + last.offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(KnownError, match=f"{last.name} reads back other bytes than were written"):
        p._read_back(file, planned, {}, digests, sizes)


def test_a_gguf_base_s_projector_file_beside_it_goes_with_the_export(tmp_path):
    """LM Studio keeps a vision model's projector beside its GGUF; the language model converted from it has no tower,
    which a run leaves as it was: that file (f16 where there are several) goes into the export, the same bytes."""
    from core.model_source import SOURCE_NOTE

    folder, published = tmp_path / "converted", tmp_path / "lmstudio" / "acme" / "seer"
    tiny.byte_level(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "vocab_size": 300,
                                                    "num_hidden_layers": 2, "num_attention_heads": 4}))
    published.mkdir(parents=True)
    (folder / SOURCE_NOTE).write_text(json.dumps({"gguf": str(published / "seer-Q4_K_M.gguf"), "converter": 3}))
    run = {"id": "s1", "model_path": str(folder), "strategy": "lora"}
    assert projectors.write(run, tmp_path / "out1" / "mmproj.gguf", Progress()) is None  # nothing beside it
    for name, body in (("mmproj-seer-bf16.gguf", b"GGUF bf16"), ("mmproj-seer-f16.gguf", b"GGUF f16")):
        (published / name).write_bytes(body)
    (tmp_path / "out2").mkdir()
    report = projectors.write(run, tmp_path / "out2" / "mmproj.gguf", Progress())
    assert report["written"] and report["file"] == "mmproj-seer-f16.gguf" and "beside it" in report["vision_tower"]
    assert (tmp_path / "out2" / "mmproj-seer-f16.gguf").read_bytes() == b"GGUF f16"
    assert projectors.said({"projector": report}).startswith("Vision: mmproj-seer-f16.gguf holds the vision tower, the "
                                                             "base GGUF's")


def test_a_tower_tensor_no_table_names_gets_a_sentence_and_no_file(tmp_path):
    """A checkpoint laid out as we have not seen: no projector (a file without the tensor, or with it unnamed, would be
    one llama.cpp refuses or reads wrong), the sentence saying which tensor; the language model's export stands."""
    from safetensors.torch import load_file, save_file

    vision_language.gemma3(tmp_path / "base")
    shard = tmp_path / "base" / "model.safetensors"
    tensors = load_file(shard)
    tensors["model.vision_tower.vision_model.encoder.layers.0.mystery.weight"] = torch.zeros(2)
    save_file(tensors, shard, metadata={"format": "pt"})
    run = {"id": "u1", "model_path": str(tmp_path / "base"), "strategy": "lora"}
    report = projectors.write(run, tmp_path / "out" / "mmproj.gguf", Progress())
    assert report == {"written": False, "why": "the vision tower holds vision_tower.encoder.layers.0.mystery.weight, "
                      "which our gemma3 projector does not name (a layout not seen before; please report it)"}
    assert not (tmp_path / "out").exists()
    assert projectors.said({"projector": report}) == f"No vision projector: {report['why']}."
