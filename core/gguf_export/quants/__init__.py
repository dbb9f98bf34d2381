"""Every tensor type an export can write, registered in one place.

A type turns a float32 matrix [rows, cols] into GGUF's bytes [rows, cols // block_size * type_size]
and back. f32/f16/bf16 and the legacy block types come from the `gguf` package (it quantizes them the
way llama.cpp does); the K-quants are this project's own code, one file each, because `gguf` can only
de-quantize them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf import quants as _gguf_quants


@dataclass(frozen=True)
class QuantType:
    name: str  # lower case, as the person types it: "q4_k"
    ggml: GGMLQuantizationType
    # float32 [rows, cols] -> uint8 [rows, bytes per row] (f32 and f16 stay float32/float16 [rows, cols])
    quantize: Callable[[np.ndarray], np.ndarray]
    dequantize: Callable[[np.ndarray], np.ndarray]  # uint8 [rows, bytes per row] -> float32 [rows, cols]

    @property
    def block_size(self) -> int:
        return GGML_QUANT_SIZES[self.ggml][0]

    @property
    def type_size(self) -> int:
        return GGML_QUANT_SIZES[self.ggml][1]

    def fits(self, cols: int) -> bool:
        """Whether rows of this length can be stored in this type (whole blocks only)."""
        return cols % self.block_size == 0


TYPES: dict[str, QuantType] = {}


def register(qtype: QuantType) -> QuantType:
    if qtype.name in TYPES:
        raise ValueError(f"quant type {qtype.name!r} registered twice")
    TYPES[qtype.name] = qtype
    return qtype


def _from_gguf(name: str, ggml: GGMLQuantizationType) -> QuantType:
    def quantize(a: np.ndarray) -> np.ndarray:
        return _gguf_quants.quantize(np.ascontiguousarray(a, dtype=np.float32), ggml)

    def dequantize(b: np.ndarray) -> np.ndarray:
        return _gguf_quants.dequantize(b, ggml).astype(np.float32)

    return register(QuantType(name, ggml, quantize, dequantize))


for _name, _ggml in (("f32", GGMLQuantizationType.F32), ("f16", GGMLQuantizationType.F16),
                     ("bf16", GGMLQuantizationType.BF16), ("q8_0", GGMLQuantizationType.Q8_0),
                     ("q4_0", GGMLQuantizationType.Q4_0), ("q5_0", GGMLQuantizationType.Q5_0),
                     ("q5_1", GGMLQuantizationType.Q5_1)):
    _from_gguf(_name, _ggml)


def get(name: str) -> QuantType:
    return TYPES[name]
