"""Qwen3 (dense): Qwen2's layout without the Q/K/V biases, with an RMS norm on each head's Q and K
(attn_q_norm / attn_k_norm), and a head size of its own (key_length, written by the shared metadata)."""

from __future__ import annotations

from gguf import MODEL_ARCH

from core.gguf_export.architectures import Architecture, register


@register
class Qwen3(Architecture):
    model_types = ("qwen3",)
    gguf_arch = MODEL_ARCH.QWEN3
