"""Gemma 4's text model (model_type "gemma4_text", llama.cpp's gemma4), dense or a mixture of experts.

What differs from Gemma 3 on the way to llama.cpp:

- Norms: Gemma 4's RMS norms multiply by their weight as it is (not 1 + weight), so nothing is added; the value
  norm has no weight at all, and attention is not scaled (scores are not divided by the root of the head size),
  as llama.cpp's gemma4 also has it.
- Two head sizes: full-attention layers have heads of `global_head_dim` (transformers keeps it per layer,
  `per_layer_config`), sliding ones of `head_dim`: attention.key_length is the full layers' and key_length_swa the
  sliding ones', and so for the rope widths and bases (rope.*_swa). Where full layers have their own count of key
  heads (`num_global_key_value_heads`, with `attention_k_eq_v`), head_count_kv is a list, one a layer.
- Proportional rope on full layers: a quarter of each head's pairs rotate, at the frequencies of the whole head, and
  the rest stay still. llama.cpp's NeoX rope turns every pair of the head, so, as its converter does, rope_freqs
  gives the still pairs a frequency factor of 1e30 (an angle of 0) and the others 1. Its factor (transformers
  divides the full layers' frequencies by it) is llama.cpp's linear rope scaling, which it also applies to the full
  layers alone.
- Per-layer input embeddings (the E2B and E4B models): the packed table and the projection into it keep their
  layout (per_layer_token_embd, per_layer_model_proj); each layer's gate, projection and norm have names of their
  own. Each layer's output scalar (`layer_scalar`, a buffer) is blk.N.layer_output_scale.weight.
- KV sharing: the last `num_kv_shared_layers` layers reuse the keys and values of an earlier layer, and have no
  key or value projections. transformers takes the last unshared layer of the same kind; llama.cpp fixes it (the
  last unshared layer for full ones, the one before it for sliding ones), so a model where they differ is refused.
  A full layer with no value projection (`attention_k_eq_v`) uses its keys as values in both, and the double-wide
  MLP of shared layers makes feed_forward_length a list.
- Mixture of experts (`enable_moe_block`: 26B-A4B): every layer has a dense MLP and, beside it, experts, each branch
  with norms of its own (pre_feedforward_layernorm_2, post_feedforward_layernorm_1 and _2: ffn_pre_norm_2,
  ffn_post_norm_1 and _2), added before the layer's post-feed-forward norm. The router normalizes the layer's
  input without a weight, times `router.scale` (ffn_gate_inp.scale) and 1/√hidden, as llama.cpp's graph does, and
  scales each chosen expert's weight by `router.per_expert_scale`, which llama.cpp applies to the expert's output
  (ffn_down_exps.scale: the same, the weight being a factor of it). The experts stay fused as transformers holds
  them, `experts.gate_up_proj` [experts, 2 × moe_intermediate_size, hidden] (the gate's rows, then the up's) as
  ffn_gate_up_exps, which llama.cpp splits in that order, and `experts.down_proj` as ffn_down_exps: llama.cpp's
  converter writes them so. Softmax over all experts, the top `top_k_experts` renormalized to sum to 1: both
  sides. The router's matrix stays float32 whatever the pick, as for Qwen3 MoE.

Refused in a sentence, before anything is written, where llama.cpp would not run the model as trained: attention
biases, bidirectional attention on text, no sliding layer at all (llama.cpp stops on an assertion), sliding layers
roped otherwise than plainly over the whole head, layers of one kind with different head sizes or key-head counts,
KV sharing from other layers than llama.cpp's, a per-layer vocabulary other than the model's, and an activation
other than GELU's tanh form (ggml's).
transformers' GGUF reader knows gemma4 but reads little of it (no layer pattern, sliding head size, per-layer inputs
or KV sharing), so our files are read back with our own `config`, and `config_from_tensors` tells a full layer
without attn_v (keys as values), which no key states.
"""

from __future__ import annotations

import re

import numpy as np
from gguf import GGUFWriter, MODEL_ARCH, RopeScalingType

from core.errors import BadArgument
from core.gguf_export.architectures import Architecture, _short, layer_of, register
from core.gguf_export.architectures.qwen3moe import stacked_shapes

SLIDING, FULL = "sliding_attention", "full_attention"
STILL = 1e30  # the frequency factor that keeps a pair from rotating (llama.cpp's converter writes the same)
GELU = "gelu_pytorch_tanh"
EXPERTS = (".experts.gate_up_proj", ".experts.down_proj")  # 3-D parameters, without a .weight
ROUTER = {".router.scale": "ffn_gate_inp.scale", ".router.per_expert_scale": "ffn_down_exps.scale"}  # → llama.cpp's


