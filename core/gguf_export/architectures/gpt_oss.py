"""OpenAI's gpt-oss (model_type "gpt_oss": gpt-oss-20b, gpt-oss-120b), written as llama.cpp's gpt-oss (its graph:
src/models/openai-moe.cpp): attention with biases on Q, K, V and the output (llama.cpp requires the output's) and a
learned sink per head (`self_attn.sinks`, written attn_sinks.weight as llama.cpp's converter names it), which joins
each row's softmax and is dropped after it, as transformers does; NeoX rope (halves rotated, as transformers' gpt-oss
does); layers alternating a sliding window with full attention; and in every layer a mixture of experts.

Sliding layers: transformers' config lists them (layer_types; by default the even layers 0, 2, ...), llama.cpp
reads attention.sliding_window and a pattern, by default every other layer from the first (set_swa_pattern(2): the
same). We write the pattern as an array of the layers (attention.sliding_window_pattern, which llama.cpp reads before
its default), so any order of them is carried. Both mask a key `window` or more positions back. Rope: one setting for
both kinds of layer, YaRN as the released models have it (factor 32 over an original 4096 positions: the base keys
rope.scaling.type, .factor and .original_context_length; llama.cpp fixes beta_fast 32 and beta_slow 1, reads no
other YaRN key for this architecture and gives attention the YaRN scale 0.1·ln(factor) + 1, as transformers does by
default: `check` refuses settings that differ). llama.cpp rounds the ends of YaRN's ramp to whole dimensions (floor,
ceil), which gpt-oss's config asks not to (truncate: false), so a file of a released model ropes a few middle
frequencies slightly otherwise than transformers, as llama.cpp's own conversions of it do (the tests' tiny model with
truncate false: a next-token log-probability 1.8e-3 away in llama-server; with truncate true, as the tests' row has
it, 1.1e-6). A file comes back with truncate true: what llama.cpp computes.

The experts, as transformers 5 holds them (and the released checkpoints' dequantized tensors): `mlp.experts.
gate_up_proj` [experts, hidden, 2 × intermediate] stored [in, out] (x @ W), the gate and up projections INTERLEAVED
by column (gate in the even columns, up in the odd: GptOssExperts._apply_gate), with `gate_up_proj_bias`
[experts, 2 × intermediate] interleaved alike; `down_proj` [experts, intermediate, hidden], `down_proj_bias`
[experts, hidden]. llama.cpp wants ffn_gate_exps and ffn_up_exps [experts, intermediate, hidden] (ggml's ne
[hidden, intermediate, experts]), ffn_down_exps [experts, hidden, intermediate], each with a `.bias` [experts, width].
So `parts` takes gate_up_proj's even and odd columns (`split_columns`: writer.TensorPlan.of takes `[..., 0::2]`, not
rows) and `transform` turns each expert's matrix to [out, in]. The router (`mlp.router`, [experts, hidden], and its
bias) is ffn_gate_inp; llama.cpp picks the top experts_per_token of its logits and softmaxes over the chosen ones
alone (SOFTMAX_WEIGHT, unscaled), as transformers' GptOssTopKRouter does. The experts' activation is the clamped
SwiGLU, gate clamped above at `swiglu_limit`, up at ±limit, out = (up + 1) · gate · sigmoid(alpha · gate), which
llama.cpp hardcodes with alpha 1.702 and limit 7.0 (ggml_swiglu_oai): `check` refuses a config with others.

The experts are written in the export's chosen type (f32, f16, q8_0, ...), not MXFP4 as llama.cpp's converter
writes the released checkpoints: a fine-tune's merged weights are no longer MXFP4. The router, the sinks and the
experts' 2-D biases stay float32 whatever the pick (llama.cpp adds the biases to float32 activations per chosen
expert; the router and sinks are a few thousand values), as the converter leaves them.

Refused in a sentence, before anything is written: another SwiGLU clamp, no attention biases and a head tied to the
embedding (llama.cpp requires attn_output.bias and output.weight), no sliding window (llama.cpp requires one), and
YaRN settings or a partial rotary factor llama.cpp would not compute.

LoRA file: peft knows these stacks are [in, out] (transformers marks the experts `is_transposed`), so its pair on one
is A [experts, rank, in] and B [experts, out, rank] as on any other: B·A is each expert's update as llama.cpp holds
the weight, [out, in]. So a pair takes no transpose (`lora_transform`), and the fused gate_up's splits by B's rows,
the interleaved outputs (`expert_shapes` gives each expert's update as [out, in]).

transformers' GGUF reader knows gpt-oss by other tensor names (ffn_*_projs) and no expert width, so a file is read
back, and imported, with our inverse of `metadata` (`config`).
"""

