"""Every tensor type an export can write, as one table, and the K-quants (our own code) three ways:

- bytes: against a slow, line-by-line Python transcription of llama.cpp's reference quantizers
  (`quantize_row_q4_K_ref`, `_q5_K_ref`, `_q6_K_ref` and their helpers in ggml/src/ggml-quants.c),
  written with numpy float32 scalars so that every rounding happens where the C code's does. It runs
  on a few blocks of many kinds, and the vectorized quantizers must give the same bytes. (When this
  was written, the quantizers also gave the same bytes as llama.cpp's compiled reference itself,
  libggml-base 0.20.2 on x86-64 called through ctypes, on about 250,000 blocks per type of a dozen
  kinds of data; that library is not a dependency, so the transcription stands in for it here.)
- decoding: gguf's de-quantizers (llama.cpp's own format library) read our bytes to the same floats
  as our de-quantizers.
- error: the round trip's RMS error, against the legacy types quantized by gguf on the same data.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import quants as gguf_quants

from core.gguf_export import quants

f32 = np.float32
K_TYPES = ["q4_k", "q5_k", "q6_k"]


# ---- the reference, transcribed one scalar at a time (slow on purpose: it is the oracle) ----

def nearest_int(v) -> int:
    """ggml's nearest_int: add 1.5*2^23 in float32 and read the low 23 bits back."""
    bits = int(np.array(f32(v) + f32(12582912)).view(np.int32))
    return (bits & 0x007FFFFF) - 0x00400000


def make_qkx2_quants(x, w, nmax, rmin, rdelta, nstep):
    n = len(x)
    lo, hi, sum_w = x[0], x[0], w[0]
    sum_x = sum_w * x[0]
    for i in range(1, n):
        lo, hi = min(lo, x[i]), max(hi, x[i])
        sum_w = sum_w + w[i]
        sum_x = sum_x + w[i] * x[i]
    if lo > 0:
        lo = f32(0)
    if hi == lo:
        return [0] * n, f32(0), -lo
    iscale = f32(nmax) / (hi - lo)
    scale = f32(1) / iscale
    levels = [max(0, min(nmax, nearest_int(iscale * (x[i] - lo)))) for i in range(n)]
    best = f32(0)
    for i in range(n):
        diff = scale * f32(levels[i]) + lo - x[i]
        best = best + w[i] * (diff * diff)
    for step in range(nstep + 1):
        iscale = (f32(rmin) + f32(rdelta) * f32(step) + f32(nmax)) / (hi - lo)
        aux = [max(0, min(nmax, nearest_int(iscale * (x[i] - lo)))) for i in range(n)]
        sum_l = sum_l2 = sum_xl = f32(0)
        for i in range(n):
            sum_l = sum_l + w[i] * f32(aux[i])
            sum_l2 = sum_l2 + w[i] * f32(aux[i]) * f32(aux[i])
            sum_xl = sum_xl + w[i] * f32(aux[i]) * x[i]
        det = sum_w * sum_l2 - sum_l * sum_l
        if det > 0:
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
            if this_min > 0:
                this_min, this_scale = f32(0), sum_xl / sum_l2
            err = f32(0)
            for i in range(n):
                diff = this_scale * f32(aux[i]) + this_min - x[i]
                err = err + w[i] * (diff * diff)
            if err < best:
                levels, best, scale, lo = aux, err, this_scale, this_min
    return levels, scale, -lo


