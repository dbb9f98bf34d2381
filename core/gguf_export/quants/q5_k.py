"""Q5_K: 5.5 bits a value, llama.cpp's `quantize_row_q5_K_ref` written for arrays.

Q4_K with one more bit per value: the same 8 sub-blocks of 32 with a 6-bit scale and minimum each
(`q4_k.scales_and_levels`), levels 0..31, and a narrower search because the finer levels need less
help (15 steps from nmax-0.5 up by 0.1, the reference's parameters).

Bytes per super-block (176): d (f16), dmin (f16), the 12 scale bytes of Q4_K, 32 bytes of high bits
(bit k of byte l is the fifth bit of value l of sub-block k), then the low 4 bits of every value
packed as Q4_K packs its levels.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType

from . import QuantType, quantize_k, register
from .kquant_search import F32
from .q4_k import head_factors, scales_and_levels

NAME = "q5_k"
TYPE_SIZE = 176
_BIT = np.arange(8, dtype=np.uint8)[:, None]  # sub-block k's fifth bits go in bit k


def quantize(a: np.ndarray) -> np.ndarray:
    """float32 [rows, cols] (cols a multiple of 256) -> uint8 [rows, cols // 256 * 176]."""
    return quantize_k(a, NAME, TYPE_SIZE, _blocks)


def _blocks(x: np.ndarray) -> np.ndarray:
    head, levels = scales_and_levels(x, nmax=31, rmin=-0.5, rdelta=0.1, nstep=15, name=NAME)
    subs = levels.reshape(-1, 8, 32)
    high = ((subs >> 4) << _BIT).sum(axis=1, dtype=np.uint8)  # the bits do not overlap: a sum is an or
    pairs = (subs & 0xF).reshape(-1, 4, 2, 32)
    low = (pairs[:, :, 0] | pairs[:, :, 1] << 4).reshape(-1, 128)
    return np.concatenate([head, high, low], axis=1)


def dequantize(b: np.ndarray) -> np.ndarray:
    """uint8 [rows, cols // 256 * 176] -> float32 [rows, cols]."""
    blocks = np.asarray(b, dtype=np.uint8).reshape(-1, TYPE_SIZE)
    scale, low = head_factors(blocks)
    high = (blocks[:, None, 16:48] >> _BIT) & 1  # [n, 8 sub-blocks, 32]
    qs = blocks[:, 48:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8)[:, None]
    levels = ((qs & 0xF).reshape(-1, 8, 32) | high << 4).astype(F32)
    return (scale * levels - low).reshape(*b.shape[:-1], -1)


register(QuantType(NAME, GGMLQuantizationType.Q5_K, quantize, dequantize))
