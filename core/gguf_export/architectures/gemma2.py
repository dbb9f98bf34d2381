"""Gemma 2: four norms per block, logit soft-capping, and sliding-window attention on every other layer.

HF's Gemma norms multiply by (1 + weight); llama.cpp's by weight, so norms are written + 1. The output
head is always the embedding (no output.weight). What GGUF cannot say: query_pre_attn_scalar — llama.cpp
derives the attention scale from the model size (head_dim, except the 27B model's hidden/heads, the 27B known by
its depth), which matches the released Gemma 2 models; another is refused in a sentence, and a file read back
gets llama.cpp's (`config_from_keys`).
"""

from __future__ import annotations

from typing import ClassVar

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, _short, head_dim, register


class GemmaFamily(Architecture):
    """What Gemma 2 and 3 share: norms written + 1, and the attention scale llama.cpp derives."""

    layers_27b: ClassVar[int]  # the depth by which llama.cpp knows the 27B model, whose scale differs

    def attention_scalar(self, cfg: dict) -> int:
        """What llama.cpp divides attention scores by the root of (it reads no query_pre_attn_scalar): the width
        over the heads for the 27B model (known by its depth), else the head size; as the released models have it."""
        if cfg["num_hidden_layers"] == self.layers_27b:
            return cfg["hidden_size"] // cfg["num_attention_heads"]
        return head_dim(cfg)

    def check(self, cfg):
        super().check(cfg)
        scalar, derived = cfg.get("query_pre_attn_scalar"), self.attention_scalar(cfg)
        if scalar and scalar != derived:
            raise BadArgument(f"This {cfg['model_type']} model scales attention by query_pre_attn_scalar={scalar}, "
                              f"and llama.cpp by {derived} for a model of its shape (it cannot read the setting from a "
                              "GGUF file); export merged safetensors instead.")

    def config_from_keys(self, meta, cfg):
        """transformers' mapping reads neither the soft caps nor the attention scale (its class default, 256,
        stood: Gemma 2 and 3 27B's is 144 and 168), so both come from the keys and llama.cpp's rule."""
        fields = super().config_from_keys(meta, cfg)
        for key in ("final_logit_softcapping", "attn_logit_softcapping"):
            if meta.get(f"{self.name}.{key}") is not None:
                fields[key] = _short(meta[f"{self.name}.{key}"])
        scalar = self.attention_scalar({**cfg, **fields})
        if cfg.get("query_pre_attn_scalar") != scalar:
            fields["query_pre_attn_scalar"] = scalar
        return fields

    def transform(self, gguf_name, array, cfg):
        return array + 1.0 if gguf_name.endswith("norm.weight") else array

    def untransform(self, gguf_name, array, cfg):
        return array - 1.0 if self.untransforms(gguf_name, cfg) else array

    def untransforms(self, gguf_name, cfg):
        return gguf_name.endswith("norm.weight")


@register
class Gemma2(GemmaFamily):
    model_types = ("gemma2",)
    gguf_arch = MODEL_ARCH.GEMMA2
    layers_27b = 46

    def gguf_name(self, hf_name, cfg):
        return None if hf_name == "lm_head.weight" else super().gguf_name(hf_name, cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        w.add_attn_logit_softcapping(float(cfg["attn_logit_softcapping"]))
        w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))
        w.add_sliding_window(cfg["sliding_window"])
