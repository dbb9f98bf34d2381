"""Check every tensor of a written GGUF file against the merged model, one tensor at a time.

Each tensor is read back from the file by our own reader (reader.py), de-quantized and turned back into
Hugging Face's layout (the architecture's `untransform`), and compared with the merged weight it was written
from: its relative RMS error, ‖file − merged‖ / ‖merged‖, must stay under what its type loses by rounding.

This is the check for a model too large for the answers of two copies to be compared in memory (verify.py);
it holds one tensor at a time. It catches a tensor written at the wrong offset or from the wrong weight, a
corrupt block or a broken quantizer, which give errors near 1 or above; it cannot catch a transform whose
inverse is equally wrong, which is why the answer comparison stays the check wherever memory allows.

The bars are about twice the worst error measured on the default model's matrices and on Gaussian ones
(f16 0.0002, bf16 0.0017, q8_0 0.0065, q6_k 0.018, q5_k 0.036, q5_1 0.053, q5_0 0.056, q4_k 0.071,
q4_0 0.11; f32 only by float32 rounding in the inverse transform, such as Gemma's norm − 1): a healthy
file passes with room, and a tensor read from the wrong rows is about √2 away, six times the widest bar.
"""

from __future__ import annotations

import numpy as np

from core.gguf_export import quants, reader

ROUND_TRIP = {"f32": 1e-5, "f16": 5e-4, "bf16": 4e-3, "q8_0": 0.015, "q6_k": 0.04, "q5_k": 0.08, "q5_1": 0.11,
              "q5_0": 0.11, "q4_k": 0.15, "q4_0": 0.22}


def decoded(path, contents: reader.Contents, plan, t, info: reader.TensorInfo) -> np.ndarray:
    """The planned tensor `t` as the file holds it, de-quantized, in Hugging Face's layout (float32)."""
    rows = int(np.prod(t.shape[:-1])) if len(t.shape) > 1 else 1
    raw = reader.tensor_bytes(path, contents, info, t.nbytes).reshape(rows, -1)
    array = plan.arch.untransform(t.name, quants.get(t.type).dequantize(raw).reshape(t.shape), plan.cfg)
    return np.ascontiguousarray(array, dtype=np.float32)


def check(path, plan, tensors, progress) -> tuple[list[str], dict]:
    """(problems, figures): every written tensor against `tensors` (HF name → merged tensor)."""
    contents = reader.read(path)
    problems, worst = [], {}
    for i, (t, info) in enumerate(zip(plan.tensors, contents.tensors)):
        if t.source is None:
            continue
        progress.update(i / len(plan.tensors), "Checking each tensor against the merged model")
        got = decoded(path, contents, plan, t, info)
        want = t.of(tensors[t.source]).detach().float().cpu().numpy().reshape(got.shape)
        error = float(np.sqrt(((got - want) ** 2).sum() / max((want.astype(np.float64) ** 2).sum(), 1e-30)))
        worst[t.type] = max(worst.get(t.type, 0.0), error)
        if not error <= ROUND_TRIP[t.type]:  # (not <=: a NaN fails too)
            problems.append(f"{t.name} reads back {error:.3g} away from the merged weight (at most "
                            f"{ROUND_TRIP[t.type]} expected for {t.type})")
    return problems, {"tensor_error": {k: round(v, 5) for k, v in sorted(worst.items())}}
