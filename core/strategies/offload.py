"""Offload (planned; built with the streaming issue): LoRA over a 4-bit base that lives in RAM or on
NVMe and streams to the GPU one layer at a time, for models larger than the GPU."""

from __future__ import annotations

from core.strategies import register
from core.strategies.qlora import QLora


@register
class Offload(QLora):
    name = "offload"
    summary = "LoRA over a 4-bit base kept in RAM or on NVMe and streamed to the GPU layer by layer."
    built = False
    streams_weights = True
