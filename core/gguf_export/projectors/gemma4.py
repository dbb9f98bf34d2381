"""Gemma 4's vision (E2B, E4B and the larger ones): its own ViT and a one-matrix projector, as llama.cpp's `gemma4v`
projector reads them (tools/mtmd/models/gemma4v.cpp).

The tower embeds each 16-pixel patch with a plain matrix (no bias), adds a learned embedding for the patch's column
and one for its row, runs blocks of Gemma's shape (RMSNorms before and after attention and MLP, a gated GELU MLP,
queries and keys normed per head, a 2-D rotary embedding over halves of each head), averages the patches in squares
of `pooling_kernel_size` a side, scales them by √width, and the projector normalizes them (an RMSNorm without a
weight) and projects them into the language model's width. What llama.cpp needs that the checkpoint spells otherwise:

- the patch embedding as a convolution's kernel, [width, 3, patch, patch]: the checkpoint's matrix reads each
  patch's pixels row by row with the colours innermost, a convolution colour by colour;
- the two position tables ([2, positions, width], columns' then rows') kept whole in float32: llama.cpp looks up
  each half by the patch's column and row;
- the norms as stored: Gemma 4's RMSNorm multiplies by its weight (not by 1 + weight, as Gemma 3's);
- the pooling's side (`clip.vision.projector.scale_factor`) where it is not llama.cpp's default, 3;
- the image's scaling: Gemma 4's processor only divides by 255 and the model maps [0, 1] to [-1, 1] itself, as
  llama.cpp's graph does, so the file says mean 0 and std 1 unless the base model's processor normalizes;
- the clipped linears' bounds (`use_clipped_linears`), one-element tensors named after their matrix, and the
  optional standardization (`std_bias`, `std_scale`) under llama.cpp's names.

The audio tower some checkpoints carry is not written: llama.cpp reads it from a projector file of its own kind.
"""

from __future__ import annotations

import re

import numpy as np
from gguf import GGUFWriter

from core.gguf_export.projectors import Projector, Unnamed, add_tower, head_dim, register

LAYER = re.compile(r"vision_tower\.encoder\.layers\.(\d+)\.(.+)$")
LINEARS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_out", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}
NORMS = {"input_layernorm": "ln1", "post_attention_layernorm": "attn_post_norm", "pre_feedforward_layernorm": "ln2",
         "post_feedforward_layernorm": "ffn_post_norm", "self_attn.q_norm": "attn_q_norm",
         "self_attn.k_norm": "attn_k_norm"}
BOUNDS = ("input_min", "input_max", "output_min", "output_max")  # a clipped linear's, scalars in the checkpoint
PATCH, POSITIONS = "v.patch_embd.weight", "v.position_embd.weight"
OTHERS = {"vision_tower.patch_embedder.input_proj.weight": PATCH,
          "vision_tower.patch_embedder.position_embedding_table": POSITIONS,
          "vision_tower.std_bias": "v.std_bias", "vision_tower.std_scale": "v.std_scale",
          "embed_vision.embedding_projection.weight": "mm.input_projection.weight"}
DEFAULT_POOL = 3  # llama.cpp's side of the pooling square when the file states none (every Gemma 4 release's)
ROPE_THETA = 100.0  # llama.cpp's graph fixes the tower's rotary base at this
GELU = ("gelu_pytorch_tanh", "gelu")  # ggml's GELU is the tanh form
WARMUP_SIDE = 16  # tokens a side of the image size written: llama.cpp sizes each image itself and reads it for nothing


