"""Mistral Small 3.1 and Ministral 3's vision: a Pixtral tower, then Mistral 3's patch merger and two-layer projector,
as llama.cpp's `pixtral` projector reads them (tools/mtmd/models/pixtral.cpp).

The tower embeds 14- or 16-pixel patches with a convolution, normalizes them (an RMSNorm), runs blocks of a Llama's
shape (RMSNorms, a gated MLP) with a 2-D rotary embedding, and the projector normalizes the patches again, merges
each 2×2 square into one through a matrix, and projects it with two layers into the language model's width. The
processor puts an [IMG_BREAK] token after each row of the image's tokens; llama.cpp adds it itself, from an
embedding the projector file holds. What llama.cpp needs that the checkpoint spells otherwise:

- the queries' and keys' rows reordered for its rotary embedding: transformers rotates each head's first half against
  its second, llama.cpp's 2-D rope rotates neighbouring pairs, so each head's rows are interleaved (as llama.cpp's
  converter does for a Llama's attention);
- the [IMG_BREAK] token's row of the language model's embeddings (`v.token_embd.img_break`), by its id in the base
  model's tokenizer: a tokenizer without that token gets a sentence, not a file;
- the merge's side (`clip.vision.spatial_merge_size`) and the tower's activation (SiLU in Mistral Small 3.1's, GELU
  in Pixtral 12B's: ggml's GELU is the tanh form);
- the image's normalization, which the weights do not say: the processor's settings where the base model ships them,
  else Pixtral's processor's (CLIP's mean and std).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from core.gguf_export.projectors import Projector, add_normalization, add_tower, head_dim, register

LAYER = re.compile(r"vision_tower\.transformer\.layers\.(\d+)\.(.+)\.(weight)$")
LAYER_PARTS = {"attention.q_proj": "attn_q", "attention.k_proj": "attn_k", "attention.v_proj": "attn_v",
               "attention.o_proj": "attn_out", "attention_norm": "ln1", "ffn_norm": "ln2",
               "feed_forward.gate_proj": "ffn_gate", "feed_forward.up_proj": "ffn_up",
               "feed_forward.down_proj": "ffn_down"}
OTHERS = {"vision_tower.patch_conv.weight": "v.patch_embd.weight", "vision_tower.ln_pre.weight": "v.pre_ln.weight",
          "multi_modal_projector.norm.weight": "mm.input_norm.weight",
          "multi_modal_projector.patch_merger.merging_layer.weight": "mm.patch_merger.weight",
          "multi_modal_projector.linear_1.weight": "mm.1.weight", "multi_modal_projector.linear_1.bias": "mm.1.bias",
          "multi_modal_projector.linear_2.weight": "mm.2.weight", "multi_modal_projector.linear_2.bias": "mm.2.bias"}
OPTIONAL = ("mm.1.bias", "mm.2.bias")  # multimodal_projector_bias
BREAK, IMG_BREAK = "v.token_embd.img_break", "[IMG_BREAK]"
EMBEDDINGS = ("language_model.model.embed_tokens.weight", "model.language_model.embed_tokens.weight")
ROTATED = re.compile(r"v\.blk\.\d+\.attn_[qk]\.weight$")
ROPE_THETA = 10000.0  # llama.cpp's graph fixes the tower's rotary base at this
EPS = 1e-5  # Pixtral's RMSNorms: transformers builds them with 1e-5 whatever the config says
# Pixtral's processor's normalization where the base model ships none (transformers' OPENAI_CLIP_MEAN and _STD)
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
ACTIVATIONS = {"gelu": True, "gelu_pytorch_tanh": True, "silu": False}  # the tower's → written as GELU or not


@register
class Mistral3(Projector):
    model_types = ("mistral3",)
    projector_type = "pixtral"

    def __init__(self, head: int | None = None):
        self.head = head  # the tower's heads' width (`configured`): what the rotary reordering cuts rows by

    def configured(self, cfg: dict) -> Projector:
        return type(self)(head_dim(cfg["vision_config"]))

    others, layer, layer_parts, kinds, optional = OTHERS, LAYER, LAYER_PARTS, ("weight",), OPTIONAL

    def required(self, cfg: dict) -> list[str]:
        return super().required(cfg) + [BREAK]

    def check(self, cfg: dict) -> str | None:
        vision = cfg["vision_config"]
        rope = vision.get("rope_parameters") or {}
        theta = float(rope.get("rope_theta", vision.get("rope_theta", ROPE_THETA)))
        problems = [
            (vision.get("hidden_act", "gelu") not in ACTIVATIONS,
             f"its tower's activation is {vision.get('hidden_act')}, and llama.cpp's pixtral graph takes GELU or SiLU"),
            (cfg.get("projector_hidden_act", "gelu") not in ("gelu", "gelu_pytorch_tanh"),
             f"its projector's activation is {cfg.get('projector_hidden_act')}, and llama.cpp's is GELU"),
            (theta != ROPE_THETA, f"its tower's rotary base is {theta:g}, and llama.cpp's pixtral graph fixes "
                                  f"{ROPE_THETA:g}"),
            (cfg.get("vision_feature_layer", -1) not in (-1, [-1]),
             f"it reads the tower's layer {cfg.get('vision_feature_layer')}, and llama.cpp reads its last"),
            (head_dim(vision) % 4 != 0,
             f"its heads are {head_dim(vision)} wide, and llama.cpp's 2-D rotary embedding needs a multiple of 4"),
        ]
        return next((why for bad, why in problems if bad), None)

    def rows(self, cfg: dict, model_path: Path, files: dict[str, Path]) -> dict[str, tuple[str, Path, int]] | str:
        token = _token_id(model_path, IMG_BREAK)
        if token is None:
            return (f"the base model's tokenizer has no {IMG_BREAK} token, whose embedding llama.cpp's pixtral "
                    "projector puts after each row of an image")
        stored = next((n for n in EMBEDDINGS if n in files), None)
        if stored is None:
            return "the checkpoint holds no language-model embeddings to take the [IMG_BREAK] token's from"
        return {BREAK: (stored, files[stored], token)}

    def transform(self, gguf_name: str, array: np.ndarray) -> np.ndarray:
        if ROTATED.match(gguf_name):  # each head's halves [a0 a1 .. b0 b1 ..] → pairs [a0 b0 a1 b1 ..]
            rows, cols = array.shape
            half = self.head // 2
            return array.reshape(rows // self.head, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)
        return array

    def metadata(self, cfg: dict, preprocessor: dict, w: GGUFWriter) -> str | None:
        vision = cfg["vision_config"]
        add_tower(w, cfg, image_size=vision["image_size"], blocks=vision["num_hidden_layers"],
                  heads=vision["num_attention_heads"], eps=EPS,
                  gelu=ACTIVATIONS[vision.get("hidden_act", "gelu")])
        w.add_vision_spatial_merge_size(int(cfg.get("spatial_merge_size", 2)))
        return add_normalization(w, preprocessor, "Pixtral", (CLIP_MEAN, CLIP_STD, "CLIP's mean and std"))


def _token_id(model_path: Path, token: str) -> int | None:
    """A special token's id as the base model's tokenizer files list it (tokenizer_config.json's added tokens, then
    tokenizer.json's); None where neither has it."""
    config, full = model_path / "tokenizer_config.json", model_path / "tokenizer.json"
    if config.is_file():
        added = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder") or {}
        found = [int(i) for i, t in added.items() if t.get("content") == token]
        if found:
            return found[0]
    if full.is_file():
        added = json.loads(full.read_text(encoding="utf-8")).get("added_tokens") or []
        found = [int(t["id"]) for t in added if t.get("content") == token]
        if found:
            return found[0]
    return None
