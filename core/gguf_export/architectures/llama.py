"""Llama, and the models built like it: SmolLM/SmolLM2 (model_type "llama") and Mistral.

llama.cpp applies RoPE to adjacent pairs of a head's dimensions, where HF's Llama rotates the first
half against the second; so the rows of Q and K are reordered within each head on the way out (K per
key-value head). Qwen and Gemma keep HF's order in llama.cpp, so only this file does it.
Mistral is written as llama, as llama.cpp's converter does: its sliding window only matters past 4k
tokens and llama.cpp's llama architecture has none.
"""

from __future__ import annotations

import math

import numpy as np
from gguf import GGUFWriter, MODEL_ARCH

from core.gguf_export.architectures import Architecture, head_dim, kv_heads, register, rope


def pair_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows [h, half, j] → [h, j, half]: each head's first and second half interleaved (HF → llama.cpp)."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpair_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of pair_rope_rows (llama.cpp → HF), for checks and our own dequantization."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@register
class Llama(Architecture):
    model_types = ("llama", "mistral")
    gguf_arch = MODEL_ARCH.LLAMA
    rope_types = ("default", "linear", "yarn", "llama3")

    def transform(self, gguf_name, array, cfg):
        if ".attn_q." in gguf_name:
            return pair_rope_rows(array, cfg["num_attention_heads"])
        if ".attn_k." in gguf_name:
            return pair_rope_rows(array, kv_heads(cfg))
        return array

    def untransform(self, gguf_name, array, cfg):
        if ".attn_q." in gguf_name:
            return unpair_rope_rows(array, cfg["num_attention_heads"])
        if ".attn_k." in gguf_name:
            return unpair_rope_rows(array, kv_heads(cfg))
        return array

    def untransforms(self, gguf_name, cfg):
        return ".attn_q." in gguf_name or ".attn_k." in gguf_name

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        w.add_rope_dimension_count(head_dim(cfg))

    def config(self, meta: dict) -> dict:
        """A llama file's config, but where it has experts Mixtral's (mixtral.py), which llama.cpp writes as llama
        too: transformers' GGUF mapping reads that as a Llama, so core/gguf_import.py reads it with ours."""
        cfg = super().config(meta)
        if not meta.get("llama.expert_count"):
            return cfg
        return {**cfg, "model_type": "mixtral", "num_local_experts": meta["llama.expert_count"],
                "num_experts_per_tok": meta.get("llama.expert_used_count")}

    extra_names = ("rope_freqs.weight",)

    def extra_tensors(self, cfg):
        """Llama 3.1's rope scaling, which llama.cpp reads as per-frequency factors (rope_freqs)."""
        r = rope(cfg)
        if r.get("rope_type") != "llama3":
            return []
        return [("rope_freqs.weight", llama3_factors(r, head_dim(cfg)).astype(np.float32))]

    def config_from_extra(self, extra, cfg, meta):
        settings = llama3_settings(extra["rope_freqs.weight"], float(rope(cfg)["rope_theta"]), head_dim(cfg))
        return None if settings is None else {"rope_parameters": {**(cfg.get("rope_parameters") or {}), **settings}}


def llama3_factors(r: dict, dim: int) -> np.ndarray:
    """What each rope frequency is divided by under Llama 3's scaling `r` (transformers' "llama3" rope): 1 for
    the fast ones, `factor` for the slow ones, and a smooth step between."""
    freqs = 1.0 / (float(r["rope_theta"]) ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    wavelen = 2 * math.pi / freqs
    factor, low, high = float(r.get("factor", 8.0)), float(r.get("low_freq_factor", 1.0)), \
        float(r.get("high_freq_factor", 4.0))
    old_ctx = float(r.get("original_max_position_embeddings", 8192))
    smooth = (old_ctx / wavelen - low) / (high - low)
    return np.where(wavelen < old_ctx / high, 1.0,
                    np.where(wavelen > old_ctx / low, factor, 1.0 / ((1 - smooth) / factor + smooth)))


def llama3_settings(factors: np.ndarray, theta: float, dim: int) -> dict | None:
    """The inverse of llama3_factors, for importing a file: Llama 3 rope settings that give these factors, or
    None. Many settings give the same factors, and only the factors change the model, so any that does is right:
    the released ones are tried first (low 1, high 4, an original context that is a power of two: Llama 3.1's and
    3.2's), then the line the factors of the smooth step lie on, with low 1."""
    factors = np.asarray(factors, np.float64)
    base = {"rope_type": "llama3", "rope_theta": theta, "factor": float(factors.max())}
    tries = [{**base, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 2 ** k}
             for k in range(4, 22)]
    wavelen = 2 * math.pi * theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    between = (factors > 1 + 1e-6) & (factors < base["factor"] * (1 - 1e-6))
    if between.sum() >= 2 and base["factor"] > 1:
        # 1/f = (1 - s)/factor + s, and s = old_ctx/(high - low) · 1/wavelen - low/(high - low)
        s = (1 / factors[between] - 1 / base["factor"]) / (1 - 1 / base["factor"])
        slope, intercept = np.polyfit(1 / wavelen[between], s, 1)
        if intercept < 0:
            span = -1 / intercept  # high - low, with low = 1
            exact = {**base, "low_freq_factor": 1.0, "high_freq_factor": float(1 + span),
                     "original_max_position_embeddings": float(slope * span)}
            tries += [{**exact, "high_freq_factor": float(round(1 + span, 6)),
                       "original_max_position_embeddings": int(round(slope * span))}, exact]
    for settings in tries:
        if np.allclose(llama3_factors(settings, dim).astype(np.float32), factors, rtol=1e-6, atol=0):
            return settings
    return None
