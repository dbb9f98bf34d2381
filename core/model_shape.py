"""A model's size from its config alone, so plans can be made for models that are not on disk.

Most decoders repeat one block. Qwen 3.5 (and Qwen3-Next) mix two: three layers of four are Gated DeltaNet
linear attention (query/key/value, gate, decay and output projections, a short convolution), every fourth full
attention whose query projection also gives an output gate (twice the rows). `blocks()` gives each kind with its
count, and every total here sums over it: counted as uniform full attention, Qwen 3.5 9B's weights came out
0.6 B parameters short.

Families whose blocks are modelled here (MODELLED) are counted from the config alone, with no import of torch.
Any other (Gemma 4's per-layer embeddings, mixtures of experts, a vision or audio tower loaded beside the language
model) is built by transformers on the meta device, which allocates nothing, and what its weights add to the
blocks' count is `unmodelled`: frozen 16-bit weights outside the decoder's linear layers. Counted as blocks alone,
Gemma 4 E2B came out 2.9 B parameters where it holds 5.1 B: a plan would "fit" 4 GB short. LoRA's weights are
counted on that model too, as the strategy targets its layers (`lora_params`): a mixture of experts adapts every
expert, 30 times what its config's dense MLP width says for Qwen3-30B-A3B.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from typing import NamedTuple

MODELLED = {"llama", "mistral", "qwen2", "qwen3", "qwen3_5", "qwen3_5_text", "gemma", "gemma2", "gemma3_text",
            "phi3", "smollm3", "olmo2", "olmo3", "granite"}  # the others' size is counted (above)


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    model_type: str = ""  # the config's model_type (the text model's, for multimodal configs)
    context: int | None = None  # max_position_embeddings as the config states it (None: it does not say)
    # Gated DeltaNet layers (Qwen 3.5): (key heads, value heads, key head size, value head size, conv kernel); None
    # where every layer is full attention
    linear_attention: tuple[int, int, int, int, int] | None = None
    linear_layers: int = 0  # how many layers are Gated DeltaNet (the rest full attention, its query gated)
    unmodelled: int = 0  # weights the blocks do not describe, counted on the meta device (the module's docstring)
    # of those, the ones outside the decoder layers (a vision tower loaded whole, Gemma 4's per-layer embeddings): not
    # a layer's, and no expert
    unmodelled_outside: int = 0
    lora_unit: int = 0  # LoRA's weights at rank 1, counted on the meta device's model where its blocks are not modelled
    lora_unit_frozen_experts: int = 0  # the same with a mixture of experts' experts left without adapters
    experts: int = 0  # a mixture of experts' experts per layer (0: a dense model)
    experts_used: int = 0  # how many of them each token goes through
    # each decoder layer's weights, largest first, counted on the meta device where the blocks are not modelled (()
    # for the modelled families): Gemma 4's full-attention layers are wider than its sliding ones (12% at 31B)
    layer_sizes: tuple[int, ...] = ()
    # a multimodal model that transformers' causal-LM class loads whole, its tower and all: its config's model_type
    # (gemma3, got_ocr2); "" where the language model loads alone (whose forward tuneforge_kernels/patch.py knows)
    loaded_whole: str = ""

    @classmethod
    def from_config(cls, config: dict) -> "ModelShape":
        c = config.get("text_config", config)  # multimodal configs nest the language model
        hidden = c["hidden_size"]
        heads = c["num_attention_heads"]
        shape = cls(
            layers=c["num_hidden_layers"], hidden=hidden, heads=heads, kv_heads=c.get("num_key_value_heads") or heads,
            head_dim=c.get("head_dim") or hidden // heads, vocab=c["vocab_size"],
            tied=bool(c.get("tie_word_embeddings", False)), model_type=str(c.get("model_type", "")),
            context=c.get("max_position_embeddings"), **_linear_attention(c),
            **{"intermediate": c.get("intermediate_size", 4 * hidden), **_experts(c)},
        )
        kind = config.get("model_type")
        if not kind or kind in MODELLED:
            return shape
        counted = _counted(json.dumps(config, sort_keys=True))
        unmodelled = max(0, counted.params - shape.params)
        outside = min(unmodelled, max(0, counted.outside - (shape.params - shape.decoder_params)))
        return replace(shape, unmodelled=unmodelled, unmodelled_outside=outside, lora_unit=counted.lora_unit,
                       lora_unit_frozen_experts=counted.lora_unit_frozen_experts, layer_sizes=counted.layer_sizes,
                       loaded_whole=kind if counted.whole else "")

    @property
    def max_positions(self) -> int:
        """The context to plan with: the config's, or 2048 where it does not say."""
        return self.context or 2048

    def attention_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of a full-attention layer's projections: q, k, v, o (q twice as tall where it also gates)."""
        h, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        return [(h, q * (2 if self.linear_attention else 1)), (h, kv), (h, kv), (q, h)]

    def delta_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of a Gated DeltaNet layer's projections: qkv, z (the gate), b, a, out."""
        k_heads, v_heads, k_dim, v_dim, _ = self.linear_attention
        h, keys, values = self.hidden, k_heads * k_dim, v_heads * v_dim
        return [(h, 2 * keys + values), (h, values), (h, v_heads), (h, v_heads), (values, h)]

    def mlp_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of a dense MLP's gate, up and down; none in a mixture of experts, whose experts (3-D weights,
        which bitsandbytes does not quantize) are counted on the meta model."""
        h, i = self.hidden, self.intermediate
        return [] if self.experts else [(h, i), (h, i), (i, h)]

    def blocks(self) -> list[tuple[int, list[tuple[int, int]], int]]:
        """(how many layers, the (in, out) of each linear layer in one of them, its other weights) for each kind
        of decoder block: norms (two per block, Q/K norms per head), and a DeltaNet's convolution and decay."""
        norms = 2 * self.hidden + (2 * self.head_dim if self.linear_attention else 0)
        full = (self.layers - self.linear_layers, self.attention_shapes() + self.mlp_shapes(), norms)
        if not self.linear_attention:
            return [full]
        k_heads, v_heads, k_dim, v_dim, kernel = self.linear_attention
        others = 2 * self.hidden + (2 * k_heads * k_dim + v_heads * v_dim) * kernel + 2 * v_heads + v_dim
        return [full, (self.linear_layers, self.delta_shapes() + self.mlp_shapes(), others)]

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(in, out) of every linear layer in a decoder block, of any kind (attention, then a gated MLP): what
        the largest of a kind is picked from."""
        return list(dict.fromkeys(shape for _, shapes, _ in self.blocks() for shape in shapes))

    def block_params(self, kind: int = 0) -> int:
        """Weights of one decoder block of a kind (0: full attention, the biggest in every model here)."""
        _, shapes, others = self.blocks()[kind]
        return sum(a * b for a, b in shapes) + others

    @property
    def linear_params(self) -> int:
        """Weights of all the decoder's linear layers (what quantization and LoRA apply to)."""
        return sum(n * sum(a * b for a, b in shapes) for n, shapes, _ in self.blocks())

    @property
    def decoder_params(self) -> int:
        """Weights of all decoder blocks."""
        return sum(n * self.block_params(kind) for kind, (n, _, _) in enumerate(self.blocks()))

    def largest_blocks(self, count: int) -> int:
        """Weights of the `count` largest decoder layers (what LISA trains at once, at most), experts and all: as
        counted on the meta model, else from the blocks. (Sized as the layers' mean, Gemma 4 31B's full-attention
        layer came out 58 M weights short, 0.9 GB of a LISA step's gradients and Adam moments.)"""
        sizes = self.layer_sizes or sorted((self.block_params(kind) for kind, (n, _, _) in enumerate(self.blocks())
                                            for _ in range(n)), reverse=True)
        return sum(sizes[:count])

    @property
    def linear_outputs(self) -> int:
        """Outputs of all the decoder's linear layers (DoRA learns a magnitude for each)."""
        return sum(n * sum(out for _, out in shapes) for n, shapes, _ in self.blocks())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def head_params(self) -> int:
        """Embeddings plus output head (one matrix when they are tied)."""
        return self.embedding_params * (1 if self.tied else 2)

    @property
    def active_params(self) -> int:
        """The weights a token goes through (what a step's compute scales with): all of them, but in a mixture of
        experts only its share of the experts (Qwen3-30B-A3B: 3.3 B of 30.5 B)."""
        if not (self.experts and self.experts_used):
            return self.params
        return self.params - self.layers_unmodelled * (self.experts - self.experts_used) // self.experts

    @property
    def layers_unmodelled(self) -> int:
        """The weights the blocks do not describe inside the decoder layers: a mixture of experts' experts (and
        routers), which stream with their layers, quantize to 4 bits when frozen, and which a token uses a share of.
        Gemma 4's per-layer embeddings or a vision tower are outside (they once counted as experts: a LISA layer of
        a tiny Gemma 4 mixture came out 67 M weights where it holds 0.09 M)."""
        return self.unmodelled - self.unmodelled_outside

    @property
    def params(self) -> int:
        head = 0 if self.tied else self.embedding_params
        return self.decoder_params + self.embedding_params + head + self.hidden + self.unmodelled

    def lora_params(self, r: int, experts: bool = True) -> int:
        """LoRA's weights at rank r with the automatic targets: counted on the model itself where its blocks are not
        modelled (a mixture of experts adapts each expert: Qwen3-30B-A3B's are 0.64 B at r=16, where its config's
        dense MLP width would say 0.03 B)."""
        if self.lora_unit:
            return r * (self.lora_unit if experts or not self.experts else self.lora_unit_frozen_experts)
        return sum(n * sum(r * (a + b) for a, b in shapes) for n, shapes, _ in self.blocks())


