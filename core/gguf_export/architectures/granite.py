"""IBM Granite (dense): Llama's layout (Q and K reordered for llama.cpp's rope the same way) with four scales of
its own, which llama.cpp's granite architecture reads under other names: the embeddings × embedding_multiplier
(embedding_scale), each residual branch × residual_multiplier (residual_scale), attention scores ×
attention_multiplier in place of 1/√head (attention.scale), and the logits ÷ logits_scaling (logit_scale, which
llama.cpp requires: it is always written). llama.cpp takes the head size from the width and the heads, as its
converter does (it drops a config's head_dim), so a head_dim that differs is refused in a sentence. transformers'
GGUF reader does not know granite, so verification reads these files with our own dequantization and says so,
and importing one takes its config, the four scales included, from our `config`, which also reads the key heads
given one a layer, as llama.cpp's converter writes Granite 4.0's dense models (granitemoehybrid.py).
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import _short, register
from core.gguf_export.architectures.llama import Llama


@register
class Granite(Llama):
    model_types = ("granite",)
    gguf_arch = MODEL_ARCH.GRANITE
    transformers_reads = False
    SCALES = {"embedding_scale": "embedding_multiplier", "residual_scale": "residual_multiplier",
              "attention.scale": "attention_multiplier", "logit_scale": "logits_scaling"}  # GGUF key → config field

    def check(self, cfg: dict) -> None:
        super().check(cfg)
        derived = cfg["hidden_size"] // cfg["num_attention_heads"]
        if cfg.get("head_dim") not in (None, derived):
            raise BadArgument(f"This Granite model's heads are {cfg['head_dim']} wide, and llama.cpp makes them "
                              f"{derived} (its width over its heads), so GGUF would not run it as trained; export "
                              "merged safetensors instead.")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata({**cfg, "head_dim": None}, w)
        w.add_embedding_scale(float(cfg.get("embedding_multiplier", 1.0)))
        w.add_residual_scale(float(cfg.get("residual_multiplier", 1.0)))
        w.add_attention_scale(float(cfg.get("attention_multiplier", 1.0)))
        w.add_logit_scale(float(cfg.get("logits_scaling", 1.0)))

    def config(self, meta: dict) -> dict:
        cfg = super().config(meta)
        cfg.pop("head_dim", None)  # llama.cpp's is the width over the heads, as transformers' Granite makes it
        kv = cfg.get("num_key_value_heads")
        if isinstance(kv, list) and len(set(kv)) == 1:  # one a layer, as llama.cpp's converter writes Granite 4.0's
            cfg["num_key_value_heads"] = kv[0]
        return {**cfg, **{field: _short(meta.get(f"{self.name}.{key}", 1.0)) for key, field in self.SCALES.items()}}