from __future__ import annotations

import math

import numpy as np
from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, register, rope, tied
from core.gguf_export.architectures.qwen3moe import stacked_shapes, write_experts

GATE_UP, GATE_UP_BIAS = ".mlp.experts.gate_up_proj", ".mlp.experts.gate_up_proj_bias"
DOWN, DOWN_BIAS = ".mlp.experts.down_proj", ".mlp.experts.down_proj_bias"
SINKS = ".self_attn.sinks"
STACKS = (".ffn_gate_exps.weight", ".ffn_up_exps.weight", ".ffn_down_exps.weight")  # each expert's matrix [in, out]
ALPHA, LIMIT = 1.702, 7.0  # llama.cpp's clamped SwiGLU (LLM_FFN_SWIGLU_OAI_MOE)
BETA_FAST, BETA_SLOW = 32.0, 1.0  # llama.cpp's YaRN ramp (llama_hparams' defaults)


@register
class GptOss(Architecture):
    model_types = ("gpt_oss",)
    gguf_arch = MODEL_ARCH.GPT_OSS
    transformers_reads = False  # its reader wants other expert names (the module's docstring)
    f32_names = (".ffn_gate_inp.weight", ".attn_sinks.weight", ".ffn_gate_exps.bias", ".ffn_up_exps.bias",
                 ".ffn_down_exps.bias")

    def lora_transform(self, gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
        return array  # (`transform` only turns [in, out] stacks to [out, in], which peft's pairs are already)

    def expert_shapes(self, cfg: dict) -> dict[str, tuple[int, int]]:
        """Each expert's update [out, in] by parameter name, as peft's pairs on the [in, out] stacks make it
        (lora_adapter.py)."""
        return stacked_shapes(cfg, "intermediate_size")

    def split_columns(self, hf_name: str) -> bool:
        """Whether `parts` takes this tensor's columns (its last axis) rather than rows: gate_up_proj and its bias,
        whose gate and up outputs alternate along it."""
        return hf_name.endswith((GATE_UP, GATE_UP_BIAS))

    def parts(self, hf_name: str, rows: int) -> list[tuple[str, slice | None]]:
        if hf_name.endswith(GATE_UP):  # `rows`: the columns here (split_columns)
            stem = hf_name.removesuffix("gate_up_proj")
            return [(stem + "gate_proj.weight", slice(0, rows, 2)), (stem + "up_proj.weight", slice(1, rows, 2))]
        if hf_name.endswith(GATE_UP_BIAS):
            stem = hf_name.removesuffix("gate_up_proj_bias")
            return [(stem + "gate_proj.bias", slice(0, rows, 2)), (stem + "up_proj.bias", slice(1, rows, 2))]
        if hf_name.endswith(DOWN):
            return [(hf_name + ".weight", None)]
        if hf_name.endswith(DOWN_BIAS):
            return [(hf_name.removesuffix("_bias") + ".bias", None)]
        if hf_name.endswith(SINKS):
            return [(hf_name + ".weight", None)]
        return [(hf_name, None)]

    # --- tensors: each expert's matrix from [in, out] to llama.cpp's [out, in], and back -------------------------
    def transform(self, gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
        return np.swapaxes(array, -1, -2) if gguf_name.endswith(STACKS) else array

    def untransform(self, gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
        return self.transform(gguf_name, array, cfg)  # a transpose is its own inverse

    def untransforms(self, gguf_name: str, cfg: dict) -> bool:
        return gguf_name.endswith(STACKS)

    def gguf_shape(self, gguf_name: str, shape: tuple[int, ...], cfg: dict) -> tuple[int, ...]:
        return (*shape[:-2], shape[-1], shape[-2]) if gguf_name.endswith(STACKS) else shape

    # --- metadata --------------------------------------------------------------------------------------------
    def check(self, cfg: dict) -> None:
        def refuse(what: str) -> None:
            raise BadArgument(f"This gpt-oss model {what}; export merged safetensors instead.")

        alpha, limit = cfg.get("swiglu_alpha", ALPHA), cfg.get("swiglu_limit", LIMIT)
        if (alpha, limit) != (ALPHA, LIMIT):
            refuse(f"clamps its experts' SwiGLU with alpha {alpha} and limit {limit}, and llama.cpp's gpt-oss always "
                   f"uses {ALPHA} and {LIMIT}, so GGUF would not run it as trained")
        if not cfg.get("attention_bias", True):
            refuse("has no attention biases, and llama.cpp's gpt-oss requires the output projection's, so GGUF would "
                   "not load")
        if tied(cfg):
            refuse("ties its output head to the embedding, and llama.cpp's gpt-oss requires a head of its own, so "
                   "GGUF would not load")
        if not cfg.get("sliding_window"):
            refuse("has no sliding window, and llama.cpp's gpt-oss requires one, so GGUF would not load")
        scaling = rope(cfg)
        if float(scaling.get("partial_rotary_factor") or 1.0) != 1.0:
            refuse(f"ropes {scaling['partial_rotary_factor']} of each head, and llama.cpp's gpt-oss the whole head")
        if scaling.get("rope_type") == "yarn":
            betas = (float(scaling.get("beta_fast") or BETA_FAST), float(scaling.get("beta_slow") or BETA_SLOW))
            if betas != (BETA_FAST, BETA_SLOW):
                refuse(f"ramps YaRN with beta_fast {betas[0]:g} and beta_slow {betas[1]:g}, and llama.cpp's gpt-oss "
                       f"always with {BETA_FAST:g} and {BETA_SLOW:g}")
            factor = float(scaling.get("factor") or 1.0)
            default = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
            given = scaling.get("attention_factor")
            if (given is not None and not math.isclose(given, default, rel_tol=1e-6)) or \
                    (scaling.get("mscale") and scaling.get("mscale_all_dim")):
                refuse(f"scales YaRN's attention otherwise than 0.1·ln(factor) + 1 = {default:.4g}, which llama.cpp's "
                       "gpt-oss always uses")
        super().check(cfg)

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        write_experts(cfg, w, width="intermediate_size")
        w.add_sliding_window(cfg["sliding_window"])
        w.add_sliding_window_pattern([kind == "sliding_attention" for kind in layer_types(cfg)])

    def config(self, meta: dict) -> dict:
        def key(name: str):
            return meta.get(f"{self.name}.{name}")

        cfg = {**super().config(meta), "num_local_experts": key("expert_count"),
               "num_experts_per_tok": key("expert_used_count"), "intermediate_size": key("expert_feed_forward_length"),
               "sliding_window": key("attention.sliding_window")}
        pattern = key("attention.sliding_window_pattern")  # absent from llama.cpp's own files: its default, below
        if not isinstance(pattern, (list, tuple)):
            pattern = [i % 2 == 0 for i in range(cfg["num_hidden_layers"])]
        cfg["layer_types"] = ["sliding_attention" if sliding else "full_attention" for sliding in pattern]
        if cfg["rope_parameters"].get("rope_type") == "yarn":  # llama.cpp rounds the ramp's ends (the docstring)
            cfg["rope_parameters"] = {**cfg["rope_parameters"], "beta_fast": BETA_FAST, "beta_slow": BETA_SLOW,
                                      "truncate": True}
        return cfg


def layer_types(cfg: dict) -> list[str]:
    """Each layer's attention, as the config lists it or transformers' default gives it (the even layers sliding)."""
    return cfg.get("layer_types") or ["sliding_attention" if i % 2 == 0 else "full_attention"
                                      for i in range(cfg["num_hidden_layers"])]
