"""Qwen3's mixtures of experts (model_type "qwen3_moe": Qwen3-30B-A3B, Qwen3-235B-A22B, Qwen3-Coder-30B-A3B), written
as llama.cpp's qwen3moe: Qwen3's attention (Q/K norms, a head size of its own) and, in every layer, a router
(ffn_gate_inp, [experts, hidden]) over experts stored as one 3-D tensor per projection (ffn_gate_exps, ffn_up_exps
[experts, moe_intermediate_size, hidden]; ffn_down_exps [experts, hidden, moe_intermediate_size]: ggml's ne the
other way round, [in, out, experts]), with the keys expert_count, expert_used_count and
expert_feed_forward_length.

transformers 5 holds each layer's experts fused: `mlp.experts.gate_up_proj` [experts, 2 × moe_intermediate_size,
hidden], each expert's gate rows then its up rows, and `mlp.experts.down_proj`. So `parts` splits gate_up_proj by
the rows of each expert's matrix (writer.TensorPlan.of: `[..., rows, :]`) into the names llama.cpp's map reads
(`mlp.experts.gate_proj.weight`, `up_proj`), as llama.cpp's converter does. Released checkpoints store one tensor
per expert instead, which transformers fuses as it loads; those reach the export through the whole-model merge
(merge.py), whose tensors are the model's own, fused.

The router stays float32 whatever the pick, as llama.cpp's converter and llama-quantize leave it (a few thousand
values that choose the experts). llama.cpp's qwen3moe always renormalizes the chosen experts' weights to sum to 1,
routes every layer through the experts, has no shared expert, no sliding window and no output-projection bias:
`check` refuses a model that differs in a sentence, before anything is written.

transformers' GGUF reader knows qwen3moe but not expert_feed_forward_length (it builds experts of its default
width), so a file is read back, and imported, with our inverse of `metadata` (`config`).
"""

from __future__ import annotations

from gguf import MODEL_ARCH, GGUFWriter

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, register

GATE_UP, DOWN = ".mlp.experts.gate_up_proj", ".mlp.experts.down_proj"


def experts(cfg: dict) -> int:
    """The experts of each layer: config.json's num_experts, which transformers 5 keeps as num_local_experts."""
    return cfg.get("num_local_experts") or cfg["num_experts"]


@register
class Qwen3Moe(Architecture):
    model_types = ("qwen3_moe",)
    gguf_arch = MODEL_ARCH.QWEN3MOE
    transformers_reads = False  # it reads no moe_intermediate_size (the module's docstring)
    f32_names = (".ffn_gate_inp.weight",)

    def parts(self, hf_name: str, rows: int) -> list[tuple[str, slice | None]]:
        if hf_name.endswith(GATE_UP):  # each expert's gate rows, then its up rows
            stem = hf_name.removesuffix("gate_up_proj")
            return [(stem + "gate_proj.weight", slice(0, rows // 2)), (stem + "up_proj.weight", slice(rows // 2, rows))]
        if hf_name.endswith(DOWN):
            return [(hf_name + ".weight", None)]
        return [(hf_name, None)]

    def expert_shapes(self, cfg: dict) -> dict[str, tuple[int, int]]:
        """Each expert's matrix [rows, columns] in the 3-D weights, by parameter name: what a LoRA file takes a peft
        target_parameters adapter for (core/gguf_export/lora_adapter.py)."""
        hidden, width = cfg["hidden_size"], cfg["moe_intermediate_size"]
        return {"gate_up_proj": (2 * width, hidden), "down_proj": (hidden, width)}

    def check(self, cfg: dict) -> None:
        def refuse(what: str) -> None:
            raise BadArgument(f"This Qwen3 MoE model {what}; export merged safetensors instead.")

        if not cfg.get("norm_topk_prob", False):  # transformers' default is False; the released models set True
            refuse("leaves the chosen experts' weights unnormalized (norm_topk_prob false), and llama.cpp's qwen3moe "
                   "always renormalizes them to sum to 1, so GGUF would not run it as trained")
        dense = sorted(cfg.get("mlp_only_layers") or [])
        step = cfg.get("decoder_sparse_step", 1) or 1
        if step != 1:
            dense = sorted(set(dense) | {i for i in range(cfg["num_hidden_layers"]) if (i + 1) % step})
        if dense:
            refuse(f"has layers without experts ({', '.join(map(str, dense[:8]))}), and llama.cpp's qwen3moe routes "
                   "every layer through its experts")
        if cfg.get("shared_expert_intermediate_size"):
            refuse("has a shared expert, which llama.cpp's qwen3moe does not read")
        if cfg.get("use_sliding_window"):
            refuse("attends through a sliding window, which llama.cpp's qwen3moe does not")
        if cfg.get("attention_bias"):
            refuse("has attention biases, and llama.cpp's qwen3moe reads none on the output projection")
        super().check(cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        w.add_expert_count(experts(cfg))
        w.add_expert_used_count(cfg["num_experts_per_tok"])
        w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])

    def config(self, meta: dict) -> dict:
        def key(name: str):
            return meta.get(f"{self.name}.{name}")

        return {**super().config(meta), "num_experts": key("expert_count"),
                "num_experts_per_tok": key("expert_used_count"),
                "moe_intermediate_size": key("expert_feed_forward_length"), "norm_topk_prob": True}