def _experts(c: dict) -> dict:
    """A mixture of experts' fields ({} for a dense model): how many experts, how many a token uses, and the MLP width
    a token passes through (`intermediate`, what its activations are sized by): that many experts' widths, and a
    shared expert's (Gemma 4's: a dense MLP beside the experts)."""
    experts = max((c.get(k) or 0 for k in ("num_experts", "num_local_experts", "n_routed_experts")), default=0)
    if experts <= 1 or c.get("enable_moe_block") is False:  # (Gemma 4's dense sizes name an expert count too)
        return {}
    used = c.get("num_experts_per_tok") or c.get("num_experts_per_token") or c.get("top_k_experts") or 1
    width = c.get("moe_intermediate_size") or c.get("intermediate_size") or 4 * c["hidden_size"]
    shared = c.get("shared_expert_intermediate_size") or (c.get("intermediate_size") or 0) * bool(
        c.get("enable_moe_block"))
    return {"experts": experts, "experts_used": used, "intermediate": used * width + shared}


def _linear_attention(c: dict) -> dict:
    """The Gated DeltaNet fields of a config whose `layer_types` name linear attention ({} for others)."""
    kinds = list(c.get("layer_types") or ())
    if "linear_attention" not in kinds or "linear_num_key_heads" not in c:  # (Mamba is "linear_attention" too)
        return {}
    dims = (c["linear_num_key_heads"], c["linear_num_value_heads"], c["linear_key_head_dim"],
            c["linear_value_head_dim"], c.get("linear_conv_kernel_dim", 4))
    return {"linear_attention": dims, "linear_layers": kinds.count("linear_attention")}


