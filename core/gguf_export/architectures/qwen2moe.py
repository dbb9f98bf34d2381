"""Qwen2's mixtures of experts (model_type "qwen2_moe": Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B), written as llama.cpp's
qwen2moe: Qwen2's attention (biases on Q, K and V, NeoX rope, so no row order changes) and, in every layer, a router
(ffn_gate_inp) over experts stacked as Qwen3 MoE's are (qwen3moe.py: the fused gate_up_proj split by each expert's
rows into ffn_gate_exps and ffn_up_exps, ffn_down_exps), beside a shared expert (ffn_gate_shexp, ffn_up_shexp,
ffn_down_shexp) whose output is weighed by its gate (`mlp.shared_expert_gate`, [1, hidden]: ffn_gate_inp_shexp)
passed through a sigmoid, in llama.cpp as in transformers. The gate is written as it is, as for Qwen 3.5 MoE
(qwen35moe.py); it and the router stay float32 whatever the pick, as llama.cpp's converter and llama-quantize leave
them.

Keys, as llama.cpp's converter writes them: expert_count, expert_used_count, expert_feed_forward_length (the
experts' width, moe_intermediate_size), expert_shared_feed_forward_length (the shared expert's,
shared_expert_intermediate_size) and feed_forward_length (the config's intermediate_size, which llama.cpp reads only
where a width above is missing).

Router: both softmax over every expert and take the top num_experts_per_tok; llama.cpp's qwen2moe never renormalizes
the chosen weights (as the released models, norm_topk_prob false). Refused in a sentence, before anything is
written: norm_topk_prob true, layers without experts (mlp_only_layers, decoder_sparse_step: llama.cpp's qwen2moe routes
every layer through experts), no shared expert (its loader requires one), a sliding window (it has none), an output
head tied to the embedding (it requires a head of its own) and an activation other than SiLU.

transformers' GGUF reader knows qwen2moe but not the experts' widths (it builds experts of its defaults), so a file is
read back, and imported, with our inverse of `metadata` (`config`).
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, register
from core.gguf_export.architectures.qwen3moe import Qwen3Moe, read_experts, refuse_other_than_llama_cpp, write_experts


@register
class Qwen2Moe(Architecture):
    model_types = ("qwen2_moe",)
    gguf_arch = MODEL_ARCH.QWEN2MOE
    transformers_reads = False  # it reads neither expert width (the module's docstring)
    f32_names = (".ffn_gate_inp.weight", ".ffn_gate_inp_shexp.weight")

    # the experts are Qwen3 MoE's, fused and stacked alike: the same split of gate_up_proj, the same LoRA shapes
    parts = Qwen3Moe.parts
    expert_shapes = Qwen3Moe.expert_shapes

    def check(self, cfg: dict) -> None:
        def refuse(what: str) -> None:
            raise BadArgument(f"This Qwen2 MoE model {what}; export merged safetensors instead.")

        if cfg.get("norm_topk_prob", False):
            refuse("renormalizes the chosen experts' weights to sum to 1 (norm_topk_prob true), and llama.cpp's "
                   "qwen2moe never does, so GGUF would not run it as trained")
        dense = set(cfg.get("mlp_only_layers") or [])
        step = cfg.get("decoder_sparse_step", 1) or 1
        dense |= {i for i in range(cfg["num_hidden_layers"]) if (i + 1) % step}
        if dense:
            refuse(f"has layers without experts ({', '.join(map(str, sorted(dense)[:8]))}), and llama.cpp's qwen2moe "
                   "routes every layer through its experts")
        if not cfg.get("shared_expert_intermediate_size"):
            refuse("has no shared expert, and llama.cpp's qwen2moe requires one in every layer, so GGUF would not load")
        if cfg.get("use_sliding_window") or "sliding_attention" in (cfg.get("layer_types") or []):
            refuse("attends through a sliding window, which llama.cpp's qwen2moe does not")
        refuse_other_than_llama_cpp(cfg, "qwen2moe", refuse, own_head=True)
        super().check(cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        write_experts(cfg, w, shared="shared_expert_intermediate_size")

    def config(self, meta: dict) -> dict:
        return {**super().config(meta), **read_experts(meta, self.name, shared="shared_expert_intermediate_size"),
                "norm_topk_prob": False}

    def config_from_tensors(self, names: set[str], cfg: dict) -> dict:
        """Whether Q, K and V have biases (qkv_bias): no key says."""
        return {"qkv_bias": "blk.0.attn_q.bias" in names}
