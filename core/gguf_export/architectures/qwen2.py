"""Qwen2 and Qwen2.5: Llama's layout with biases on Q, K and V; llama.cpp keeps HF's rope order here."""

from __future__ import annotations

from gguf import MODEL_ARCH

from core.gguf_export.architectures import Architecture, register


@register
class Qwen2(Architecture):
    model_types = ("qwen2",)
    gguf_arch = MODEL_ARCH.QWEN2
