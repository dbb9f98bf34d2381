"""Quantizing speed on the CPU: our K-quants (Q4_K, Q5_K, Q6_K) against gguf's Q4_0 and Q8_0.

Each type quantizes the same float32 matrices in the same process: 4096 x 4096 (a 7B-sized
projection) and 576 x 1536 (SmolLM2-135M's MLP down projection; its gate and up projections have
rows of 576 values, which no K-quant can hold, so they fall back to a legacy type). Speed is MB/s of
float32 input, the best of a few runs after a warm-up. The goal from the issue: a 135M-parameter
model quantizes to Q4_K in well under a minute on a 2-core machine; the JSON gives the time the
measured Q4_K speed implies for 135M values. The script also checks that gguf (llama.cpp's format
library) decodes our bytes to exactly what our own decoders give (exit status 1 if not).

    python benchmarks/quantize_speed.py            # both shapes, best of 3
    python benchmarks/quantize_speed.py --quick --out /tmp/q.json   # small shapes, once

Without --out the result goes to benchmarks/results/quantize_speed-<cpu>.json; a --quick run's
figures are not comparable and are written only where --out says. Timings are wall clock and the
K-quants use every core, so other work on the machine lowers them: the JSON has the load average.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gguf import quants as gguf_quants  # noqa: E402

from core import atomic, hardware  # noqa: E402
from core.gguf_export import quants  # noqa: E402
from core.gguf_export.quants import kquant_search  # noqa: E402

TYPES = ("q4_k", "q5_k", "q6_k", "q4_0", "q8_0")  # the last two are gguf's, the baseline
SHAPES = {"full": [(4096, 4096), (576, 1536)], "quick": [(512, 1024), (576, 1536)]}
GOAL_PARAMS, GOAL_SECONDS = 135_000_000, 60.0


def weights(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    """Values shaped like a trained projection: small, Gaussian, with a little per-column offset."""
    rng = np.random.default_rng(seed)
    return (0.02 * rng.standard_normal((rows, cols)) + 0.005 * rng.standard_normal(cols)).astype(np.float32)


def best_time(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(shape: tuple[int, int], repeats: int) -> tuple[dict, list[str]]:
    a = weights(*shape)
    figures, disagree = {}, []
    for name in TYPES:
        qtype = quants.get(name)
        qtype.quantize(a[:16])  # warm-up: imports, first allocations
        seconds, b = best_time(lambda: qtype.quantize(a), repeats)
        back = qtype.dequantize(b)
        figures[name] = {"seconds": round(seconds, 4), "mb_per_s": round(a.nbytes / seconds / 1e6, 1),
                         "bytes_out": int(b.nbytes),
                         "rel_rms_error": round(float(np.sqrt(np.mean((back - a) ** 2) / np.mean(a ** 2))), 5)}
        if name.endswith("_k") and not np.array_equal(back, gguf_quants.dequantize(b, qtype.ggml)):
            disagree.append(f"{name} {shape[0]}x{shape[1]}")
    return figures, disagree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small shapes, one run each (a smoke run).")
    parser.add_argument("--repeats", type=int, help="Runs per type and shape; the best counts (3, or 1 with --quick).")
    parser.add_argument("--out", type=Path,
                        help="JSON to write (default benchmarks/results/quantize_speed-<cpu>.json; "
                             "a --quick run writes only here).")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeats must be at least 1.")

    cpu = hardware._cpu_name() or platform.processor() or platform.machine()
    load_before = os.getloadavg()
    shapes, disagree = {}, []
    for rows, cols in SHAPES["quick" if args.quick else "full"]:
        shapes[f"{rows}x{cols}"], bad = measure((rows, cols), repeats)
        disagree += bad
    largest = max(shapes, key=lambda s: int(s.split("x")[0]) * int(s.split("x")[1]))
    q4_k_mb_s = shapes[largest]["q4_k"]["mb_per_s"]
    estimate = GOAL_PARAMS * 4 / (q4_k_mb_s * 1e6)
    result = {
        "benchmark": "quantize_speed", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": cpu, "cores_logical": os.cpu_count(), "platform": platform.platform(),
                   "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())},
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "gguf": version("gguf")},
        "quick": args.quick, "repeats": repeats, "input": "float32, 0.02 * N(0,1) + a per-column offset",
        "k_quant_threads": kquant_search.WORKERS, "legacy_threads": 1,
        "shapes": shapes,
        "goal": {"params": GOAL_PARAMS, "seconds": GOAL_SECONDS, "q4_k_estimate_seconds": round(estimate, 1),
                 "from_shape": largest, "meets_goal": estimate < GOAL_SECONDS},
        "agree": not disagree, "disagree": disagree,
    }
    out = args.out or (None if args.quick else REPO / "benchmarks" / "results" / f"quantize_speed-{_slug(cpu)}.json")
    if out:
        atomic.write_json(out, result)

    print(f"Quantizing float32 on {cpu} ({os.cpu_count()} cores; the K-quants on {kquant_search.WORKERS} threads, "
          f"gguf's on 1), MB/s of input, best of {repeats}:")
    print(f"  {'shape':<11}" + "".join(f"{name:>9}" for name in TYPES))
    for shape, figures in shapes.items():
        print(f"  {shape:<11}" + "".join(f"{figures[name]['mb_per_s']:>9.1f}" for name in TYPES))
    print(f"  {GOAL_PARAMS / 1e6:.0f}M values to q4_k: about {estimate:.0f} s at the {largest} speed "
          f"(goal under {GOAL_SECONDS:.0f} s: {'met' if result['goal']['meets_goal'] else 'not met'})")
    agreement = "yes" if not disagree else "NO: " + ", ".join(disagree)
    print(f"  gguf decodes our K-quant bytes as our decoders do: {agreement}")
    print(f"Wrote {out}" if out else "Nothing written (a --quick run writes only with --out).")
    return 0 if not disagree else 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cpu"


if __name__ == "__main__":
    sys.exit(main())
