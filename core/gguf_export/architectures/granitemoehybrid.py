"""IBM Granite 4.0's dense models (model_type "granitemoehybrid", GraniteMoeHybridForCausalLM, no experts), as
llama.cpp's converter writes them: those with every layer attention (micro, 1b, 350m) as its plain granite
architecture, like Granite 3 (granite.py); the hybrids with Mamba2 layers (h-micro, h-1b, h-350m) as its
granitehybrid, whose Mamba layers granitehybrid.py describes.

Apart from names the attention-only models are Granite 3 models: the same attention, norms and four scales. The
feed-forward's gate and up projections are one matrix, `shared_mlp.input_linear` ([2 × shared_intermediate_size,
hidden]: the gate's rows, then the up's, as transformers chunks its output), the down projection
`shared_mlp.output_linear`, and the config names the width `shared_intermediate_size`. So this architecture is
Granite's, given the checkpoint as Granite names it, through the base class's hook (`written_config`, `parts`):
input_linear's halves become mlp.gate_proj and mlp.up_proj (ffn_gate, ffn_up), output_linear mlp.down_proj
(ffn_down); a LoRA on input_linear becomes two pairs, each with the whole A and its half of B's rows. Everything past
that (metadata, Q/K order, verification, the reading back) is Granite's; verification compares the file's answers
with the model's own class, and importing the file gives a granite model with the same weights under Granite 3's
names.

A hybrid keeps its config, its feed-forward split the same way, and its attention layers Granite's handling (Q/K in
llama.cpp's rope order, as the converter writes them whether or not the model ropes: the same order on both leaves the
scores as they are); it imports as the granitemoehybrid model it is. One model type written as two llama.cpp
architectures: `variant` gives the one for a config (GraniteHybrid where a layer is Mamba), and a granitehybrid file
finds GraniteHybrid by its name (`register_variant`).

Refused in a sentence before anything is written: experts (llama.cpp's granitemoe), attention without rope in a
model without Mamba layers (position_embedding_type other than "rope": llama.cpp's granite always ropes), what
granitehybrid.py refuses of a hybrid, and whatever Granite refuses.
"""

from __future__ import annotations

from gguf import GGUFWriter

from core.errors import BadArgument
from core.gguf_export.architectures import SKIPPED, Architecture, _name_map, register, register_variant, tied
from core.gguf_export.architectures import granitehybrid as hybrid
from core.gguf_export.architectures.granite import Granite

INPUT, OUTPUT = ".shared_mlp.input_linear.weight", ".shared_mlp.output_linear.weight"


def is_hybrid(cfg: dict) -> bool:
    return bool(hybrid.mamba_layers(cfg))


@register
class GraniteMoeHybrid(Granite):
    model_types = ("granitemoehybrid",)

    def variant(self, cfg: dict) -> Architecture:
        return HYBRID if is_hybrid(cfg) else self

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
        if cfg.get("num_local_experts", 8):  # transformers' default
            raise BadArgument(f"This Granite 4.0 model has {cfg['num_local_experts']} experts, which GGUF export does "
                              "not carry yet (llama.cpp's granitemoe); export merged safetensors instead.")
        if is_hybrid(cfg):
            hybrid.check(cfg)
        elif cfg.get("position_embedding_type") != "rope":
            raise BadArgument(f"This Granite 4.0 model's attention has no rope (position_embedding_type "
                              f"{cfg.get('position_embedding_type')!r}), and llama.cpp's granite always ropes, so GGUF "
                              "would not run it as trained; export merged safetensors instead.")
        super().check(self.written_config(cfg))


@register_variant
class GraniteHybrid(GraniteMoeHybrid):
    """A Granite 4.0 hybrid (Mamba2 and attention layers) as llama.cpp's granitehybrid (granitehybrid.py)."""
    gguf_arch = hybrid.ARCH
    f32_names = hybrid.F32

    def variant(self, cfg: dict) -> Architecture:
        return self

    def written_config(self, cfg: dict) -> dict:
        return cfg

    def gguf_name(self, hf_name, cfg):
        if hf_name.endswith(SKIPPED) or (hf_name == "lm_head.weight" and tied(cfg)):
            return None
        return _name_map(self.gguf_arch, cfg["num_hidden_layers"]).get_name(hybrid.hf_name(hf_name),
                                                                            try_suffixes=(".weight", ".bias"))

    def gguf_shape(self, gguf_name, shape, cfg):
        return hybrid.gguf_shape(gguf_name, shape, cfg)

    def transform(self, gguf_name, array, cfg):
        if gguf_name.endswith(hybrid.F32):
            return hybrid.transform(gguf_name, array, cfg)
        return super().transform(gguf_name, array, cfg)

    def untransform(self, gguf_name, array, cfg):
        if hybrid.untransforms(gguf_name):
            return hybrid.untransform(gguf_name, array, cfg)
        return super().untransform(gguf_name, array, cfg)

    def untransforms(self, gguf_name, cfg):
        return hybrid.untransforms(gguf_name) or super().untransforms(gguf_name, cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata({**cfg, "intermediate_size": cfg["shared_intermediate_size"],
                          "num_key_value_heads": hybrid.key_heads(cfg)}, w)
        hybrid.metadata(cfg, w)

    def config(self, meta: dict) -> dict:
        cfg = super().config(meta)
        return {**cfg, **hybrid.config_fields(meta, cfg)}

    def config_from_tensors(self, names, cfg):
        return hybrid.fields_from_tensors(names)


HYBRID = GraniteHybrid()
