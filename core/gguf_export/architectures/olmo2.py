"""OLMo 2 and OLMo 3 (AI2): Llama's tensors, but each block normalizes the outputs of its attention and MLP before
adding them back (post_attention_layernorm → post_attention_norm, post_feedforward_layernorm → post_ffw_norm: there
is no norm before either), and an RMS norm over the whole Q and K projections (attn_q_norm, attn_k_norm: the width
of all heads, not one head's as Qwen3's). llama.cpp's olmo2 applies rope in the NeoX (half-rotation) layout that
transformers uses, so Q and K keep their row order.

OLMo 3 is OLMo 2 with sliding-window attention on three layers of four (its `layer_types`), which llama.cpp's
olmo2 architecture runs from two keys, as its converter writes them: attention.sliding_window and
sliding_window_pattern (true for a sliding layer). Its rope scaling (yarn, on the long-context models) applies to
the full-attention layers only, in transformers and in llama.cpp alike, so the shared rope keys carry the full
layers' settings; sliding layers with another rope base than the full ones are refused in a sentence.

transformers' GGUF reader knows neither, so verification reads these files with our own dequantization and says
so, and importing one takes its config from our `config`: an olmo2 file with a sliding window is OLMo 3.
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, register, rope

SLIDING, FULL = "sliding_attention", "full_attention"


@register
class Olmo2(Architecture):
    model_types = ("olmo2", "olmo3")
    gguf_arch = MODEL_ARCH.OLMO2
    transformers_reads = False

    def check(self, cfg: dict) -> None:
        super().check(cfg)
        types = (cfg.get("rope_parameters") or {})
        if cfg["model_type"] == "olmo3" and SLIDING in types and FULL in types:
            sliding, full = (float(types[t].get("rope_theta") or 0) for t in (SLIDING, FULL))
            if sliding != full:
                raise BadArgument(f"This OLMo 3 model's sliding layers rope with base {sliding:g} and its full layers "
                                  f"with {full:g}, and llama.cpp's olmo2 takes one base for both, so GGUF would not "
                                  "run it as trained; export merged safetensors instead.")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        if cfg["model_type"] == "olmo3" and cfg.get("sliding_window"):
            w.add_sliding_window(cfg["sliding_window"])
            w.add_sliding_window_pattern([kind == SLIDING for kind in cfg["layer_types"]])

    def config(self, meta: dict) -> dict:
        cfg = super().config(meta)
        window = meta.get(f"{self.name}.attention.sliding_window")
        if not window:
            return cfg
        layers = cfg["num_hidden_layers"]
        pattern = meta.get(f"{self.name}.attention.sliding_window_pattern")
        if not isinstance(pattern, list) or len(pattern) != layers:  # llama.cpp's default: every fourth is full
            pattern = [(i + 1) % 4 != 0 for i in range(layers)]
        full = rope(cfg)
        return {**cfg, "model_type": "olmo3", "sliding_window": window,
                "layer_types": [SLIDING if sliding else FULL for sliding in pattern],
                "rope_parameters": {FULL: full, SLIDING: {"rope_type": "default", "rope_theta": full["rope_theta"]}}}
