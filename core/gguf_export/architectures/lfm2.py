"""LFM2 (Liquid AI's dense hybrid; model_type "lfm2", llama.cpp's lfm2): most layers are gated short convolutions,
a few full attention, chosen by `layer_types` (or `full_attn_idxs`); every layer has a SwiGLU feed-forward.

What differs from a Llama on the way to llama.cpp:

- Layers: which are attention is not a key of its own. llama.cpp reads it from attention.head_count_kv, a list
  with one count a layer, 0 for a convolution layer, as its converter writes it; the convolution's width
  (`conv_L_cache`, the kernel's length) is shortconv.l_cache.
- Tensors: the convolution block's in_proj (B, C and x stacked), conv and out_proj are blk.N.shortconv.*; the depthwise
  kernel loses its middle axis of 1 ([channels, 1, width] → a [channels, width] matrix) and is kept float32, the
  only type llama.cpp's conv reads. The attention's Q/K norms (q_layernorm, k_layernorm) are per head, as Qwen3's;
  rope is NeoX's half rotation, as HF's, so Q and K keep their row order. The final norm, which HF names
  embedding_norm though it comes after the last layer, is token_embd_norm. The norms multiply by their weight as
  it is: nothing is added.
- Keys: the RMS epsilon is the config's `norm_eps`; the feed-forward width is the one the layers have, not the
  config's `intermediate_size`, which `block_auto_adjust_ff_dim` turns into two thirds of itself, times
  `block_ffn_dim_multiplier`, rounded up to `block_multiple_of` (the released models: 12288 → 8192). Without a
  multiplier transformers does not round, where llama.cpp's converter does: the layers' own width is what counts.

transformers' GGUF reader knows lfm2 (its config, with that width and the adjustment off, and the kernel's axis),
so verification reads our files with it, independently of our `untransform`, which importing a file uses; rope
scaling, which its mapping does not read, comes back through `config_from_keys`. Refused in a sentence, where
llama.cpp would not run the model as trained: biases in the convolution blocks (llama.cpp's lfm2 reads none),
no convolution layer at all (llama-server stops on an assertion: transformers' default where the config names no
layers) and heads that do not split the width evenly (its attention output is as wide as the model). The
mixture-of-experts variant (lfm2_moe) and the vision-language one (lfm2_vl) are other model types, not registered
here, so their export is refused as any architecture we do not carry.
"""

from __future__ import annotations

from gguf import GGUFWriter, MODEL_ARCH

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, kv_heads, register

CONV, FULL = "conv", "full_attention"
KERNEL = ".shortconv.conv.weight"


def kinds(cfg: dict) -> list[str]:
    """transformers' layer_types: where the config has none, `full_attn_idxs` (every layer by default)."""
    layers = cfg["num_hidden_layers"]
    if cfg.get("layer_types"):
        return list(cfg["layer_types"])[:layers]
    full = cfg.get("full_attn_idxs")
    full = range(layers) if full is None else full
    return [FULL if i in full else CONV for i in range(layers)]


def ff_width(cfg: dict) -> int:
    """The feed-forward width the layers have, by transformers' Lfm2MLP rule."""
    width = cfg["intermediate_size"]
    if not cfg.get("block_auto_adjust_ff_dim", True):
        return width
    width = int(2 * width / 3)
    multiplier = cfg.get("block_ffn_dim_multiplier", 1.0)
    if multiplier is not None:
        step = cfg.get("block_multiple_of", 256)
        width = step * ((int(multiplier * width) + step - 1) // step)
    return width


@register
class Lfm2(Architecture):
    model_types = ("lfm2",)
    gguf_arch = MODEL_ARCH.LFM2
    f32_names = (KERNEL,)

    # --- tensors -------------------------------------------------------------------------------------
    def gguf_shape(self, gguf_name, shape, cfg):
        return (shape[0], shape[-1]) if gguf_name.endswith(KERNEL) else shape

    def transform(self, gguf_name, array, cfg):
        return array.reshape(array.shape[0], array.shape[-1]) if gguf_name.endswith(KERNEL) else array

    def untransform(self, gguf_name, array, cfg):
        return array.reshape(array.shape[0], 1, array.shape[-1]) if gguf_name.endswith(KERNEL) else array

    def untransforms(self, gguf_name, cfg):
        return gguf_name.endswith(KERNEL)

    # --- metadata ------------------------------------------------------------------------------------
    def check(self, cfg: dict) -> None:
        super().check(cfg)
        if cfg.get("conv_bias"):
            raise BadArgument("This LFM2 model's convolution blocks have biases, and llama.cpp's lfm2 reads none, so "
                              "GGUF would not run it as trained; export merged safetensors instead.")
        if CONV not in kinds(cfg):
            raise BadArgument("This LFM2 model has no convolution layers, and llama.cpp's lfm2 stops on a model "
                              "without them; export merged safetensors instead.")
        width, heads = cfg["hidden_size"], cfg["num_attention_heads"]
        if width % heads:
            raise BadArgument(f"This LFM2 model's {heads} heads do not split its width of {width} evenly, and "
                              "llama.cpp's lfm2 needs them to, so GGUF would not run it as trained; export merged "
                              "safetensors instead.")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        per_layer = [kv_heads(cfg) if kind != CONV else 0 for kind in kinds(cfg)]
        super().metadata({**cfg, "rms_norm_eps": cfg["norm_eps"], "intermediate_size": ff_width(cfg),
                          "num_key_value_heads": per_layer}, w)
        w.add_shortconv_l_cache(cfg["conv_L_cache"])