class Counted(NamedTuple):
    params: int = 0
    lora_unit: int = 0  # LoRA's weights at rank 1
    lora_unit_frozen_experts: int = 0  # the same with the experts frozen
    outside: int = 0  # the parameters outside the decoder layers
    layer_sizes: tuple[int, ...] = ()  # each decoder layer's parameters, largest first
    whole: bool = False  # a multimodal config's model built whole (causal_lm.config_for keeps the config)


@functools.lru_cache(maxsize=64)
def _counted(config_json: str) -> Counted:
    """The causal LM transformers builds from the config, counted on the meta device (nothing is allocated; 70B
    takes a tenth of a second); zeros where it cannot build one (a model type it does not know)."""
    import re

    import logging

    import torch
    from transformers import AutoConfig

    from core import causal_lm
    from core.strategies.lora import layer_prefix, lora_size

    config = json.loads(config_json)
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its notes on configs it adjusts, not ours to show
    try:
        built = AutoConfig.for_model(config.pop("model_type"), **config)
        with torch.device("meta"):
            model = causal_lm.from_config(built)
        whole = built.get_text_config() is not built and causal_lm.config_for(built) is built
        layers, outside, sizes = layer_prefix(model), 0, {}
        for name, p in model.named_parameters():
            layer = re.match(layers, name)
            if layer:
                sizes[layer.group(0)] = sizes.get(layer.group(0), 0) + p.numel()
            else:
                outside += p.numel()
        return Counted(outside + sum(sizes.values()), lora_size(model, 1), lora_size(model, 1, experts=False),
                       outside, tuple(sorted(sizes.values(), reverse=True)), whole)
    except Exception:  # an unknown or remote-code model type: the blocks' count is all there is
        return Counted()
    finally:
        quiet.setLevel(level)
