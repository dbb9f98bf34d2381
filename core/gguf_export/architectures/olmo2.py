"""OLMo 2 (AI2): Llama's tensors, but each block normalizes the outputs of its attention and MLP before adding
them back (post_attention_layernorm → post_attention_norm, post_feedforward_layernorm → post_ffw_norm: there is
no norm before either), and an RMS norm over the whole Q and K projections (attn_q_norm, attn_k_norm: the width
of all heads, not one head's as Qwen3's). llama.cpp's olmo2 applies rope in the NeoX (half-rotation) layout that
transformers uses, so Q and K keep their row order. transformers' GGUF reader does not know olmo2, so
verification reads these files with our own dequantization and says so, and importing one takes its config from
our `config` (the shared keys are all it has).
"""

from __future__ import annotations

from gguf import MODEL_ARCH

from core.gguf_export.architectures import Architecture, register


@register
class Olmo2(Architecture):
    model_types = ("olmo2",)
    gguf_arch = MODEL_ARCH.OLMO2
    transformers_reads = False
