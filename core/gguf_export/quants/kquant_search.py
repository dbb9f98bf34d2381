"""What the K-quants share: llama.cpp's scale searches run on many sub-blocks at once, its rounding,
the float16 super-block factors, and a driver that feeds a big matrix through in chunks.

llama.cpp picks each sub-block's scale (and, for Q4_K/Q5_K, its minimum) by trying a few candidate
scales one sub-block at a time (`make_qkx2_quants` and `make_qx_quants` in ggml-quants.c). Here the
arrays are element-major: `x[i, b]` is element i of sub-block b, so one numpy operation handles
element i of every sub-block, and a sum over axis 0 adds a sub-block's elements in the order the C
loop does (numpy sums pairwise only along the contiguous axis; along axis 0 it adds row after row).
With every product and sum taken in float32 in the reference's order, each decision -- which
candidate wins -- and so each byte comes out as the reference's (x86-64 builds, where the compiler
does not fuse `a*b + c` into one FMA; GCC on arm64 does, and its rare near-ties may go the other way).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

F32 = np.float32
# threads quantizing at once: one per core this process may use
WORKERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_SAFE = F32(4194303)  # nearest_int's own assert: within it, its bit trick is plain round-half-even
_MAGIC = F32(12582912)  # 1.5 * 2^23


def nearest_int(v: np.ndarray, lo: int, hi: int, bound=None) -> np.ndarray:
    """MAX(lo, MIN(hi, nearest_int(v))) as float32, reusing the float32 temporary v.

    llama.cpp's nearest_int adds 1.5*2^23 and reads the low mantissa bits back as an integer: round
    half to even while |v| <= 4194303, which np.rint does faster. Past that (or for inf and NaN,
    which a sub-normal or near-constant sub-block can produce) release builds return whatever those
    bits say, and so do we, so the bytes still match. `bound`, when given, is what the caller knows
    of |v| (per sub-block); otherwise v is measured.
    """
    bound = np.abs(v).max(initial=0) if bound is None else bound
    if np.all(bound <= _SAFE):  # NaN compares False and takes the bit-exact path
        return np.clip(np.rint(v, out=v), lo, hi, out=v)
    bits = (v + _MAGIC).view(np.int32)
    bits &= 0x7FFFFF
    bits -= 0x400000
    return np.clip(bits, lo, hi).astype(F32)


def qkx2(x: np.ndarray, w: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale, minimum and levels L in 0..nmax for x ~ scale*L - the_min, minimising the weighted error.

    x, w: float32 [n, sub-blocks]. Returns L (float32 [n, sub-blocks]), scale and the_min (float32
    [sub-blocks]); the_min >= 0 because the fitted minimum is never above zero. The search starts from
    the plain min/max fit, then tries nstep+1 inverse scales (nmax + rmin + rdelta*k)/(max - min),
    each followed by a least-squares fit of scale and minimum to the levels it gives; the smallest
    weighted squared error wins. `min` moves to each winner's minimum, so later candidates depend on
    earlier ones and the steps run in order.
    """
    xmin = np.minimum(x.min(axis=0), F32(0))  # the minimum is 0 or below, so levels start at 0
    xmax = x.max(axis=0)
    flat = xmax == xmin  # a constant sub-block (or all zero): nothing to search
    sum_w = w.sum(axis=0)
    sum_x = (w * x).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iscale = F32(nmax) / (xmax - xmin)
        scale = F32(1) / iscale
        levels = _levels(x, xmin, iscale, nmax, xmin, xmax, flat)
        best = _error(levels, scale, xmin, x, w)
        low = xmin
        for k in range(nstep + 1):
            factor = F32(rmin) + F32(rdelta) * F32(k) + F32(nmax)
            cand = _levels(x, low, factor / (xmax - low), nmax, xmin, xmax, flat)
            wl = w * cand
            sum_l = wl.sum(axis=0)
            sum_l2 = (wl * cand).sum(axis=0)
            sum_xl = (wl * x).sum(axis=0)
            det = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            above = this_min > 0  # a minimum above zero is refitted as a pure scale
            this_min[above] = 0
            this_scale[above] = sum_xl[above] / sum_l2[above]
            err = _error(cand, this_scale, this_min, x, w)
            better = (det > 0) & (err < best)  # strict: a tie keeps the earlier candidate
            np.copyto(levels, cand, where=better)
            best = np.where(better, err, best)
            scale = np.where(better, this_scale, scale)
            low = np.where(better, this_min, low)
    levels[:, flat] = 0
    return levels, np.where(flat, F32(0), scale), np.where(flat, -xmin, -low)


