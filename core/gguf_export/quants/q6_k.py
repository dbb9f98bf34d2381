"""Q6_K: 6.5625 bits a value, llama.cpp's `quantize_row_q6_K_ref` written for arrays.

A super-block of 256 values is 16 sub-blocks of 16, each with a symmetric scale (no minimum) from
`kquant_search.qx` and levels -32..31. The 16 scales are stored as signed 8-bit multiples of one
float16 factor d, chosen so the largest-magnitude scale lands on -128, and every value is re-rounded
against its scale as stored.

Bytes per super-block (210): 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 int8 scales, then
d (f16). Each half of the super-block (128 values, four quarters of 32) fills 64 low bytes -- quarters
0 and 2 share the first 32 bytes (low and high nibble), quarters 1 and 3 the next 32 -- and 32 high
bytes, quarter k's two bits at bit 2k.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType

from . import QuantType, quantize_k, register
from .kquant_search import F32, fp16, nearest_int, qx

NAME = "q6_k"
TYPE_SIZE = 210
_PAIR = np.array([0, 4], dtype=np.uint8)[:, None]  # quarters k and k+2 share a low byte
_QUARTER = np.array([0, 2, 4, 6], dtype=np.uint8)[:, None]  # quarter k's high bits sit at bit 2k


def quantize(a: np.ndarray) -> np.ndarray:
    """float32 [rows, cols] (cols a multiple of 256) -> uint8 [rows, cols // 256 * 210]."""
    return quantize_k(a, NAME, TYPE_SIZE, _blocks)


def _blocks(x: np.ndarray) -> np.ndarray:
    n = len(x)
    xs = np.ascontiguousarray(x.reshape(n * 16, 16).T)  # element-major: [16, sub-blocks]
    levels, scale = qx(xs, 32)
    scale = scale.reshape(n, 16)
    largest = np.take_along_axis(scale, np.abs(scale).argmax(axis=1)[:, None], axis=1)[:, 0]
    zero = np.abs(largest) < F32(1e-15)  # the reference writes an all-zero block for these
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(zero, F32(0), F32(-128) / largest)
        d = fp16(np.where(zero, F32(0), F32(1) / iscale), NAME, x)
    # |iscale * scale| <= 128, and the reference caps the top at 127 to fit an int8
    sc = nearest_int(iscale[:, None] * scale, -128, 127).astype(np.int8)

    sub_d = (d.astype(F32)[:, None] * sc).reshape(-1)
    used = sub_d != 0  # a zero scale keeps the search's levels, as in the reference
    v = np.divide(xs, sub_d, out=np.zeros_like(xs), where=used)
    requant = nearest_int(v, -32, 31)
    requant += F32(32)
    np.copyto(levels, requant, where=used)
    quarters = levels.T.astype(np.uint8).reshape(n, 2, 4, 32)

    out = np.zeros((n, TYPE_SIZE), dtype=np.uint8)
    out[:, :128] = ((quarters[:, :, 0:2] & 0xF) | (quarters[:, :, 2:4] & 0xF) << 4).reshape(n, 128)
    out[:, 128:192] = ((quarters >> 4) << _QUARTER).sum(axis=2, dtype=np.uint8).reshape(n, 64)
    out[:, 192:208] = sc.view(np.uint8)
    out[:, 208:210] = d.view(np.uint8).reshape(n, 2)
    out[zero] = 0
    return out


def dequantize(b: np.ndarray) -> np.ndarray:
    """uint8 [rows, cols // 256 * 210] -> float32 [rows, cols]."""
    blocks = np.asarray(b, dtype=np.uint8).reshape(-1, TYPE_SIZE)
    d = blocks[:, 208:210].copy().view(np.float16).astype(F32)
    scale = (d * blocks[:, 192:208].view(np.int8).astype(F32))[:, :, None]  # [n, 16, 1]
    low = (blocks[:, :128].reshape(-1, 2, 1, 64) >> _PAIR) & 0xF  # [n, half, k or k+2, 64]
    high = (blocks[:, 128:192].reshape(-1, 2, 1, 32) >> _QUARTER) & 3  # [n, half, quarter, 32]
    q = low.reshape(-1, 2, 4, 32) | high << 4
    levels = (q.astype(np.int8) - np.int8(32)).astype(F32).reshape(-1, 16, 16)
    return (scale * levels).reshape(*b.shape[:-1], -1)


register(QuantType(NAME, GGMLQuantizationType.Q6_K, quantize, dequantize))