def kinds(cfg: dict) -> list[str]:
    """transformers' layer_types: its default is five sliding layers to one full, the last always full."""
    layers = cfg["num_hidden_layers"]
    given = list(cfg.get("layer_types") or [FULL if (i + 1) % 6 == 0 else SLIDING for i in range(layers)])[:layers]
    return given[:-1] + [FULL]


def setting(cfg: dict, layer: int, key: str):
    """A layer's own value of `key` (head_dim, num_key_value_heads), where `per_layer_config` gives one."""
    own = cfg.get("per_layer_config") or {}
    return (own.get(str(layer)) or own.get(layer) or {}).get(key, cfg[key])


def of_kind(cfg: dict, kind: str, key: str) -> list:
    """The values of `key` over the layers of one kind, each once."""
    return sorted({setting(cfg, i, key) for i, k in enumerate(kinds(cfg)) if k == kind})


def head_size(cfg: dict, kind: str) -> int:
    sizes = of_kind(cfg, kind, "head_dim")
    return sizes[0] if sizes else cfg["head_dim"]


def first_shared(cfg: dict) -> int:
    return cfg["num_hidden_layers"] - (cfg.get("num_kv_shared_layers") or 0)


def feed_forward(cfg: dict) -> list[int]:
    """Each layer's MLP width: twice the width on KV-shared layers where `use_double_wide_mlp` says so."""
    wide = 2 if cfg.get("use_double_wide_mlp") else 1
    return [cfg["intermediate_size"] * (wide if i >= first_shared(cfg) else 1) for i in range(cfg["num_hidden_layers"])]


