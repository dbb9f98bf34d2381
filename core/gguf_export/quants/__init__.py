"""Every tensor type an export can write, registered in one place.

A type turns a float32 matrix [rows, cols] into GGUF's bytes [rows, cols // block_size * type_size]
and back. f32/f16/bf16 and the legacy block types come from the `gguf` package (it quantizes them the
way llama.cpp does); the K-quants are this project's own code, one file each, because `gguf` can only
de-quantize them.
"""

from __future__ import annotations

import importlib
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


# What llama.cpp stores instead when a tensor's rows are not whole 256-value super-blocks
# (`tensor_type_fallback` in src/llama-quant.cpp): a 32-value type of about the same size and
# accuracy, so one odd-shaped tensor does not push the whole file up to f16.
FALLBACK: dict[str, str] = {"q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}


def storable(name: str, cols: int) -> str:
    """The type a tensor with rows of `cols` values is actually stored in when `name` is asked for.

    `name` itself when its blocks fit the rows; else its fallback, as llama.cpp does; and f16 when
    even the fallback's 32-value blocks do not fit, llama.cpp's last resort too, as f16 has no blocks.
    (A legacy type that does not fit has no fallback in llama.cpp, which refuses; f16 always fits.)
    """
    if get(name).fits(cols):
        return name
    if name in FALLBACK and get(FALLBACK[name]).fits(cols):
        return FALLBACK[name]
    return "f16"


def k_rows(a: np.ndarray, name: str) -> np.ndarray:
    """`a` as float32 rows for a K-quant, or a ValueError that says what is wrong in one sentence."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim < 1 or a.shape[-1] % 256:
        cols = a.shape[-1] if a.ndim else 0
        raise ValueError(f"{name} stores rows in blocks of 256 values and these rows have {cols}; "
                         f"store this tensor as {storable(name, cols)} instead, as llama.cpp does.")
    if not np.isfinite(a).all():
        raise ValueError(f"cannot quantize to {name}: the tensor holds NaN or infinite values, which no "
                         f"quantized type can store; check the run that produced these weights.")
    return a


def quantize_k(a: np.ndarray, name: str, type_size: int, blocks) -> np.ndarray:
    """A K-quant's quantize: k_rows' checks, then `blocks` (float32 [n, 256] -> uint8 [n, type_size]) over
    every super-block, keeping the leading dimensions."""
    from .kquant_search import by_chunks

    a = k_rows(a, name)
    return by_chunks(blocks, a.reshape(-1, 256), type_size).reshape(*a.shape[:-1], -1)


# The K-quants, one module each, register themselves when imported; last, as they use the above.
for _module in ("q4_k", "q5_k", "q6_k"):
    importlib.import_module(f".{_module}", __name__)
