"""IBM Granite 4.0's dense models (model_type "granitemoehybrid", GraniteMoeHybridForCausalLM, with every layer
attention and no experts: micro, 1b, 350m), written as Granite 3 (granite.py), as llama.cpp's converter writes them:
its plain granite architecture.

Apart from names they are Granite 3 models: the same attention, norms and four scales. The feed-forward's gate and
up projections are one matrix, `shared_mlp.input_linear` ([2 × shared_intermediate_size, hidden]: the gate's rows,
then the up's, as transformers chunks its output), the down projection `shared_mlp.output_linear`, and the config
names the width `shared_intermediate_size`. So this architecture is Granite's, given the checkpoint as Granite names
it, through the base class's hook (`written_config`, `parts`): input_linear's halves become mlp.gate_proj and
mlp.up_proj (ffn_gate, ffn_up), output_linear mlp.down_proj (ffn_down); a LoRA on input_linear becomes two pairs,
each with the whole A and its half of B's rows. Everything past that (metadata, Q/K order, verification, the
reading back) is Granite's; verification compares the file's answers with the model's own class, and importing the
file gives a granite model with the same weights under Granite 3's names.

Refused in a sentence before anything is written: Mamba layers (the hybrid models, granite-4.0-h-*: llama.cpp's
granitehybrid, which we do not write yet), experts (llama.cpp's granitemoe), attention without rope
(position_embedding_type other than "rope": llama.cpp's granite always ropes), and whatever Granite refuses.
"""

from __future__ import annotations

from core.errors import BadArgument
from core.gguf_export.architectures import register
from core.gguf_export.architectures.granite import Granite

INPUT, OUTPUT = ".shared_mlp.input_linear.weight", ".shared_mlp.output_linear.weight"
MAMBA = ("mamba", "linear_attention")  # config.json's name for a Mamba layer, and transformers 5's after reading it


def layer_types(cfg: dict) -> list[str]:
    """The layers' kinds as the config states them; transformers makes every layer Mamba where it states none."""
    return list(cfg.get("layer_types") or cfg.get("layers_block_type") or ["mamba"] * cfg["num_hidden_layers"])


@register
class GraniteMoeHybrid(Granite):
    model_types = ("granitemoehybrid",)

    def written_config(self, cfg: dict) -> dict:
        return {**cfg, "model_type": "granite", "intermediate_size": cfg["shared_intermediate_size"], "mlp_bias": False}

    def parts(self, hf_name: str, rows: int) -> list[tuple[str, slice | None]]:
        if hf_name.endswith(INPUT):  # the gate's rows, then the up's
            stem = hf_name.removesuffix(INPUT) + ".mlp."
            return [(stem + "gate_proj.weight", slice(0, rows // 2)), (stem + "up_proj.weight", slice(rows // 2, rows))]
        if hf_name.endswith(OUTPUT):
            return [(hf_name.removesuffix(OUTPUT) + ".mlp.down_proj.weight", None)]
        return [(hf_name, None)]

    def check(self, cfg: dict) -> None:
        mamba = [i for i, kind in enumerate(layer_types(cfg)) if kind in MAMBA]
        if mamba:
            raise BadArgument(f"This Granite 4.0 model has Mamba layers ({', '.join(map(str, mamba[:8]))}), which "
                              "GGUF export does not carry yet (llama.cpp's granitehybrid); export merged safetensors "
                              "instead.")
        if cfg.get("num_local_experts", 8):  # transformers' default
            raise BadArgument(f"This Granite 4.0 model has {cfg['num_local_experts']} experts, which GGUF export does "
                              "not carry yet (llama.cpp's granitemoe); export merged safetensors instead.")
        if cfg.get("position_embedding_type") != "rope":
            raise BadArgument(f"This Granite 4.0 model's attention has no rope (position_embedding_type "
                              f"{cfg.get('position_embedding_type')!r}), and llama.cpp's granite always ropes, so GGUF "
                              "would not run it as trained; export merged safetensors instead.")
        super().check(self.written_config(cfg))
