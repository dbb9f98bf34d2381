"""Qwen 3.5's mixtures of experts (model_type "qwen3_5_moe_text": the language model of Qwen3.5-35B-A3B, -122B-A10B and
-397B-A17B), written as llama.cpp's qwen35moe: Qwen 3.5's layers (qwen35.py: Gated DeltaNet three layers of four,
gated full attention every fourth, the norms written + 1, the value heads reordered) with, in place of the dense
feed-forward, Qwen3 MoE's routed experts (qwen3moe.py: the fused gate_up_proj split by each expert's rows into
ffn_gate_exps and ffn_up_exps, ffn_down_exps, the router ffn_gate_inp) and a shared expert beside them in every
layer (ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp).

The shared expert's gate (`mlp.shared_expert_gate`, a linear layer to one value: [1, hidden]) is llama.cpp's
ffn_gate_inp_shexp, which it passes through a sigmoid and multiplies into the shared expert's output, as transformers
does; llama.cpp's converter writes it as it is, so we do too. It and the router stay float32 whatever the pick, as
the converter and llama-quantize leave them (a few thousand values that weigh or choose the experts).

Keys: expert_count, expert_used_count, expert_feed_forward_length and expert_shared_feed_forward_length. The model has
no dense feed-forward, so its config has no intermediate_size and no feed_forward_length is written (llama.cpp reads
that only in place of a missing expert width), as llama.cpp's converter writes none.

What llama.cpp's qwen35moe does that transformers' model does too, so nothing there is refused: a softmax over every
expert, the chosen ones' weights renormalized to sum to 1 (transformers' router always renormalizes: the config has
no norm_topk_prob), no scale on them, experts and the gated shared expert in every layer. Refused in a sentence before
anything is written: what qwen35.py refuses, a model without a shared expert (llama.cpp's loader requires its
tensors), and an activation other than SiLU (llama.cpp's experts and shared expert use SiLU whatever the config says).

transformers' GGUF reader knows qwen35moe (its config, the experts put back together, the shared expert's gate), so
verification reads our files with it.
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import register
from core.gguf_export.architectures.qwen35 import Qwen35
from core.gguf_export.architectures.qwen3moe import Qwen3Moe, refuse_other_than_llama_cpp, write_experts


@register
class Qwen35Moe(Qwen35):
    model_types = ("qwen3_5_moe_text",)
    gguf_arch = MODEL_ARCH.QWEN35MOE
    f32_names = (*Qwen35.f32_names, ".ffn_gate_inp.weight", ".ffn_gate_inp_shexp.weight")

    # the experts are Qwen3 MoE's, fused and stacked alike: the same split of gate_up_proj, the same LoRA shapes
    parts = Qwen3Moe.parts
    expert_shapes = Qwen3Moe.expert_shapes

    def check(self, cfg: dict) -> None:
        super().check(cfg)

        def refuse(what: str) -> None:
            raise BadArgument(f"This Qwen 3.5 MoE model {what}; export merged safetensors instead.")

        if not cfg.get("shared_expert_intermediate_size"):
            refuse("has no shared expert, and llama.cpp's qwen35moe requires one in every layer, so GGUF would not "
                   "load")
        refuse_other_than_llama_cpp(cfg, "qwen35moe", refuse)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        write_experts(cfg, w, shared="shared_expert_intermediate_size")