@register
class Gemma4(Projector):
    model_types = ("gemma4",)
    projector_type = "gemma4v"
    f32_names = (POSITIONS,)

    def gguf_name(self, name: str, cfg: dict) -> str | None:
        if name in OTHERS:
            return OTHERS[name]
        m = LAYER.match(name)
        if m:
            block, rest = m.group(1), m.group(2)
            part, _, kind = rest.rpartition(".")
            if part.endswith(".linear") and kind == "weight" and part.removesuffix(".linear") in LINEARS:
                return f"v.blk.{block}.{LINEARS[part.removesuffix('.linear')]}.weight"
            if part in LINEARS and kind in BOUNDS:
                return f"v.blk.{block}.{LINEARS[part]}.{kind}"
            if part in NORMS and kind == "weight":
                return f"v.blk.{block}.{NORMS[part]}.weight"
            if rest == "layer_scalar":
                return f"v.blk.{block}.out_scale.weight"
        raise Unnamed(name, self.projector_type)  # never a silent gap

    def required(self, cfg: dict) -> list[str]:
        vision = cfg["vision_config"]
        parts = [*LINEARS.values(), *NORMS.values()]
        layers = [f"v.blk.{i}.{part}.weight" for i in range(vision["num_hidden_layers"]) for part in parts]
        bounds = [f"v.blk.{i}.{part}.{b}" for i in range(vision["num_hidden_layers"]) for part in LINEARS.values()
                  for b in BOUNDS] if vision.get("use_clipped_linears") else []
        std = ["v.std_bias", "v.std_scale"] if vision.get("standardize") else []
        return [PATCH, POSITIONS, "mm.input_projection.weight", *layers, *bounds, *std]

    def check(self, cfg: dict) -> str | None:
        vision = cfg["vision_config"]
        rope = vision.get("rope_parameters") or {}
        head = head_dim(vision)
        problems = [
            (vision.get("hidden_activation", GELU[0]) not in GELU,
             f"its tower's activation is {vision.get('hidden_activation')}, and llama.cpp's gemma4v graph uses GELU"),
            (rope.get("rope_type", "axial") != "axial" or float(rope.get("rope_theta", ROPE_THETA)) != ROPE_THETA,
             f"its tower's rotary embedding ({rope}) is not the axial one of base {ROPE_THETA:g} llama.cpp fixes"),
            (head % 4 != 0, f"its heads are {head} wide, and llama.cpp's 2-D rotary embedding needs a multiple of 4"),
            (vision.get("num_key_value_heads", vision["num_attention_heads"]) != vision["num_attention_heads"],
             "its tower's attention groups its keys and values, which llama.cpp's gemma4v graph does not"),
        ]
        return next((why for bad, why in problems if bad), None)

    def shape(self, gguf_name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        if gguf_name == PATCH:
            width, pixels = shape
            side = _side(pixels)
            return width, 3, side, side
        return (1,) if shape == () else shape  # a clipped linear's bound: a one-element tensor

    def transform(self, gguf_name: str, array: np.ndarray) -> np.ndarray:
        if gguf_name == PATCH:  # rows of [patch row, patch column, colour] → [colour, patch row, patch column]
            width, pixels = array.shape
            side = _side(pixels)
            return array.reshape(width, side, side, 3).transpose(0, 3, 1, 2)
        return array.reshape(1) if array.ndim == 0 else array

    def metadata(self, cfg: dict, preprocessor: dict, w: GGUFWriter) -> str | None:
        vision = cfg["vision_config"]
        pool = vision.get("pooling_kernel_size", DEFAULT_POOL)
        add_tower(w, cfg, image_size=vision["patch_size"] * pool * WARMUP_SIDE,
                  blocks=vision["num_hidden_layers"], heads=vision["num_attention_heads"],
                  eps=vision.get("rms_norm_eps", 1e-6))
        if pool != DEFAULT_POOL:
            w.add_vision_projector_scale_factor(pool)
        normalizes = bool(preprocessor.get("do_normalize") and preprocessor.get("image_mean")
                          and preprocessor.get("image_std"))
        mean = preprocessor["image_mean"] if normalizes else [0.0] * 3
        std = preprocessor["image_std"] if normalizes else [1.0] * 3
        w.add_vision_image_mean([float(x) for x in mean])
        w.add_vision_image_std([float(x) for x in std])
        return "the audio tower is not written: llama.cpp reads audio from a file of its own" \
            if cfg.get("audio_config") else None


def _side(pixels: int) -> int:
    """A patch's side from the patch embedding's input width, 3 × side²."""
    side = int(round((pixels // 3) ** 0.5))
    if 3 * side * side != pixels:
        raise ValueError(f"a patch embedding {pixels} wide is no square patch of three colours")
    return side
