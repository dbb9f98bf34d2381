"""Gemma 3, the text model (model_type "gemma3_text"): Gemma 2's block plus RMS norms on Q and K, no
attention soft-capping, and local layers with a sliding window and their own rope base.

Norms are written + 1 as for Gemma 2. llama.cpp takes the global layers' rope base from the file and
fixes the local layers' at 10,000 and their pattern at five local to one global, which is what the
released Gemma 3 models use (and what llama.cpp's converter assumes: it writes neither); a model with another
is refused in a sentence, before anything is written.
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import register
from core.gguf_export.architectures.gemma2 import GemmaFamily

LOCAL_BASE, EVERY = 10000.0, 6  # what llama.cpp's gemma3 takes where the file says nothing (its converter never does)


@register
class Gemma3(GemmaFamily):
    model_types = ("gemma3_text",)
    gguf_arch = MODEL_ARCH.GEMMA3
    layers_27b = 62

    def check(self, cfg: dict) -> None:
        super().check(cfg)
        layers = cfg["num_hidden_layers"]
        usual = ["full_attention" if (i + 1) % EVERY == 0 else "sliding_attention" for i in range(layers)]
        given = list(cfg.get("layer_types") or usual)
        if cfg.get("sliding_window") and given != usual:
            full = [str(i) for i, kind in enumerate(given) if kind == "full_attention"]
            raise BadArgument(f"This Gemma 3 model attends globally in layers {', '.join(full) or 'none'}, and "
                              f"llama.cpp in every {EVERY}th, so GGUF would not run it as trained; export merged "
                              "safetensors instead.")
        local = ((cfg.get("rope_parameters") or {}).get("sliding_attention") or {}).get("rope_theta")
        if local is not None and float(local) != LOCAL_BASE:
            raise BadArgument(f"This Gemma 3 model's local layers rope with base {float(local):g}, and llama.cpp's "
                              f"with {LOCAL_BASE:g}, so GGUF would not run it as trained; export merged safetensors "
                              "instead.")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        if cfg.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))
        if cfg.get("sliding_window"):
            w.add_sliding_window(cfg["sliding_window"])
