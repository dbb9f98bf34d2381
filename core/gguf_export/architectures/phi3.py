"""Phi-3 (and Phi-3.5 mini): fused projections kept fused, as llama.cpp reads them.

HF's qkv_proj rows are [Q; K; V] and gate_up_proj rows are [gate; up]; llama.cpp's attn_qkv and
ffn_up take the same tensors unchanged (it splits them at run time), so nothing is reordered. The
long-context variants carry per-frequency rope factors, written as rope_factors_long/short, and read back
from there into the config on import (`config_from_extra`), with the original context length from its key.
"""

from __future__ import annotations

import math

import numpy as np
from gguf import GGUFWriter, MODEL_ARCH

from core.gguf_export.architectures import Architecture, _short, register, rope


def rope_dims(cfg: dict) -> int:
    fraction = rope(cfg).get("partial_rotary_factor") or cfg.get("partial_rotary_factor") or 1.0
    return int(fraction * cfg["hidden_size"]) // cfg["num_attention_heads"]


@register
class Phi3(Architecture):
    model_types = ("phi3",)
    gguf_arch = MODEL_ARCH.PHI3
    rope_types = ("default", "longrope", "su")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        original = cfg.get("original_max_position_embeddings") or cfg["max_position_embeddings"]
        w.add_rope_scaling_orig_ctx_len(original)
        w.add_rope_dimension_count(rope_dims(cfg))
        w.add_sliding_window(cfg.get("sliding_window") or 0)  # 0 tells llama.cpp there is none
        if rope(cfg).get("long_factor"):
            scale = cfg["max_position_embeddings"] / original
            w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(original)) if scale > 1 else 1.0)

    extra_names = ("rope_factors_long.weight", "rope_factors_short.weight")

    def config_from_keys(self, meta, cfg):
        """Phi-4 mini ropes three quarters of each head (partial_rotary_factor 0.75), which the file says as
        rope.dimension_count and transformers' mapping drops, leaving rope on every dimension."""
        fields = super().config_from_keys(meta, cfg)
        dims, head = meta.get(f"{self.name}.rope.dimension_count"), cfg["hidden_size"] // cfg["num_attention_heads"]
        if isinstance(dims, int) and 0 < dims != rope_dims(cfg):
            fields["rope_parameters"] = {**(cfg.get("rope_parameters") or {}), "partial_rotary_factor": dims / head}
        return fields

    def config_from_extra(self, extra, cfg, meta):
        if set(extra) != set(self.extra_names):
            return None
        original = meta.get(f"{self.name}.rope.scaling.original_context_length") or cfg["max_position_embeddings"]
        settings = {**(cfg.get("rope_parameters") or {}), "rope_type": "longrope",
                    "rope_theta": float(rope(cfg)["rope_theta"]),
                    "long_factor": [_short(v) for v in extra["rope_factors_long.weight"]],
                    "short_factor": [_short(v) for v in extra["rope_factors_short.weight"]],
                    "original_max_position_embeddings": original}
        return {"rope_parameters": settings, "original_max_position_embeddings": original}

    def extra_tensors(self, cfg):
        r = rope(cfg)
        if not r.get("long_factor"):
            return []
        return [("rope_factors_long.weight", np.asarray(r["long_factor"], dtype=np.float32)),
                ("rope_factors_short.weight", np.asarray(r["short_factor"], dtype=np.float32))]