def q4_k_like(x, nmax, rmin, rdelta, nstep):
    """The part quantize_row_q4_K_ref and _q5_K_ref share: (d and dmin as f16 bytes + 12 scale bytes, L)."""
    levels, scales, mins = [0] * 256, [f32(0)] * 8, [f32(0)] * 8
    for j in range(8):
        sub = x[32 * j:32 * j + 32]
        sum_x2 = f32(0)
        for v in sub:
            sum_x2 = sum_x2 + v * v
        av_x = np.sqrt(sum_x2 / f32(32))
        levels[32 * j:32 * j + 32], scales[j], mins[j] = make_qkx2_quants(
            sub, [av_x + abs(v) for v in sub], nmax, rmin, rdelta, nstep)
    max_scale, max_min = max([f32(0), *scales]), max([f32(0), *mins])
    inv_scale = f32(63) / max_scale if max_scale > 0 else f32(0)
    inv_min = f32(63) / max_min if max_min > 0 else f32(0)
    ls = [min(63, nearest_int(inv_scale * s) & 0xFF) for s in scales]
    lm = [min(63, nearest_int(inv_min * m) & 0xFF) for m in mins]
    packed = [0] * 12
    for j in range(8):
        if j < 4:
            packed[j], packed[j + 4] = ls[j], lm[j]
        else:
            packed[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
            packed[j - 4] |= (ls[j] >> 4) << 6
            packed[j] |= (lm[j] >> 4) << 6
    d, dmin = np.float16(max_scale / f32(63)), np.float16(max_min / f32(63))
    for j in range(8):
        sub_d = f32(d) * f32(ls[j])
        if not sub_d:
            continue
        sub_m = f32(dmin) * f32(lm[j])
        for i in range(32 * j, 32 * j + 32):
            levels[i] = max(0, min(nmax, nearest_int((x[i] + sub_m) / sub_d)))
    return np.array([d, dmin]).tobytes() + bytes(packed), levels


def ref_q4_k(x):
    head, levels = q4_k_like(x, 15, -1.0, 0.1, 20)
    qs = [levels[j + i] | levels[j + i + 32] << 4 for j in range(0, 256, 64) for i in range(32)]
    return head + bytes(qs)


def ref_q5_k(x):
    head, levels = q4_k_like(x, 31, -0.5, 0.1, 15)
    qh, ql = [0] * 32, []
    for group, n in enumerate(range(0, 256, 64)):
        for j in range(32):
            l1, l2 = levels[n + j], levels[n + j + 32]
            if l1 > 15:
                l1 -= 16
                qh[j] |= 1 << (2 * group)
            if l2 > 15:
                l2 -= 16
                qh[j] |= 2 << (2 * group)
            ql.append(l1 | l2 << 4)
    return head + bytes(qh) + bytes(ql)


def make_qx_quants(x, nmax):  # rmse_type 1, no quant weights: w = x*x
    n = len(x)
    big, amax = f32(0), f32(0)
    for v in x:
        if abs(v) > amax:
            amax, big = abs(v), v
    if amax < f32(1e-15):
        return [0] * n, f32(0)

    def sums(iscale):
        sumlx = suml2 = f32(0)
        for v in x:
            q = f32(max(-nmax, min(nmax - 1, nearest_int(iscale * v))))
            sumlx = sumlx + v * v * v * q
            suml2 = suml2 + v * v * q * q
        return sumlx, suml2

    def levels(iscale):
        return [nmax + max(-nmax, min(nmax - 1, nearest_int(iscale * v))) for v in x]

    iscale = f32(-nmax) / big
    best_l = levels(iscale)
    sumlx, suml2 = sums(iscale)
    scale = sumlx / suml2 if suml2 else f32(0)
    best = scale * sumlx
    for step in [*range(-9, 0), *range(1, 10)]:
        iscale = -(f32(nmax) + f32(0.1) * f32(step)) / big
        sumlx, suml2 = sums(iscale)
        if suml2 > 0 and sumlx * sumlx > best * suml2:
            best_l, scale = levels(iscale), sumlx / suml2
            best = scale * sumlx
    return best_l, scale


def ref_q6_k(x):
    levels, scales = [0] * 256, [f32(0)] * 16
    max_scale, max_abs = f32(0), f32(0)
    for j in range(16):
        levels[16 * j:16 * j + 16], scales[j] = make_qx_quants(x[16 * j:16 * j + 16], 32)
        if abs(scales[j]) > max_abs:
            max_abs, max_scale = abs(scales[j]), scales[j]
    if max_abs < f32(1e-15):
        return bytes(210)
    iscale = f32(-128) / max_scale
    d = np.float16(f32(1) / iscale)
    sc = [min(127, nearest_int(iscale * s)) for s in scales]
    for j in range(16):
        sub_d = f32(d) * f32(sc[j])
        if sub_d:
            for i in range(16 * j, 16 * j + 16):
                levels[i] = 32 + max(-32, min(31, nearest_int(x[i] / sub_d)))
    ql, qh = [0] * 128, [0] * 64
    for half in range(2):
        q = levels[128 * half:128 * half + 128]
        for i in range(32):
            ql[64 * half + i] = (q[i] & 0xF) | (q[i + 64] & 0xF) << 4
            ql[64 * half + i + 32] = (q[i + 32] & 0xF) | (q[i + 96] & 0xF) << 4
            qh[32 * half + i] = q[i] >> 4 | (q[i + 32] >> 4) << 2 | (q[i + 64] >> 4) << 4 | (q[i + 96] >> 4) << 6
    return bytes(ql) + bytes(qh) + np.array(sc, dtype=np.int8).tobytes() + d.tobytes()


REFERENCE = {"q4_k": ref_q4_k, "q5_k": ref_q5_k, "q6_k": ref_q6_k}


# ---- the table ----

def _mixed(rng, n):  # sub-blocks from 1e-9 to 100 in one super-block: small scales round to 0 or 1
    return rng.standard_normal((n, 256)) * np.repeat(np.logspace(-9, 2, 16), 16)


def _near_ties(rng):
    """Super-blocks where two candidates' errors are so close that adding one sub-block's floats in
    another order, or letting a tie win, changes the bytes: found by making each such change to the
    vectorized code and keeping rows of 8192 random blocks where the bytes moved (0.1-3% of them).
    The rows are numpy 2's random streams; should those ever change, they are merely random blocks."""
    t = np.random.default_rng(10).standard_t(2, (8192, 256))[[48, 68, 70, 121, 163, 184, 205, 281, 911, 1152,
                                                               1203, 1486, 1597, 3758]]
    return np.concatenate([t, np.random.default_rng(11).standard_normal((8192, 256))[[6913]]])


CASES = {  # name -> rows of 256 values (one super-block each), built from a seeded generator
    "gaussian": lambda rng: rng.standard_normal((3, 256)),
    "student-t": lambda rng: rng.standard_t(2, (3, 256)),
    "weights": lambda rng: 0.02 * rng.standard_normal((2, 256)) + 0.01,
    "all positive": lambda rng: np.abs(rng.standard_normal((1, 256))) + 0.5,
    "all negative": lambda rng: -np.abs(rng.standard_normal((1, 256))) - 0.5,
    "zeros": lambda rng: np.zeros((1, 256)),
    "constant": lambda rng: np.full((1, 256), 0.3),
    "negative constant": lambda rng: np.full((1, 256), -0.3),
    "half zeros": lambda rng: np.concatenate([np.zeros((1, 128)), rng.standard_normal((1, 128))], axis=1),
    "sparse": lambda rng: rng.standard_normal((1, 256)) * (rng.random((1, 256)) < 0.05),
    "few levels": lambda rng: np.round(rng.standard_normal((1, 256)) * 2) / 2,
    "mixed magnitudes": lambda rng: _mixed(rng, 2),
    "tiny": lambda rng: rng.standard_normal((1, 256)) * 1e-30,
    # a sub-normal range makes nmax/(max - min) overflow to inf: nearest_int's bits decide, not rounding
    "denormals among zeros": lambda rng: rng.standard_normal((1, 256)) * 1e-40 * (rng.random((1, 256)) < 0.1),
    "large": lambda rng: rng.standard_normal((1, 256)) * 1e4,
    "near ties": _near_ties,
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", K_TYPES)
def test_bytes_equal_the_reference_transcription(name, case):
    a = CASES[case](np.random.default_rng(sorted(CASES).index(case))).astype(np.float32)
    ours = quants.get(name).quantize(a)
    with np.errstate(all="ignore"):  # C's float overflows to inf and 0*inf is NaN without a word, as here
        ref = np.frombuffer(b"".join(REFERENCE[name](list(row)) for row in a), np.uint8).reshape(ours.shape)
    assert ours.shape == (len(a), quants.get(name).type_size)
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("name", K_TYPES)
def test_gguf_decodes_our_bytes_as_our_decoder_does(name):
    rng = np.random.default_rng(1)
    a = np.concatenate([rng.standard_normal((24, 1024)), rng.standard_t(3, (24, 1024)),
                        _mixed(rng, 16).reshape(4, 1024), np.zeros((2, 1024))]).astype(np.float32)
    qtype = quants.get(name)
    b = qtype.quantize(a)
    ours = qtype.dequantize(b)
    assert ours.dtype == np.float32 and ours.shape == a.shape
    assert np.array_equal(ours, gguf_quants.dequantize(b, qtype.ggml))


# Relative RMS error of the round trip on 128 x 1024 values (seed 0), as measured when written:
#                q4_0    q4_k    q5_0    q5_1    q5_k    q6_k    q8_0
#   Gaussian     0.086   0.072   0.043   0.038   0.036   0.018   0.0054
#   Student-t 3  0.129   0.093   0.067   0.048   0.047   0.026   0.0085
# Each K type beats the legacy type of its size (and its own fallback); Q6_K halves Q5_0's error and
# is about 3x Q8_0's, as 2 fewer bits per value would have it. The bounds leave a few percent.
ERROR_BOUNDS = {"gaussian": {"q4_k": 0.075, "q5_k": 0.038, "q6_k": 0.019},
                "student-t": {"q4_k": 0.097, "q5_k": 0.050, "q6_k": 0.027}}


@pytest.mark.parametrize("dist", ERROR_BOUNDS)
def test_error_beats_the_legacy_types_of_the_same_size(dist):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((128, 1024)) if dist == "gaussian" else rng.standard_t(3, (128, 1024))).astype(np.float32)
    err = {}
    for name in ("q4_0", "q5_0", "q5_1", "q8_0", *K_TYPES):
        qtype = quants.get(name)
        err[name] = float(np.sqrt(np.mean((qtype.dequantize(qtype.quantize(a)) - a) ** 2) / np.mean(a ** 2)))
    for name, bound in ERROR_BOUNDS[dist].items():
        assert err[name] < bound, err
    assert err["q4_k"] < 0.9 * err["q4_0"] and err["q5_k"] < err["q5_1"] < err["q5_0"], err
    assert err["q6_k"] < 0.6 * err["q5_k"] and err["q6_k"] < 0.5 * err["q5_0"] and err["q6_k"] < 4 * err["q8_0"], err


@pytest.mark.parametrize("name", K_TYPES)
def test_quiet_blocks_decode_to_what_they_hold(name):
    qtype = quants.get(name)
    zeros = np.zeros((2, 512), np.float32)
    assert not qtype.quantize(zeros).any() and not qtype.dequantize(qtype.quantize(zeros)).any()
    # within float16's rounding of d (blocks much smaller than these put d among float16's
    # sub-normals, and lose relative precision there, in llama.cpp too)
    for c in (0.3, -0.3, 7.0, -250.0):
        const = np.full((1, 256), c, np.float32)
        assert np.allclose(qtype.dequantize(qtype.quantize(const)), c, rtol=2e-3, atol=0)
    tiny = np.random.default_rng(2).standard_normal((1, 256)).astype(np.float32) * 1e-30
    back = qtype.dequantize(qtype.quantize(tiny))  # below float16's range: the scales round to zero
    assert np.isfinite(back).all() and np.abs(back - tiny).max() <= np.abs(tiny).max()


@pytest.mark.parametrize("name", K_TYPES)
def test_bad_input_is_refused_in_one_sentence(name):
    qtype = quants.get(name)
    fine = np.random.default_rng(3).standard_normal((2, 256)).astype(np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        a = fine.copy()
        a[1, 7] = bad
        with pytest.raises(ValueError, match=f"^cannot quantize to {name}: the tensor holds NaN or infinite values"):
            qtype.quantize(a)
    too_big = f"^cannot quantize to {name}: values as large as 1e\\+12 overflow .* f32 or bf16"
    with pytest.raises(ValueError, match=too_big):
        qtype.quantize(np.full((1, 256), 1e12, np.float32))
    big = fine * 1e6  # still fine: the float16 factors hold it
    assert np.abs(qtype.dequantize(qtype.quantize(big)) - big).max() < 0.15 * np.abs(big).max()
    with pytest.raises(ValueError, match=f"^{name} stores rows in blocks of 256 values and these rows have 288; "
                                         f"store this tensor as {quants.FALLBACK[name]} instead"):
        qtype.quantize(np.zeros((2, 288), np.float32))
    with pytest.raises(ValueError, match="have 100; store this tensor as f16 instead"):
        qtype.quantize(np.zeros((2, 100), np.float32))


def test_fallbacks_are_llama_cpps():
    assert quants.FALLBACK == {"q4_k": "q5_0", "q5_k": "q5_1", "q6_k": "q8_0"}
    assert [quants.storable(n, 576) for n in K_TYPES] == ["q5_0", "q5_1", "q8_0"]  # SmolLM2-135M's width
    assert [quants.storable(n, 1536) for n in K_TYPES] == K_TYPES
    assert [quants.storable(n, 100) for n in K_TYPES] == ["f16"] * 3
    assert quants.storable("q8_0", 64) == "q8_0" and quants.storable("q8_0", 100) == "f16"


# Largest relative RMS error each type may show on Gaussian data, about 1.5x what it shows.
ROUND_TRIP = {"f32": 0.0, "f16": 5e-4, "bf16": 4e-3, "q8_0": 0.008, "q6_k": 0.027, "q5_1": 0.06,
              "q5_0": 0.065, "q5_k": 0.055, "q4_0": 0.13, "q4_k": 0.11}


@pytest.mark.parametrize("name", sorted(quants.TYPES))
def test_every_registered_type_round_trips(name):
    qtype = quants.get(name)
    assert qtype.name == name and name in ROUND_TRIP, "a new type needs its bound in ROUND_TRIP"
    a = np.random.default_rng(4).standard_normal((8, 512)).astype(np.float32)
    assert qtype.fits(512) and qtype.fits(qtype.block_size * 3)
    assert qtype.block_size == 1 or not qtype.fits(512 + qtype.block_size // 2)
    b = qtype.quantize(a)
    if qtype.block_size > 1:
        assert b.dtype == np.uint8 and b.shape == (8, 512 // qtype.block_size * qtype.type_size)
    back = qtype.dequantize(b)
    assert back.dtype == np.float32 and back.shape == a.shape
    assert np.sqrt(np.mean((back - a) ** 2)) <= ROUND_TRIP[name]


@pytest.mark.parametrize("name", K_TYPES)
def test_chunks_threads_shapes_and_dtypes_do_not_change_the_bytes(name):
    qtype = quants.get(name)
    a = np.random.default_rng(5).standard_normal((3, 256 * 200)).astype(np.float16)  # 600 blocks: several chunks
    whole = qtype.quantize(a)
    assert np.array_equal(whole, np.concatenate([qtype.quantize(row[None].astype(np.float32)) for row in a]))
    stacked = qtype.quantize(a.reshape(3, 10, 5120))
    assert stacked.shape == (3, 10, 20 * qtype.type_size)
    assert np.array_equal(stacked.reshape(3, -1), whole)
    assert qtype.dequantize(stacked).shape == (3, 10, 5120)