def one_or_list(values: list[int]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else values


def rotated_pairs(cfg: dict) -> int:
    """How many of a full layer's rope pairs rotate (transformers' proportional rope: the rest stay still)."""
    full = (cfg.get("rope_parameters") or {}).get(FULL) or {}
    share = full.get("partial_rotary_factor", 1.0) if full.get("rope_type") == "proportional" else 1.0
    return int(share * head_size(cfg, FULL) // 2)


@register
class Gemma4(Architecture):
    model_types = ("gemma4_text",)
    gguf_arch = MODEL_ARCH.GEMMA4
    transformers_reads = False
    rope_types = ("default", "proportional")
    extra_names = ("rope_freqs.weight",)
    # The vocabulary as llama.cpp's converter writes Gemma 4's (core/gguf_export/vocab.py, `_own_model`): llama.cpp's
    # tokenizer model of its own, BPE by the merges (Gemma 4's tokenizer.json has no pre-tokenizer, only spaces
    # written "▁"), which also adds BOS, and the tokens its chat parser reads in generated text left visible.
    tokenizer_model = "gemma4"
    f32_names = (".ffn_gate_inp.weight",)
    lora_unread = ("per_layer_model_projection",)  # llama.cpp multiplies it by ggml_mul_mat, without LoRA
    visible_tokens = ("<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>",
                      "<tool_response|>", '<|"|>')

    # --- tensors -------------------------------------------------------------------------------------
    def gguf_name(self, hf_name, cfg):
        if hf_name.endswith((".layer_scalar", *EXPERTS)):  # without a .weight; llama.cpp reads the name with one
            return super().gguf_name(hf_name + ".weight", cfg)
        ending = next((e for e in ROUTER if hf_name.endswith(e)), None)
        if ending is not None:  # (not in gguf's map: its converter names them itself)
            layer = re.search(r"\.layers\.(\d+)\.", hf_name)
            return f"blk.{layer.group(1)}.{ROUTER[ending]}" if layer else None
        return super().gguf_name(hf_name, cfg)

    def lora_output_scale(self, gguf_name: str, cfg: dict, base_tensor) -> np.ndarray | None:
        """ffn_down_exps: the router's per-expert scale, by which llama.cpp multiplies the experts' output before it
        adds a LoRA's (build_lora_mm_id), where transformers scales the whole expert."""
        if not gguf_name.endswith(".ffn_down_exps.weight"):
            return None
        return base_tensor(f"model.layers.{layer_of(gguf_name)}.router.per_expert_scale")

    def expert_shapes(self, cfg: dict) -> dict[str, tuple[int, int]] | None:
        """Each expert's [rows, columns] in the 3-D weights (see Architecture.expert_shapes); None when dense."""
        return stacked_shapes(cfg) if cfg.get("enable_moe_block") else None

    def extra_tensors(self, cfg):
        pairs = head_size(cfg, FULL) // 2
        factors = np.full(pairs, STILL, np.float32)
        factors[:rotated_pairs(cfg)] = 1.0
        return [("rope_freqs.weight", factors)]

    def config_from_extra(self, extra, cfg, meta):
        """The full layers' share of rotating pairs from rope_freqs: 1 for each that turns, 1e30 for each held
        still, in that order; None for any other factors."""
        factors = extra["rope_freqs.weight"]
        turning = int(np.sum(factors == 1.0))
        if not (np.all(factors[:turning] == 1.0) and np.all(factors[turning:] >= STILL / 10)):
            return None
        params = dict(cfg["rope_parameters"])
        full = {**params[FULL], "rope_type": "proportional",
                "partial_rotary_factor": _short(2 * turning / head_size(cfg, FULL))}
        return {"rope_parameters": {**params, FULL: full}}

    def config_from_tensors(self, names: set[str], cfg: dict) -> dict:
        """A full layer without attn_v uses its keys as values (attention_k_eq_v): no key says so."""
        full = [i for i, k in enumerate(cfg["layer_types"]) if k == FULL and i < first_shared(cfg)]
        if full and all(f"blk.{i}.attn_v.weight" not in names for i in full):
            return {"attention_k_eq_v": True}
        return {}

    # --- metadata ------------------------------------------------------------------------------------
    def check(self, cfg: dict) -> None:
        super().check(cfg)
        if cfg.get("attention_bias"):
            raise BadArgument("This Gemma 4 model has attention biases, and llama.cpp's gemma4 has none, so GGUF would "
                              "not run it as trained; export merged safetensors instead.")
        if cfg.get("use_bidirectional_attention") == "all":
            raise BadArgument("This Gemma 4 model attends both ways over text, and llama.cpp's gemma4 only to earlier "
                              "tokens, so GGUF would not run it as trained; export merged safetensors instead.")
        if cfg.get("hidden_activation", GELU) != GELU:
            raise BadArgument(f"This Gemma 4 model's activation is {cfg['hidden_activation']}, and llama.cpp's gemma4 "
                              f"uses {GELU}, so GGUF would not run it as trained; export merged safetensors instead.")
        if SLIDING not in kinds(cfg):
            raise BadArgument("This Gemma 4 model has no sliding-window layers, and llama.cpp's gemma4 stops loading a "
                              "model without them; export merged safetensors instead.")
        self._check_shapes(cfg)
        self._check_rope(cfg)
        self._check_sharing(cfg)

    def _check_shapes(self, cfg: dict) -> None:
        for kind in (FULL, SLIDING):
            for key in ("head_dim", "num_key_value_heads"):
                if len(of_kind(cfg, kind, key)) > 1:
                    raise BadArgument(f"This Gemma 4 model's {kind.replace('_', ' ')} layers differ in {key} "
                                      f"({', '.join(map(str, of_kind(cfg, kind, key)))}), and llama.cpp reads one for "
                                      "each kind, so GGUF would not run it as trained; export merged safetensors "
                                      "instead.")
        per_layer_vocab = cfg.get("vocab_size_per_layer_input")
        if cfg.get("hidden_size_per_layer_input") and per_layer_vocab != cfg["vocab_size"]:
            raise BadArgument(f"This Gemma 4 model's per-layer inputs have a vocabulary of {per_layer_vocab} and the "
                              f"model one of {cfg['vocab_size']}, and llama.cpp reads one for both, so GGUF would not "
                              "run it as trained; export merged safetensors instead.")

    def _check_rope(self, cfg: dict) -> None:
        """Sliding layers rope plainly over the whole head in llama.cpp (no rope_freqs, no scaling)."""
        sliding = (cfg.get("rope_parameters") or {}).get(SLIDING) or {}
        kind = sliding.get("rope_type", "default")
        if kind != "default" and (sliding.get("partial_rotary_factor", 1.0) != 1.0 or sliding.get("factor", 1.0) != 1.0
                                  or kind not in self.rope_types):
            raise BadArgument(f"This Gemma 4 model ropes its sliding layers as {kind} "
                              f"(a share of {sliding.get('partial_rotary_factor', 1.0)}, factor "
                              f"{sliding.get('factor', 1.0)}), and llama.cpp plainly over the whole head, so GGUF "
                              "would not run it as trained; export merged safetensors instead.")

    def _check_sharing(self, cfg: dict) -> None:
        """llama.cpp's shared layers read the keys and values of the last unshared layer (full ones) and the one
        before it (sliding ones); transformers' the last unshared layer of their kind."""
        first, given = first_shared(cfg), kinds(cfg)
        if first == cfg["num_hidden_layers"]:
            return
        theirs = {kind: max((i for i in range(first) if given[i] == kind), default=None) for kind in set(given[first:])}
        ours = {FULL: first - 1, SLIDING: first - 2}
        if any(theirs[kind] != ours[kind] for kind in theirs):
            said, where = (", ".join(f"{kind.split('_')[0]} from layer {of[kind]}" for kind in sorted(theirs))
                           for of in (theirs, ours))
            raise BadArgument(f"This Gemma 4 model's last {cfg['num_kv_shared_layers']} layers reuse the keys and "
                              f"values of earlier ones ({said}), and llama.cpp's of others ({where}), so GGUF would "
                              "not run it as trained; export merged safetensors instead.")

    def metadata(self, cfg: dict, w: GGUFWriter) -> None:
        params = cfg.get("rope_parameters") or {}
        full, sliding = head_size(cfg, FULL), head_size(cfg, SLIDING)
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_feed_forward_length(one_or_list(feed_forward(cfg)))
        w.add_head_count(cfg["num_attention_heads"])
        w.add_head_count_kv(one_or_list([setting(cfg, i, "num_key_value_heads") for i in range(len(kinds(cfg)))]))
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_vocab_size(cfg["vocab_size"])
        w.add_key_length(full)
        w.add_value_length(full)
        w.add_key_length_swa(sliding)
        w.add_value_length_swa(sliding)
        w.add_rope_dimension_count(full)  # every pair of the head, those held still by rope_freqs included
        w.add_rope_dimension_count_swa(sliding)
        w.add_rope_freq_base(float((params.get(FULL) or {}).get("rope_theta", 1e6)))
        w.add_rope_freq_base_swa(float((params.get(SLIDING) or {}).get("rope_theta", 1e4)))
        w.add_sliding_window(cfg["sliding_window"])
        w.add_sliding_window_pattern([kind == SLIDING for kind in kinds(cfg)])
        w.add_shared_kv_layers(cfg.get("num_kv_shared_layers") or 0)
        w.add_embedding_length_per_layer_input(cfg.get("hidden_size_per_layer_input") or 0)
        if cfg.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(float(cfg["final_logit_softcapping"]))
        if cfg.get("enable_moe_block"):
            w.add_expert_count(cfg["num_experts"])
            w.add_expert_used_count(cfg["top_k_experts"])
            w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
        factor = float((params.get(FULL) or {}).get("factor", 1.0))
        if factor != 1.0 and (params.get(FULL) or {}).get("rope_type") == "proportional":
            w.add_rope_scaling_type(RopeScalingType.LINEAR)  # the full layers' alone, in both
            w.add_rope_scaling_factor(factor)

    def config(self, meta: dict) -> dict:
        """The inverse of `metadata`: the lists of widths and key-head counts back to one value (the sliding
        layers') and the full layers' own (`per_layer_config`), the double-wide MLP where shared layers are wider."""
        def key(name: str, default=None):
            return meta.get(f"{self.name}.{name}", default)

        cfg, scaling = super().config(meta), self.rope_scaling(meta)
        layers = cfg["num_hidden_layers"]
        pattern = key("attention.sliding_window_pattern") or [(i + 1) % 6 != 0 for i in range(layers)]
        types = [SLIDING if sliding else FULL for sliding in pattern[:layers]]
        widths, kv = cfg["intermediate_size"], cfg["num_key_value_heads"]
        widths = widths if isinstance(widths, list) else [widths] * layers
        kv = kv if isinstance(kv, list) else [kv] * layers
        sliding_kv = kv[types.index(SLIDING)] if SLIDING in types else kv[0]
        own = {str(i): {"head_dim": cfg["head_dim"], **({"num_key_value_heads": kv[i]} if kv[i] != sliding_kv else {})}
               for i, kind in enumerate(types) if kind == FULL}
        cap = key("final_logit_softcapping")
        # the share of each head that turns comes from rope_freqs (`config_from_extra`)
        full_rope = {"rope_type": "proportional", "partial_rotary_factor": 1.0,
                     "rope_theta": cfg["rope_parameters"]["rope_theta"]}
        if scaling.get("rope_type") == "linear":
            full_rope["factor"] = scaling["factor"]
        experts = key("expert_count")
        moe = {"enable_moe_block": True, "num_experts": experts, "top_k_experts": key("expert_used_count"),
               "moe_intermediate_size": key("expert_feed_forward_length")} if experts else {}
        return {**cfg, **moe, "layer_types": types, "intermediate_size": widths[0],
                "use_double_wide_mlp": widths[-1] > widths[0], "num_key_value_heads": sliding_kv,
                "head_dim": key("attention.key_length_swa", cfg["head_dim"]),
                "per_layer_config": own, "sliding_window": key("attention.sliding_window"),
                "num_kv_shared_layers": key("attention.shared_kv_layers", 0),
                "hidden_size_per_layer_input": key("embedding_length_per_layer_input", 0),
                "vocab_size_per_layer_input": cfg["vocab_size"],
                "final_logit_softcapping": _short(cap) if cap else None,
                "rope_parameters": {FULL: full_rope, SLIDING: {
                    "rope_type": "default", "rope_theta": _short(key("rope.freq_base_swa", 10000.0))}}}
