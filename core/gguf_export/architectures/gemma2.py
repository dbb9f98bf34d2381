"""Gemma 2: four norms per block, logit soft-capping, and sliding-window attention on every other layer.

HF's Gemma norms multiply by (1 + weight); llama.cpp's by weight, so norms are written + 1. The output
head is always the embedding (no output.weight). What GGUF cannot say: query_pre_attn_scalar — llama.cpp
derives the attention scale from the model size (head_dim, except 27B's hidden/heads), which matches
the released Gemma 2 models.
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, head_dim, register


def check_attention_scale(cfg: dict) -> None:
    """llama.cpp scales attention by 1/sqrt(head_dim) (hidden/heads for the 27B models) and reads no
    query_pre_attn_scalar; a model that uses another scale would answer differently there."""
    scalar = cfg.get("query_pre_attn_scalar")
    if scalar and scalar not in (head_dim(cfg), cfg["hidden_size"] // cfg["num_attention_heads"]):
        raise BadArgument(f"This {cfg['model_type']} model scales attention by query_pre_attn_scalar={scalar}, which "
                          "llama.cpp cannot read from a GGUF file; export merged safetensors instead.")


class GemmaFamily(Architecture):
    """What Gemma 2 and 3 share: norms written + 1, and the attention-scale check."""

    def check(self, cfg):
        super().check(cfg)
        check_attention_scale(cfg)

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

    def gguf_name(self, hf_name, cfg):
        return None if hf_name == "lm_head.weight" else super().gguf_name(hf_name, cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        w.add_attn_logit_softcapping(float(cfg["attn_logit_softcapping"]))
        w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))
        w.add_sliding_window(cfg["sliding_window"])