def _levels(x, low, iscale, nmax, xmin, xmax, flat):
    """nearest_int(iscale * (x - low)) clipped to 0..nmax, with |v| bounded per sub-block from its
    extremes (flat sub-blocks are overwritten later, so whatever they hold does not count)."""
    bound = np.where(flat, F32(0), np.abs(iscale) * np.maximum(xmax - low, low - xmin))
    v = x - low
    v *= iscale
    return nearest_int(v, 0, nmax, bound)


def _error(levels: np.ndarray, scale: np.ndarray, low: np.ndarray, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Sum of w * (scale*L + low - x)^2 over each sub-block, in the reference's order of operations."""
    diff = levels * scale
    diff += low
    diff -= x
    diff *= diff
    diff *= w
    return diff.sum(axis=0)


def qx(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric scale and levels L in 0..2*nmax-1 for x ~ scale*(L - nmax), weights x^2 (rmse_type 1).

    x: float32 [n, sub-blocks]. Returns L (float32 [n, sub-blocks]) and scale (float32 [sub-blocks]).
    The scale's sign follows the largest-magnitude element so that element lands on level -nmax, the
    end with one more step. Besides that plain fit, 18 inverse scales -(nmax + 0.1*k)/max for
    k = -9..9 (not 0) are tried, each with its least-squares scale; the one with the largest
    sumlx^2/suml2 (the most error removed) wins.
    """
    first_max = np.abs(x).argmax(axis=0)  # the first element of largest magnitude, sign kept
    big = np.take_along_axis(x, first_max[None, :], axis=0)[0]
    zero = np.abs(big) < F32(1e-15)  # GROUP_MAX_EPS: an all-zero sub-block gets L = 0, scale 0
    w = x * x
    wx = w * x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        levels, sumlx, suml2 = _qx_try(x, w, wx, F32(-nmax) / big, nmax)
        scale = np.where(suml2 != 0, sumlx / suml2, F32(0))
        best = scale * sumlx
        for k in (*range(-9, 0), *range(1, 10)):
            cand, sumlx, suml2 = _qx_try(x, w, wx, -(F32(nmax) + F32(0.1) * F32(k)) / big, nmax)
            better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            np.copyto(levels, cand, where=better)
            scale = np.where(better, sumlx / suml2, scale)
            best = np.where(better, scale * sumlx, best)
    levels += F32(nmax)
    levels[:, zero] = 0
    return levels, np.where(zero, F32(0), scale)


def _qx_try(x, w, wx, iscale, nmax):
    """Levels -nmax..nmax-1 for one inverse scale, with sum(w*x*l) and sum(w*l*l).

    |iscale * x| <= nmax + 1 because the scale comes from the largest |x|, so plain rounding is
    exact here (all-zero sub-blocks, where it is not, are overwritten)."""
    levels = np.clip(np.rint(x * iscale), -nmax, nmax - 1)
    return levels, (wx * levels).sum(axis=0), (w * levels * levels).sum(axis=0)


def fp16(v: np.ndarray, name: str, x: np.ndarray) -> np.ndarray:
    """float32 super-block factors rounded to float16 (to nearest even, as GGML_FP32_TO_FP16), or a
    ValueError when they overflow: llama.cpp would write inf, and the tensor would decode as NaN."""
    with np.errstate(over="ignore"):
        h = v.astype(np.float16)
    if not np.isfinite(h).all():
        raise ValueError(f"cannot quantize to {name}: values as large as {np.abs(x).max():.3g} overflow its "
                         f"float16 block scales; store this tensor as f32 or bf16.")
    return h


def by_chunks(fn, blocks: np.ndarray, type_size: int, chunk: int = 256) -> np.ndarray:
    """fn(float32 [n, 256]) -> uint8 [n, type_size] over every super-block, `chunk` at a time so the
    temporaries stay in the CPU's cache, on every core (numpy lets go of the GIL inside its loops)."""
    out = np.empty((len(blocks), type_size), dtype=np.uint8)

    def one(start: int) -> None:
        out[start:start + chunk] = fn(blocks[start:start + chunk])

    starts = range(0, len(blocks), chunk)
    if len(starts) == 1 or WORKERS == 1:
        for start in starts:
            one(start)
    else:
        with ThreadPoolExecutor(min(WORKERS, len(starts))) as pool:
            list(pool.map(one, starts))
    return out
