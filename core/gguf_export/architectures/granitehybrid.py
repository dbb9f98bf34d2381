"""The Mamba2 layers of IBM Granite 4.0's hybrid dense models (granite-4.0-h-micro, h-1b, h-350m: model_type
"granitemoehybrid" with Mamba layers beside attention ones and no experts), as llama.cpp's converter writes them: its
granitehybrid architecture. granitemoehybrid.py uses these pieces for such a model; the attention layers, the
feed-forward (input_linear's halves as ffn_gate and ffn_up) and Granite's four scales are as for the dense models.

What llama.cpp reads of a Mamba layer (model.layers.N.mamba.*), and how it gets there:

- in_proj → ssm_in and out_proj → ssm_out, as they are; conv1d → ssm_conv1d, its kernel losing the middle axis of
  1 ([channels, 1, width] → a [channels, width] matrix) and kept float32, the only type llama.cpp's conv reads, its
  bias as it is; dt_bias → ssm_dt.bias, as it is.
- A_log → ssm_a as A = -exp(A_log), and D → ssm_d, each one value a head with an axis of 1 after it; norm (the gated
  RMS norm, by groups) → ssm_norm, one row a group. These stay float32, as the converter keeps them.
- Keys: ssm.conv_kernel, ssm.state_size, ssm.group_count, ssm.inner_size (mamba_expand × the width: llama.cpp takes
  2 alone) and ssm.time_step_rank (the Mamba heads); which layers are Mamba is attention.head_count_kv, one count a
  layer, 0 for a Mamba layer; rope.scaling.finetuned says whether the attention ropes (the released hybrids do not:
  position_embedding_type "nope"), and the feed-forward width is shared_intermediate_size, also as
  expert_shared_feed_forward_length, as the converter writes both.

transformers' GGUF reader does not know granitehybrid, so verification and importing a file read it with our
`config` (`config_fields`: the keys back into a granitemoehybrid config, the conv bias from the tensor names).
The context length is the config's max_position_embeddings, where the converter writes 2^20 for a model without rope
(llama-server would make its cache that long by default). Refused in a sentence, where llama.cpp would not run the
model as trained: an expansion other than 2, convolutions without a bias (llama.cpp adds the bias it takes to be
there: llama-server crashes loading such a file), biases on in_proj and out_proj (llama.cpp reads none), a limit on
the time step (llama.cpp's scan does not clamp it) and an activation other than SiLU.
"""

from __future__ import annotations

import math

import numpy as np
from gguf import GGUFWriter, MODEL_ARCH, MODEL_ARCH_NAMES

from core.errors import BadArgument

ARCH = MODEL_ARCH.GRANITE_HYBRID
NAME = MODEL_ARCH_NAMES[ARCH]  # "granitehybrid"
MAMBA = ("mamba", "linear_attention")  # config.json's name for a Mamba layer, and transformers 5's after reading it
KERNEL, A, D, NORM = ".ssm_conv1d.weight", ".ssm_a", ".ssm_d", ".ssm_norm.weight"
F32 = (KERNEL, A, D, NORM)  # float32 in the file, as llama.cpp's converter keeps them
UNLIMITED = (0.0, math.inf)  # transformers' time_step_limit that clamps nothing


def layer_types(cfg: dict) -> list[str]:
    """The layers' kinds as the config states them; transformers makes every layer Mamba where it states none."""
    return list(cfg.get("layer_types") or cfg.get("layers_block_type") or ["mamba"] * cfg["num_hidden_layers"])


def mamba_layers(cfg: dict) -> list[int]:
    return [i for i, kind in enumerate(layer_types(cfg)) if kind in MAMBA]


def inner(cfg: dict) -> int:
    return cfg.get("mamba_expand", 2) * cfg["hidden_size"]


def hf_name(name: str) -> str:
    """dt_bias as the name map knows it: a bias of dt_proj, which has no weight."""
    return name.removesuffix(".dt_bias") + ".dt_proj.bias" if name.endswith(".mamba.dt_bias") else name


