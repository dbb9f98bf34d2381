"""Qwen 3.5 (dense; model_type "qwen3_5_text", llama.cpp's qwen35): a hybrid of Gated DeltaNet linear attention
and gated full attention, three layers of four linear.

What differs from Qwen3 on the way to llama.cpp:

- Norms: HF's zero-centred RMS norms multiply by (1 + weight), llama.cpp's by weight, so they are written + 1, as
  for Gemma; all but the linear layers' gated norm (ssm_norm), which multiplies by its weight as it is.
- Full-attention layers: q_proj holds each head's query and its output gate side by side (twice the rows), which
  llama.cpp's attn_q takes unchanged and splits itself; Q/K norms as Qwen3's; rope on a quarter of each head
  (rope.dimension_count) in the NeoX layout HF uses, as interleaved multimodal rope (rope.dimension_sections).
  For text every section gets the same position, so the sections only matter where one leaves a rotated pair
  without a position (llama.cpp then gives it the fourth, zero), or their sum passes the head size (ggml stops).
- Linear layers: A_log becomes A = -exp(A_log) (ssm_a), dt_bias a bias (ssm_dt.bias), the conv1d kernel loses its
  middle axis of 1 and is kept float32 (llama.cpp's conv reads no other type). Where a key head serves several
  value heads, HF groups the value heads by key head and llama.cpp tiles them ([k0, k1, k0, k1, ...]: its
  broadcast repeats the key heads whole), so every tensor indexed by value head is reordered: the V rows of
  in_proj_qkv and of the conv kernel, in_proj_z, in_proj_a/b, A and dt_bias, and out_proj's columns.
- Keys: the linear layers' sizes as llama.cpp's ssm.* keys, and which layers are full as full_attention_interval.
  transformers' GGUF reader knows qwen35 (config, and the inverse of each transform), so verification reads our
  files with it, independently of our `untransform`, which importing a file uses.

llama.cpp reads one head size for the linear keys and values (ssm.state_size); we write the layer pattern as every
Nth full (the list llama.cpp also reads, attention.recurrent_layers, has no writer in gguf 0.19, and older
llama.cpp builds read only the interval); rope scaling is not carried, and llama.cpp's qwen35 has no attention
output bias: a model otherwise is refused in a sentence before anything is written. A file llama.cpp's converter
wrote may list the layers and hold a draft block (multi-token prediction) past them: `config_from_keys` reads the
list, and the import leaves the draft block out.
"""

from __future__ import annotations

import numpy as np
from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, head_dim, register, rope

SECTIONS = [11, 11, 10]  # transformers' and llama.cpp's converter's mrope sections where the config has none
FULL, LINEAR = "full_attention", "linear_attention"
OFFSET_NORMS = ("attn_norm.weight", "post_attention_norm.weight", "attn_q_norm.weight", "attn_k_norm.weight",
                "output_norm.weight")  # HF's (1 + weight) norms; ssm_norm is a plain one


def pattern(every: int, layers: int) -> list[str]:
    """transformers' layer_types with every `every`th layer full."""
    return [FULL if (i + 1) % every == 0 else LINEAR for i in range(layers)]


def interval(cfg: dict) -> int | None:
    """The N of a config whose full-attention layers are every Nth (4, the default, where several fit), or None."""
    layers = cfg["num_hidden_layers"]
    given = list(cfg.get("layer_types") or pattern(4, layers))
    full = [i for i, kind in enumerate(given) if kind == FULL]
    return next((n for n in (4, full[0] + 1 if full else layers + 1) if pattern(n, layers) == given), None)


def sections(cfg: dict) -> list[int]:
    """The mrope sections as llama.cpp's key holds them: four, the last (a fourth position, 0 for text) padded."""
    given = list(rope(cfg).get("mrope_section") or SECTIONS)
    return (given + [0] * 4)[:4]


def rope_dims(cfg: dict) -> int:
    return int(head_dim(cfg) * rope(cfg).get("partial_rotary_factor", 0.25))


