"""Q4_K: 4.5 bits a value, llama.cpp's `quantize_row_q4_K_ref` written for arrays.

A super-block of 256 values is 8 sub-blocks of 32. Each sub-block gets a scale and a minimum from
the weighted search (`kquant_search.qkx2`, weights sqrt(mean x^2) + |x| so large values count more,
20 steps from nmax-1 up by 0.1); the 8 scales and 8 minimums are then stored as 6-bit multiples of
two float16 super-block factors, d and dmin, and every value is re-rounded to 0..15 against the
scale and minimum as stored (not as found), so the levels fit what the decoder will actually see.

Bytes per super-block (144): d (f16), dmin (f16), 12 bytes of 6-bit scales and minimums, then 128
bytes of levels, two per byte: byte l of each 32-byte group holds value l of one sub-block in its
low nibble and value l of the next sub-block in its high nibble.
"""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType

from . import QuantType, quantize_k, register
from .kquant_search import F32, fp16, nearest_int, qkx2

NAME = "q4_k"
TYPE_SIZE = 144


def quantize(a: np.ndarray) -> np.ndarray:
    """float32 [rows, cols] (cols a multiple of 256) -> uint8 [rows, cols // 256 * 144]."""
    return quantize_k(a, NAME, TYPE_SIZE, _blocks)


def _blocks(x: np.ndarray) -> np.ndarray:
    head, levels = scales_and_levels(x, nmax=15, rmin=-1.0, rdelta=0.1, nstep=20, name=NAME)
    pairs = levels.reshape(-1, 4, 2, 32)  # each 64 values: sub-block 2k in low nibbles, 2k+1 in high
    return np.concatenate([head, (pairs[:, :, 0] | pairs[:, :, 1] << 4).reshape(-1, 128)], axis=1)


def scales_and_levels(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int, name: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    """What Q4_K and Q5_K share: super-blocks float32 [n, 256] -> (d, dmin and the 12 scale bytes as
    uint8 [n, 16], levels 0..nmax as uint8 [n, 256])."""
    n = len(x)
    xs = np.ascontiguousarray(x.reshape(n * 8, 32).T)  # element-major: [32, sub-blocks]
    av_x = np.sqrt((xs * xs).sum(axis=0) / F32(32))
    levels, scale, the_min = qkx2(xs, av_x + np.abs(xs), nmax, rmin, rdelta, nstep)
    scale, the_min = scale.reshape(n, 8), the_min.reshape(n, 8)
    # the reference's running maxima start at 0
    max_scale = np.maximum(scale.max(axis=1), F32(0))
    max_min = np.maximum(the_min.max(axis=1), F32(0))
    ls, d = _six_bits(scale, max_scale, name, x)
    lm, dmin = _six_bits(the_min, max_min, name, x)

    # Re-round every value against the scale and minimum as they will be decoded. A sub-block whose
    # scale rounded to 0 decodes to -minimum whatever its levels; the reference leaves the search's
    # levels there, and so do we, to give the same bytes.
    sub_d = (d.astype(F32)[:, None] * ls).reshape(-1)
    sub_m = (dmin.astype(F32)[:, None] * lm).reshape(-1)
    used = sub_d != 0
    v = np.divide(xs + sub_m, sub_d, out=np.zeros_like(xs), where=used)
    np.copyto(levels, nearest_int(v, 0, nmax), where=used)
    levels = levels.T.astype(np.uint8).reshape(n, 256)

    head = np.empty((n, 16), dtype=np.uint8)
    head[:, 0:2] = d.view(np.uint8).reshape(n, 2)
    head[:, 2:4] = dmin.view(np.uint8).reshape(n, 2)
    head[:, 4:] = pack_scales(ls.astype(np.uint8), lm.astype(np.uint8))
    return head, levels


def _six_bits(values: np.ndarray, largest: np.ndarray, name: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-block factors [n, 8] as 6-bit integers (kept float32) of one float16 factor per super-block."""
    # 63/largest is inf for a sub-normal largest, and inf*0 NaN, in C as here; nearest_int copes
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        inv = np.where(largest > 0, F32(63) / largest, F32(0))
        v = inv[:, None] * values
    # the reference stores nearest_int(...) in a uint8_t (wrapping) before capping at 63
    q = nearest_int(v, -256, 256).astype(np.int32) & 0xFF
    return np.minimum(q, 63).astype(F32), fp16(largest / F32(63), name, x)


def pack_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and eight 6-bit minimums per super-block (uint8 [n, 8] each) -> 12 bytes.

    Bytes 0-3 hold scales 0-3 and bytes 4-7 minimums 0-3 in their low 6 bits; bytes 8-11 hold the low
    4 bits of scale 4+k and minimum 4+k; the top 2 bits of those go in the spare top bits of bytes
    k and 4+k (llama.cpp's `get_scale_min_k4` reads them back).
    """
    hi_s, hi_m = ls[:, 4:], lm[:, 4:]
    return np.concatenate([ls[:, :4] | (hi_s >> 4) << 6, lm[:, :4] | (hi_m >> 4) << 6,
                           (hi_s & 0xF) | (hi_m & 0xF) << 4], axis=1)


def unpack_scales(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """12 bytes per super-block (uint8 [n, 12]) -> scales and minimums, float32 [n, 8] each."""
    low, mid, top = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    ls = np.concatenate([low & 63, (top & 0xF) | (low >> 6) << 4], axis=1)
    lm = np.concatenate([mid & 63, (top >> 4) | (mid >> 6) << 4], axis=1)
    return ls.astype(F32), lm.astype(F32)


def head_factors(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sub-block scale and minimum, float32 [n, 8, 1], from the first 16 bytes of Q4_K/Q5_K blocks."""
    d = b[:, 0:2].copy().view(np.float16).astype(F32)
    dmin = b[:, 2:4].copy().view(np.float16).astype(F32)
    ls, lm = unpack_scales(b[:, 4:16])
    return (d * ls)[:, :, None], (dmin * lm)[:, :, None]


def dequantize(b: np.ndarray) -> np.ndarray:
    """uint8 [rows, cols // 256 * 144] -> float32 [rows, cols]."""
    blocks = np.asarray(b, dtype=np.uint8).reshape(-1, TYPE_SIZE)
    scale, low = head_factors(blocks)
    qs = blocks[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8)[:, None]
    levels = (qs & 0xF).reshape(-1, 8, 32).astype(F32)
    return (scale * levels - low).reshape(*b.shape[:-1], -1)


register(QuantType(NAME, GGMLQuantizationType.Q4_K, quantize, dequantize))