# --- tensors -----------------------------------------------------------------------------------------
def gguf_shape(gguf_name: str, shape: tuple[int, ...], cfg: dict) -> tuple[int, ...]:
    if gguf_name.endswith(KERNEL):
        return (shape[0], shape[-1])
    if gguf_name.endswith((A, D)):
        return (*shape, 1)
    if gguf_name.endswith(NORM):
        groups = cfg.get("mamba_n_groups", 1)
        return (groups, shape[0] // groups)
    return shape


def transform(gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
    if gguf_name.endswith(A):
        array = -np.exp(array.astype(np.float64))
    return array.reshape(gguf_shape(gguf_name, array.shape, cfg))


def untransform(gguf_name: str, array: np.ndarray, cfg: dict) -> np.ndarray:
    if gguf_name.endswith(KERNEL):
        return array.reshape(array.shape[0], 1, array.shape[-1])
    if gguf_name.endswith(A):
        with np.errstate(invalid="ignore", divide="ignore"):  # an A of 0 or above, which no exp gives
            return np.log(-array.astype(np.float64)).reshape(-1)
    return array.reshape(-1)  # D and the norm


def untransforms(gguf_name: str) -> bool:
    return gguf_name.endswith(F32)


# --- metadata ----------------------------------------------------------------------------------------
def check(cfg: dict) -> None:
    """A sentence for a Mamba setting llama.cpp's granitehybrid cannot carry."""
    if cfg.get("mamba_expand", 2) != 2:
        raise BadArgument(f"This Granite 4.0 model's Mamba layers expand its width {cfg['mamba_expand']} times, and "
                          "llama.cpp's granitehybrid only twice, so GGUF would not run it; export merged safetensors "
                          "instead.")
    if not cfg.get("mamba_conv_bias", True):
        raise BadArgument("This Granite 4.0 model's Mamba convolutions have no bias, and llama.cpp's granitehybrid "
                          "adds one whether the file has it or not (llama-server crashes on such a file); export "
                          "merged safetensors instead.")
    if cfg.get("mamba_proj_bias"):
        raise BadArgument("This Granite 4.0 model's Mamba projections have biases, and llama.cpp's granitehybrid "
                          "reads none, so GGUF would not run it as trained; export merged safetensors instead.")
    limit = tuple(cfg.get("time_step_limit") or UNLIMITED)
    if limit != UNLIMITED:
        raise BadArgument(f"This Granite 4.0 model limits its Mamba time step to {list(limit)}, and llama.cpp's "
                          "granitehybrid does not, so GGUF would not run it as trained; export merged safetensors "
                          "instead.")
    if cfg.get("hidden_act", "silu") != "silu":
        raise BadArgument(f"This Granite 4.0 model's activation is {cfg['hidden_act']}, and llama.cpp's "
                          "granitehybrid takes SiLU, so GGUF would not run it as trained; export merged safetensors "
                          "instead.")


def metadata(cfg: dict, w: GGUFWriter) -> None:
    """The keys past Granite's (written with the key heads one a layer, 0 for a Mamba layer)."""
    w.add_expert_shared_feed_forward_length(cfg["shared_intermediate_size"])
    w.add_ssm_conv_kernel(cfg["mamba_d_conv"])
    w.add_ssm_state_size(cfg["mamba_d_state"])
    w.add_ssm_group_count(cfg["mamba_n_groups"])
    w.add_ssm_inner_size(inner(cfg))
    w.add_ssm_time_step_rank(cfg["mamba_n_heads"])
    w.add_rope_scaling_finetuned(cfg.get("position_embedding_type") == "rope")


def key_heads(cfg: dict) -> list[int]:
    mamba = set(mamba_layers(cfg))
    heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    return [0 if i in mamba else heads for i in range(cfg["num_hidden_layers"])]


def config_fields(meta: dict, cfg: dict) -> dict:
    """The inverse of `metadata` (and of the key heads a layer), given Granite's config of the file (`cfg`): the
    granitemoehybrid fields, with the layers named as config.json names them."""
    def key(name: str):
        return meta[f"{NAME}.{name}"]

    per_layer = key("attention.head_count_kv")
    per_layer = per_layer if isinstance(per_layer, list) else [per_layer] * cfg["num_hidden_layers"]
    width, heads, size = cfg["hidden_size"], key("ssm.time_step_rank"), key("ssm.inner_size")
    return {"num_key_value_heads": max(per_layer) or cfg["num_attention_heads"],
            "layer_types": ["attention" if n else "mamba" for n in per_layer],
            "shared_intermediate_size": cfg["intermediate_size"], "num_local_experts": 0, "num_experts_per_tok": 0,
            "position_embedding_type": "rope" if meta.get(f"{NAME}.rope.scaling.finetuned", True) else "nope",
            "mamba_d_conv": key("ssm.conv_kernel"), "mamba_d_state": key("ssm.state_size"),
            "mamba_n_groups": key("ssm.group_count"), "mamba_n_heads": heads, "mamba_d_head": size // heads,
            "mamba_expand": size // width, "mamba_proj_bias": False}


def fields_from_tensors(names: set[str]) -> dict:
    """Whether the Mamba convolutions have a bias, which no key says."""
    return {"mamba_conv_bias": any(n.endswith(".ssm_conv1d.bias") for n in names)}
