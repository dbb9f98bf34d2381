"""Mixtral (model_type "mixtral": Mixtral-8x7B, -8x22B), written as llama.cpp's converter writes it: its "llama"
architecture with experts. Llama's layers (llama.py: Q and K rows paired for llama.cpp's rope) with, in place of the
dense feed-forward, a router (ffn_gate_inp, [experts, hidden]) over experts stacked as Qwen3 MoE's are (qwen3moe.py:
the fused gate_up_proj split by each expert's rows into ffn_gate_exps and ffn_up_exps, ffn_down_exps). The experts'
width is the config's intermediate_size, written as feed_forward_length, which llama.cpp's llama reads for them; the
keys expert_count and expert_used_count tell it the layers are experts.

Router: transformers softmaxes the router's logits over every expert, takes the top num_experts_per_tok and always
renormalizes their weights to sum to 1; llama.cpp's llama with experts does the same (softmax gating, weights
normalized, no scale), so no setting of it is refused. The router stays float32 whatever the pick, as llama.cpp's
converter and llama-quantize leave it.

Refused in a sentence, before anything is written: a sliding window shorter than the context (llama.cpp's llama has
none, so past the window it would attend otherwise; the released models set none), an activation other than SiLU
(llama.cpp's experts always use SiLU), and what llama.py refuses.

A file says only general.architecture = "llama": transformers' GGUF reader makes it a Llama without experts, so a
file is read back and imported with our inverse of `metadata`, Llama's `config`, which gives a file with experts
model_type "mixtral" (core/gguf_import.py reads such a file's config with ours).
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import register
from core.gguf_export.architectures.llama import Llama
from core.gguf_export.architectures.qwen3moe import ExpertsAsWide, refuse_other_than_llama_cpp, write_experts


@register
class Mixtral(ExpertsAsWide, Llama):
    model_types = ("mixtral",)
    gguf_arch = MODEL_ARCH.LLAMA
    transformers_reads = False  # it reads a llama file as a Llama, without experts (the module's docstring)

    def check(self, cfg: dict) -> None:
        def refuse(what: str) -> None:
            raise BadArgument(f"This Mixtral model {what}; export merged safetensors instead.")

        window = cfg.get("sliding_window")
        if window and window < cfg["max_position_embeddings"]:
            refuse(f"attends through a sliding window of {window} tokens, and llama.cpp's llama has none, so GGUF "
                   "would not run it as trained past the window")
        refuse_other_than_llama_cpp(cfg, "llama", refuse)
        super().check(cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)  # feed_forward_length: the experts' width, as llama.cpp's llama reads it
        write_experts(cfg, w, width=None)
