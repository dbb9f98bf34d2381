"""OLMoE (AI2; model_type "olmoe": OLMoE-1B-7B), written as llama.cpp's olmoe: Llama's layout of norms (before
attention and before the experts), an RMS norm over the whole Q and K projections (attn_q_norm, attn_k_norm: the width
of all heads, as OLMo 2's, olmo2.py), NeoX rope as transformers has it (so Q and K keep their row order), and in every
layer a router (ffn_gate_inp) over experts stacked as Qwen3 MoE's are (qwen3moe.py: the fused gate_up_proj split by
each expert's rows into ffn_gate_exps and ffn_up_exps, ffn_down_exps). The experts' width is the config's
intermediate_size, written as feed_forward_length, which llama.cpp's olmoe reads for them, with expert_count and
expert_used_count, as its converter writes them. The router stays float32 whatever the pick.

Router: both softmax over every expert and take the top num_experts_per_tok; llama.cpp's olmoe never renormalizes the
chosen weights (as the released models, norm_topk_prob false). Refused in a sentence, before anything is written:
norm_topk_prob true; fewer key-value heads than heads (llama.cpp reads the K norm as wide as the model); clip_qkv
(llama.cpp clamps nothing); attention biases (none on its output projection); an output head tied to the embedding
(it requires one of its own); an activation other than SiLU.

transformers' GGUF reader does not know olmoe, so a file is read back, and imported, with our inverse of `metadata`
(`config`).
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, kv_heads, register
from core.gguf_export.architectures.qwen3moe import (ExpertsAsWide, read_experts, refuse_other_than_llama_cpp,
                                                     write_experts)


@register
class Olmoe(ExpertsAsWide, Architecture):
    model_types = ("olmoe",)
    gguf_arch = MODEL_ARCH.OLMOE
    transformers_reads = False

    def check(self, cfg: dict) -> None:
        def refuse(what: str) -> None:
            raise BadArgument(f"This OLMoE model {what}; export merged safetensors instead.")

        if cfg.get("norm_topk_prob", False):
            refuse("renormalizes the chosen experts' weights to sum to 1 (norm_topk_prob true), and llama.cpp's olmoe "
                   "never does, so GGUF would not run it as trained")
        if kv_heads(cfg) != cfg["num_attention_heads"]:
            refuse(f"has {kv_heads(cfg)} key-value heads for {cfg['num_attention_heads']} heads, and llama.cpp's "
                   "olmoe reads a key norm as wide as the model, so GGUF would not load")
        if cfg.get("clip_qkv") is not None:
            refuse(f"clips its queries, keys and values at {cfg['clip_qkv']}, and llama.cpp's olmoe clips nothing")
        if cfg.get("attention_bias"):
            refuse("has attention biases, and llama.cpp's olmoe reads none on the output projection")
        refuse_other_than_llama_cpp(cfg, "olmoe", refuse, own_head=True)
        super().check(cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)  # feed_forward_length: the experts' width, as llama.cpp's olmoe reads it
        write_experts(cfg, w, width=None)

    def config(self, meta: dict) -> dict:
        return {**super().config(meta), **read_experts(meta, self.name, width=None), "norm_topk_prob": False}
