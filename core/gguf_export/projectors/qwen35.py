"""Qwen 3.5's vision (every size, dense and MoE alike): Qwen3-VL's tower without its deepstack mergers, as llama.cpp's
`qwen3vl_merger` projector reads it (tools/mtmd/models/qwen3vl.cpp).

The tower cuts the image into patches with a 3-D convolution over two frames (a still image is given twice), adds a
learned position grid resampled to the image's, runs ViT blocks with a 2-D rotary embedding, and merges each 2×2
square of patches into one token through a LayerNorm and a two-layer GELU MLP. What llama.cpp needs that the
checkpoint spells otherwise:

- the 3-D patch convolution as two 2-D ones, one per frame (`v.patch_embd.weight` and `.weight.1`): llama.cpp
  convolves a still image with each and adds them, which is what the 3-D one does to an image given twice;
- the merger's LayerNorm as the tower's last norm (`v.post_ln`) and its two layers as `mm.0` and `mm.2`;
- the fused query-key-value matrix kept whole (`attn_qkv`): llama.cpp takes its thirds as views;
- the image's normalization, which the weights do not say: the processor's settings where the base model ships
  them, else Qwen 3.5's, 0.5 and 0.5;
- the position grid in float32 (llama.cpp's converter keeps position embeddings so; it is resampled per image).

Qwen3-VL's deepstack mergers (`deepstack_visual_indexes`) are absent from Qwen 3.5; a checkpoint that has them is
refused rather than written without them.
"""

from __future__ import annotations

import math
import re

from gguf import GGUFWriter

from core.gguf_export.projectors import Projector, add_normalization, add_tower, register

LAYER = re.compile(r"visual\.blocks\.(\d+)\.(.+)\.(weight|bias)$")
LAYER_PARTS = {"norm1": "ln1", "norm2": "ln2", "attn.qkv": "attn_qkv", "attn.proj": "attn_out",
               "mlp.linear_fc1": "ffn_up", "mlp.linear_fc2": "ffn_down"}
PATCH = "v.patch_embd.weight"
OTHERS = {"visual.patch_embed.proj.weight": PATCH, "visual.patch_embed.proj.bias": "v.patch_embd.bias",
          "visual.pos_embed.weight": "v.position_embd.weight",
          "visual.merger.norm.weight": "v.post_ln.weight", "visual.merger.norm.bias": "v.post_ln.bias",
          "visual.merger.linear_fc1.weight": "mm.0.weight", "visual.merger.linear_fc1.bias": "mm.0.bias",
          "visual.merger.linear_fc2.weight": "mm.2.weight", "visual.merger.linear_fc2.bias": "mm.2.bias"}
FRAMES = 2  # llama.cpp's graph takes a patch convolution over exactly two frames
MERGE = 2  # and merges exactly 2×2 patches (its reshapes are written for 2)
EPS = 1e-6  # the tower's LayerNorms: transformers builds them with 1e-6 whatever the config says
# The blocks' activations llama.cpp runs as its GELU, the tanh form (the merger's is the exact one in transformers,
# the tanh one in llama.cpp: they differ by under 1e-3, which the llama-server check stays within)
GELU = ("gelu_pytorch_tanh", "gelu")


@register
class Qwen35(Projector):
    model_types = ("qwen3_5", "qwen3_5_moe")
    projector_type = "qwen3vl_merger"
    f32_names = ("v.position_embd.weight",)
    # The convolution's kernel is [width, 3, frames, patch, patch]: one 2-D kernel per frame, cut along axis 2.
    splits = {PATCH: ((PATCH, f"{PATCH}.1"), 2)}

    others, layer, layer_parts, blocks_key = OTHERS, LAYER, LAYER_PARTS, "depth"

    def check(self, cfg: dict) -> str | None:
        vision = cfg["vision_config"]
        side = math.isqrt(vision["num_position_embeddings"])
        heads, width = vision["num_heads"], vision["hidden_size"]
        problems = [
            (vision.get("temporal_patch_size", FRAMES) != FRAMES,
             f"its patches span {vision.get('temporal_patch_size')} frames, and llama.cpp's graph takes {FRAMES}"),
            (vision.get("spatial_merge_size", MERGE) != MERGE,
             f"it merges {vision.get('spatial_merge_size')}² patches a token, and llama.cpp's graph merges {MERGE}²"),
            (bool(vision.get("deepstack_visual_indexes")),
             "its tower has deepstack mergers, which this writer does not carry"),
            (vision.get("hidden_act", GELU[0]) not in GELU,
             f"its tower's activation is {vision.get('hidden_act')}, and llama.cpp's qwen3vl graph uses GELU"),
            (side * side != vision["num_position_embeddings"],
             f"its {vision['num_position_embeddings']} position embeddings are no square grid"),
            (width % heads or (width // heads) % 4,
             f"its heads are {width / heads:g} wide, and llama.cpp's 2-D rotary embedding needs a multiple of 4"),
        ]
        return next((why for bad, why in problems if bad), None)

    def metadata(self, cfg: dict, preprocessor: dict, w: GGUFWriter) -> str | None:
        vision = cfg["vision_config"]
        # The image size is the one the position grid was trained for (llama.cpp resamples the grid to each image's).
        add_tower(w, cfg, image_size=math.isqrt(vision["num_position_embeddings"]) * vision["patch_size"],
                  blocks=vision["depth"], heads=vision["num_heads"], eps=EPS)
        w.add_vision_spatial_merge_size(vision.get("spatial_merge_size", MERGE))
        return add_normalization(w, preprocessor, "Qwen 3.5")
