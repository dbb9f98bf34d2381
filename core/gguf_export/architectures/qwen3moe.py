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
from core.gguf_export.architectures import Architecture, register, tied

GATE_UP, DOWN = ".mlp.experts.gate_up_proj", ".mlp.experts.down_proj"


def experts(cfg: dict) -> int:
    """The experts of each layer: config.json's num_experts, which transformers 5 keeps as num_local_experts."""
    return cfg.get("num_local_experts") or cfg["num_experts"]


# What the mixtures of experts that hold their experts as Qwen3 MoE does share (Qwen 3.5 MoE, Qwen2 MoE, Mixtral,
# OLMoE): `width` is the config's key for each expert's width (None where llama.cpp reads feed_forward_length for it:
# Mixtral, OLMoE, whose config calls it intermediate_size), `shared` a shared expert's.
def stacked_shapes(cfg: dict, width: str = "moe_intermediate_size") -> dict[str, tuple[int, int]]:
    """Each expert's matrix [rows, columns] in the 3-D weights by parameter name (Architecture.expert_shapes)."""
    hidden, wide = cfg["hidden_size"], cfg[width]
    return {"gate_up_proj": (2 * wide, hidden), "down_proj": (hidden, wide)}


def write_experts(cfg: dict, w: GGUFWriter, width: str | None = "moe_intermediate_size",
                  shared: str | None = None) -> None:
    """The expert keys: expert_count, expert_used_count, and the widths that have keys of their own."""
    w.add_expert_count(experts(cfg))
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    if width:
        w.add_expert_feed_forward_length(cfg[width])
    if shared:
        w.add_expert_shared_feed_forward_length(cfg[shared])


def refuse_other_than_llama_cpp(cfg: dict, arch: str, refuse, own_head: bool = False) -> None:
    """`refuse` (a sentence) where llama.cpp's `arch` would not run the experts as trained: an activation other than
    SiLU, which it always uses in them, or, where it requires a head of its own (`own_head`), a tied one."""
    if own_head and tied(cfg):
        refuse(f"ties its output head to the embedding, and llama.cpp's {arch} requires a head of its own, so GGUF "
               "would not load")
    if cfg.get("hidden_act", "silu") != "silu":
        refuse(f"uses the activation {cfg['hidden_act']}, and llama.cpp's {arch} always uses SiLU in its experts, so "
               "GGUF would not run it as trained")


def read_experts(meta: dict, arch: str, width: str | None = "moe_intermediate_size",
                 shared: str | None = None) -> dict:
    """The inverse of write_experts: the config fields a file's expert keys give (`arch`: the keys' prefix)."""
    fields = {"num_experts": meta.get(f"{arch}.expert_count"),
              "num_experts_per_tok": meta.get(f"{arch}.expert_used_count")}
    if width:
        fields[width] = meta.get(f"{arch}.expert_feed_forward_length")
    if shared:
        fields[shared] = meta.get(f"{arch}.expert_shared_feed_forward_length")
    return fields


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
        return stacked_shapes(cfg)

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
        write_experts(cfg, w)

    def config(self, meta: dict) -> dict:
        return {**super().config(meta), **read_experts(meta, self.name), "norm_topk_prob": True}


class ExpertsAsWide:
    """Qwen3 MoE's experts (and float32 router) in a model whose config gives their width as intermediate_size, the
    key llama.cpp's feed_forward_length is written from (Mixtral, OLMoE): a base for their architectures."""

    f32_names = (".ffn_gate_inp.weight",)
    parts = Qwen3Moe.parts  # the experts fused and stacked as Qwen3 MoE's

    def expert_shapes(self, cfg: dict) -> dict[str, tuple[int, int]]:
        """Each expert's matrix [rows, columns] by parameter name, for the LoRA file (lora_adapter.py)."""
        return stacked_shapes(cfg, "intermediate_size")
