"""Gemma 3's vision (4B and up): a SigLIP tower, then Gemma 3's projector, as llama.cpp's `gemma3` projector reads them.

The projector averages the tower's patches in squares down to `mm_tokens_per_image` tokens (256 in every release: 64
patches a side pooled by 4), normalizes them with an RMSNorm and projects them into the language model's width. What
llama.cpp needs that the checkpoint spells otherwise:

- the norm's weight + 1: Gemma's RMSNorm multiplies by (1 + weight), llama.cpp's by the weight;
- the pooling's side (`clip.vision.projector.scale_factor`) where it is not llama.cpp's default, 4: a model whose
  image size, patch size or tokens per image differ (the tests' tiny one: 2 patches a side pooled to 1);
- the image's normalization (image_mean, image_std), which the checkpoint's weights do not say: the processor's
  settings where the base model ships them, else Gemma 3's, 0.5 and 0.5;
- the projection stored as the checkpoint has it, [tower width, text width]: llama.cpp transposes it when it runs;
- the patch and position embeddings in float32 (llama.cpp's converter keeps them so; its issue 13025), the other
  matrices in float16.

SigLIP's attention-pooling head, which some checkpoints carry (vision_use_head), is not read: Gemma 3 takes the
tower's patches, not its pooled vector.
"""

from __future__ import annotations

import math
import re

import numpy as np
from gguf import GGUFWriter

from core.gguf_export.projectors import Projector, add_normalization, add_tower, register

LAYER = re.compile(r"vision_tower\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
LAYER_PARTS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.out_proj": "attn_out", "layer_norm1": "ln1", "layer_norm2": "ln2", "mlp.fc1": "ffn_up",
               "mlp.fc2": "ffn_down"}
OTHERS = {"vision_tower.embeddings.patch_embedding.weight": "v.patch_embd.weight",
          "vision_tower.embeddings.patch_embedding.bias": "v.patch_embd.bias",
          "vision_tower.embeddings.position_embedding.weight": "v.position_embd.weight",
          "vision_tower.post_layernorm.weight": "v.post_ln.weight",
          "vision_tower.post_layernorm.bias": "v.post_ln.bias",
          "multi_modal_projector.mm_input_projection_weight": "mm.input_projection.weight",
          "multi_modal_projector.mm_soft_emb_norm.weight": "mm.soft_emb_norm.weight"}
NORM = "mm.soft_emb_norm.weight"
DEFAULT_POOL = 4  # llama.cpp's side of the pooling square when the file states none (every Gemma 3 release's)


@register
class Gemma3(Projector):
    model_types = ("gemma3",)
    projector_type = "gemma3"
    f32_names = ("v.patch_embd.weight", "v.position_embd.weight")

    others, layer, layer_parts = OTHERS, LAYER, LAYER_PARTS

    def gguf_name(self, name: str, cfg: dict) -> str | None:
        return None if name.startswith("vision_tower.head.") else super().gguf_name(name, cfg)

    def check(self, cfg: dict) -> str | None:
        tokens, side, patches = _pooling(cfg)
        if side * side != tokens or patches % side:
            return (f"its {tokens} tokens per image do not pool evenly from {patches}×{patches} patches, which "
                    "llama.cpp's gemma3 projector needs")
        return None

    def transform(self, gguf_name: str, array: np.ndarray) -> np.ndarray:
        return array + 1.0 if gguf_name == NORM else array

    def metadata(self, cfg: dict, preprocessor: dict, w: GGUFWriter) -> str | None:
        vision = cfg["vision_config"]
        add_tower(w, cfg, image_size=vision["image_size"], blocks=vision["num_hidden_layers"],
                  heads=vision["num_attention_heads"], eps=vision.get("layer_norm_eps", 1e-6))
        _, side, patches = _pooling(cfg)
        if patches // side != DEFAULT_POOL:
            w.add_vision_projector_scale_factor(patches // side)
        return add_normalization(w, preprocessor, "Gemma 3")


def _pooling(cfg: dict) -> tuple[int, int, int]:
    """(tokens per image, their side, patches a side): the projector pools the patches in squares of
    patches / side a side."""
    vision = cfg["vision_config"]
    tokens = int(cfg.get("mm_tokens_per_image") or 256)
    return tokens, math.isqrt(tokens), vision["image_size"] // vision["patch_size"]
