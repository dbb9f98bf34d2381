"""Gemma 3, the text model (model_type "gemma3_text"): Gemma 2's block plus RMS norms on Q and K, no
attention soft-capping, and local layers with a sliding window and their own rope base.

Norms are written + 1 as for Gemma 2. llama.cpp takes the global layers' rope base from the file and
fixes the local layers' at 10,000 and their pattern at five local to one global, which is what the
released Gemma 3 models use.
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.gguf_export.architectures import register
from core.gguf_export.architectures.gemma2 import GemmaFamily


@register
class Gemma3(GemmaFamily):
    model_types = ("gemma3_text",)
    gguf_arch = MODEL_ARCH.GEMMA3

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        if cfg.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))
        if cfg.get("sliding_window"):
            w.add_sliding_window(cfg["sliding_window"])