def unpositioned(cfg: dict) -> list[int]:
    """The rotated pairs llama.cpp's interleaved rope gives no text position (time, height or width: the same for
    text), by its rule: pair s falls in sector s mod the sections' sum, and sector c takes time where c ≡ 0 (mod 3)
    and c < 3·sections[0], height where c ≡ 1 and c < 3·sections[1], width where c ≡ 2 and c < 3·sections[2]."""
    s = sections(cfg)
    total = sum(s)
    return [p for p in range(rope_dims(cfg) // 2) if not total or (p % total) >= 3 * s[(p % total) % 3]]


# A linear layer's tensors indexed by value head: GGUF name ending → (the axis, whether each head there is a value
# head's width rather than 1, whether only the rows past Q and K are value heads)
BY_VALUE_HEAD = {
    ".attn_qkv.weight": (0, True, True), ".ssm_conv1d.weight": (0, True, True), ".attn_gate.weight": (0, True, False),
    ".ssm_out.weight": (1, True, False), ".ssm_alpha.weight": (0, False, False), ".ssm_beta.weight": (0, False, False),
    ".ssm_a": (0, False, False), ".ssm_dt.bias": (0, False, False)}


def by_value_head(gguf_name: str) -> tuple[int, bool, bool] | None:
    """How a linear layer's tensor is indexed by value head (BY_VALUE_HEAD), or None for one that is not."""
    return next((where for ending, where in BY_VALUE_HEAD.items() if gguf_name.endswith(ending)), None)


def reorder_heads(a: np.ndarray, axis: int, outer: int, inner: int, size: int) -> np.ndarray:
    """Along `axis` (outer × inner blocks of `size`), the blocks in inner × outer order. With outer = key heads and
    inner = value heads per key head, HF's grouped value heads → llama.cpp's tiled ones; swapped, back."""
    shape = a.shape
    axis %= a.ndim
    split = a.reshape(*shape[:axis], outer, inner, size, *shape[axis + 1:])
    return np.swapaxes(split, axis, axis + 1).reshape(shape)


@register
class Qwen35(Architecture):
    model_types = ("qwen3_5_text",)
    gguf_arch = MODEL_ARCH.QWEN35
    rope_types = ("default",)
    f32_names = (".ssm_conv1d.weight",)

    # --- tensors -------------------------------------------------------------------------------------
    def gguf_name(self, hf_name, cfg):
        if hf_name.endswith(".linear_attn.dt_bias"):  # a bias in llama.cpp, with no weight beside it
            hf_name = hf_name.removesuffix(".dt_bias") + ".dt_proj.bias"
        return super().gguf_name(hf_name, cfg)

    def gguf_shape(self, gguf_name, shape, cfg):
        return (shape[0], shape[-1]) if gguf_name.endswith(".ssm_conv1d.weight") else shape

    def transform(self, gguf_name, array, cfg):
        if gguf_name.endswith(OFFSET_NORMS):
            return array + 1.0
        if gguf_name.endswith(".ssm_a"):
            array = -np.exp(array.astype(np.float64))
        elif gguf_name.endswith(".ssm_conv1d.weight"):
            array = array.reshape(array.shape[0], array.shape[-1])
        return self._values(gguf_name, array, cfg, to_llama=True)

    def untransform(self, gguf_name, array, cfg):
        if gguf_name.endswith(OFFSET_NORMS):
            return array - 1.0
        array = self._values(gguf_name, array, cfg, to_llama=False)
        if gguf_name.endswith(".ssm_a"):
            with np.errstate(invalid="ignore"):  # an A above 0, which no exp gives, reads as NaN: the logits show it
                return np.log(-array.astype(np.float64))
        if gguf_name.endswith(".ssm_conv1d.weight"):
            return array.reshape(array.shape[0], 1, array.shape[-1])
        return array

    def untransforms(self, gguf_name, cfg):
        return gguf_name.endswith(OFFSET_NORMS) or by_value_head(gguf_name) is not None

    def transforms_columns(self, gguf_name, cfg):
        where = by_value_head(gguf_name)
        return where is not None and where[0] == 1  # out_proj: its input is the value heads

    def _values(self, gguf_name: str, array: np.ndarray, cfg: dict, to_llama: bool) -> np.ndarray:
        """The value heads of a linear layer's tensor from HF's grouped order to llama.cpp's tiled one, or back."""
        where = by_value_head(gguf_name)
        if where is None:
            return array
        axis, whole_heads, after_qk = where
        keys, values = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
        size = cfg["linear_value_head_dim"] if whole_heads else 1
        outer, inner = (keys, values // keys) if to_llama else (values // keys, keys)
        if not after_qk:
            return reorder_heads(array, axis, outer, inner, size)
        qk = 2 * keys * cfg["linear_key_head_dim"]
        return np.concatenate([array[:qk], reorder_heads(array[qk:], 0, outer, inner, size)])

    # --- metadata ------------------------------------------------------------------------------------
    def check(self, cfg: dict) -> None:
        super().check(cfg)
        if interval(cfg) is None:
            full = [str(i) for i, kind in enumerate(cfg["layer_types"]) if kind == FULL]
            raise BadArgument(f"This Qwen 3.5 model attends fully in layers {', '.join(full) or 'none'}, and llama.cpp "
                              "only every Nth layer, so GGUF would not run it as trained; export merged safetensors "
                              "instead.")
        if cfg["linear_key_head_dim"] != cfg["linear_value_head_dim"]:
            raise BadArgument(f"This Qwen 3.5 model's linear attention has keys {cfg['linear_key_head_dim']} and "
                              f"values {cfg['linear_value_head_dim']} wide, and llama.cpp reads one width for both, "
                              "so GGUF would not run it as trained; export merged safetensors instead.")
        if cfg.get("attention_bias"):
            raise BadArgument("This Qwen 3.5 model has attention biases, and llama.cpp's qwen35 has none on the "
                              "attention output, so GGUF would not run it as trained; export merged safetensors "
                              "instead.")
        given = sections(cfg)
        if sum(given) > head_dim(cfg) or unpositioned(cfg):
            raise BadArgument(f"This Qwen 3.5 model's rope sections {given[:3]} do not fit its {head_dim(cfg)}-wide "
                              f"heads rotated over {rope_dims(cfg)}, so llama.cpp would stop or leave part of the "
                              "rope unrotated; export merged safetensors instead.")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        super().metadata(cfg, w)
        if not cfg.get("head_dim"):  # the shared metadata writes them where the config names a head size
            w.add_key_length(head_dim(cfg))
            w.add_value_length(head_dim(cfg))
        w.add_rope_dimension_count(rope_dims(cfg))
        w.add_rope_dimension_sections(sections(cfg))
        w.add_ssm_conv_kernel(cfg["linear_conv_kernel_dim"])
        w.add_ssm_state_size(cfg["linear_key_head_dim"])
        w.add_ssm_group_count(cfg["linear_num_key_heads"])
        w.add_ssm_time_step_rank(cfg["linear_num_value_heads"])
        w.add_ssm_inner_size(cfg["linear_value_head_dim"] * cfg["linear_num_value_heads"])
        w.add_full_attention_interval(interval(cfg))

    def config_from_keys(self, meta, cfg):
        """Which layers are linear, where a file lists them (llama.cpp's converter writes attention.recurrent_layers,
        which llama.cpp prefers to full_attention_interval); transformers' mapping reads the interval alone."""
        fields = super().config_from_keys(meta, cfg)
        layers = cfg["num_hidden_layers"]
        recurrent = meta.get(f"{self.name}.attention.recurrent_layers")
        if isinstance(recurrent, list) and len(recurrent) >= layers:
            given = [LINEAR if linear else FULL for linear in recurrent[:layers]]  # past them: a draft (MTP) block
            if given != list(cfg.get("layer_types") or []):
                fields["layer_types"] = given
        return fields
