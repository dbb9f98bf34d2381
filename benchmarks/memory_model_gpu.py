"""The memory model against real peak GPU memory, over a grid of models, strategies and batch shapes.

`core.memory_model.estimate` predicts a training step's peak GPU memory from a model's config alone,
and the planner trusts it to pick a strategy and batch that fit. Its activation coefficients are
re-measured on the CPU by `tests/core/test_memory_model.py`, but a CPU cannot show what decides an
out-of-memory error on a GPU: the peak the CUDA caching allocator reaches in a real step (temporaries
in backward and in the optimizer), the blocks it reserves beyond that, and the CUDA context.

For each cell this runs 3 optimizer steps of a random-init Llama built from its config (nothing is
downloaded) through `core.training.Session`, the trainer's own code path (`benchmarks/cells.py`:
the strategy loads, prepares and builds its optimizer; QLoRA quantizes while loading), on random
token batches, and compares torch's peak allocated and reserved bytes with the prediction:

    predicted allocated = device_total - allocator slack - CUDA context
    predicted reserved  = predicted allocated + allocator slack

NVML's figure for the whole process (context included) is recorded beside the predicted total.
Relative error is (predicted - measured) / measured: positive means the model overestimates.

    python benchmarks/memory_model_gpu.py            # the whole grid (several minutes on one H100)
    python benchmarks/memory_model_gpu.py --quick    # 5 cells
    python benchmarks/memory_model_gpu.py --list     # the grid and its predictions; needs no GPU
    python benchmarks/memory_model_gpu.py --smoke --out /tmp/smoke.json   # the same code on a tiny CPU model

`--smoke` proves the measuring code runs end to end without a GPU: a tiny model on the CPU, where the
measured figure is the process's resident high-water mark against the memory model's CPU total. Its
JSON says so and it writes nothing unless given `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# A smoke run is the CPU's everywhere: any GPU is hidden before torch starts, or QLoRA's 4-bit loader
# (transformers puts a quantized model on a visible GPU by default) would train half of it there.
if "--smoke" in sys.argv[1:]:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

from benchmarks import cells  # noqa: E402  (puts core on the path and prepares the process first)
from benchmarks.cells import Cell, gib  # noqa: E402
from core import atomic  # noqa: E402
from core.memory_model import GIB  # noqa: E402

import torch  # noqa: E402

GOAL = 0.10  # the memory model should be within 10% of the measured peaks
STEPS = 3  # the optimizer state appears in step 1, so the steady peak is only reached from step 2 on
MAX_PARAMS = 1e9  # bigger shipped configs add minutes but no code path the 1B shape below does not cover
MAX_SHARE = 0.8  # cells predicted above this share of the GPU are skipped: an OOM there tells us little
LLAMA_1B_SHAPE = cells.LLAMA_1B_SHAPE  # so the grid has one tied (smollm2) and one untied model
# (label, strategy, settings). LISA's memory depends on whether the embeddings train, so it appears twice;
# its sampling interval stays at the default (20 steps): the 3 steps share one window, as the prediction
# (one step with γ layers active) assumes. benchmarks/strategies_gpu.py measures LISA across switches.
VARIANTS = [("lora", "lora", {}), ("dora", "dora", {}), ("full", "full", {}), ("qlora", "qlora", {}),
            ("lisa", "lisa", {"layers": 2, "embeddings": False}),
            ("lisa+emb", "lisa", {"layers": 2, "embeddings": True}),
            ("lora+act", "lora", {"activations_on_host": True})]  # what forward saves waits in pinned RAM


def models(smoke: bool = False) -> dict[str, dict]:
    if smoke:
        return {"smoke-tiny": cells.SMOKE_SHAPE}
    return cells.shipped_llamas(MAX_PARAMS) | {"llama-1b-shape": LLAMA_1B_SHAPE}


def variants() -> list[tuple[str, str, dict]]:
    return [v for v in VARIANTS if v[1] != "qlora" or cells.bnb_version()]


def grid(quick: bool, smoke: bool = False) -> list[Cell]:
    kinds = variants()
    if smoke:  # every strategy once with checkpointing, and one without: each code path, seconds in all
        return ([Cell("smoke-tiny", "lora", 2, 32, False)]
                + [Cell("smoke-tiny", s, 2, 32, True, o, label) for label, s, o in kinds])
    if quick:  # one cell per strategy family (and activations in RAM), both models, both ends of the batch shapes
        q = "qlora" if any(v[1] == "qlora" for v in kinds) else "lora"
        return [Cell("smollm2-135m", "lora", 1, 256, False), Cell("smollm2-135m", "full", 4, 1024, True),
                Cell("llama-1b-shape", "dora", 4, 1024, False), Cell("llama-1b-shape", q, 1, 1024, True),
                Cell("llama-1b-shape", "lora", 4, 1024, True, {"activations_on_host": True}, "lora+act")]
    out = []
    for m in models():
        for label, s, o in kinds:
            # LISA's two variants only at both ends of the batch shapes: the grid stays a few minutes long.
            shapes = [(1, 256), (4, 1024)] if s == "lisa" else [(b, n) for b in (1, 4) for n in (256, 1024)]
            out += [Cell(m, s, b, n, c, o, label) for b, n in shapes for c in (False, True)]
    return out


def predict(cell: Cell, cfg: dict, device: str) -> dict:
    est = cells.predict(cell, cfg, device)
    return {**cells.predicted_peak(est, device), "terms": est.device}


CELL = f"{'model':<16} {'strat':<8} {'mb':>3} {'seq':>5} {'ckpt':<4}"
HEADER = f"{CELL} {'pred al':>8} {'pred res':>8} {'pred tot':>8}"
HEADER_RUN = f"{HEADER} {'meas al':>8} {'err':>7} {'meas res':>8} {'err':>7} {'nvml':>8}"
HEADER_SMOKE_LIST = f"{CELL} {'pred':>8}"  # on the CPU the one figure is the process's resident bytes
HEADER_SMOKE = f"{HEADER_SMOKE_LIST} {'meas':>8} {'err':>7} {'tok/s':>9}"


def row(cell: Cell, pred: dict, result: dict | None = None) -> str:
    line = (f"{cell.model:<16} {cell.name:<8} {cell.micro_batch:>3} {cell.seq_len:>5} "
            f"{'on' if cell.checkpointing else 'off':<4}")
    keys = ("allocated", "reserved", "total") if "allocated" in pred else ("process",)
    line += "".join(f" {pred[k] / GIB:>8.2f}" for k in keys)
    if result is None:
        return line
    if result["status"] != "measured":
        return f"{line}   {result['status']}" + (f" ({result['reason']})" if "reason" in result else "")
    m, e = result["measured_gib"], result["error"]
    if "process" in m:  # a CPU smoke run
        return f"{line} {m['process']:>8.2f} {e['process']:>+7.1%} {result['tokens_per_s']:>9.0f}"
    nvml = "-" if m["nvml"] is None else f"{m['nvml']:.2f}"
    return (f"{line} {m['allocated']:>8.2f} {e['allocated']:>+7.1%} {m['reserved']:>8.2f} {e['reserved']:>+7.1%} "
            f"{nvml:>8}")


def run_cell(cell: Cell, cfg: dict, root: str, device: str) -> tuple[dict, dict]:
    pred = predict(cell, cfg, device)
    shown = [k for k in pred if k != "terms"]
    out = {**cell.describe(), "predicted_gib": {k: gib(pred[k]) for k in shown},
           "terms_gib": {k: gib(v) for k, v in pred["terms"].items()}}
    top = pred.get("total", pred.get("process"))
    if top > MAX_SHARE * cells.capacity(device):
        return pred, out | {"status": "skipped", "reason": f"predicted above {MAX_SHARE:.0%} of the GPU"}
    started = time.time()
    folder = cells.random_model(cell.model, cfg, root, device)
    got = cells.run_session(cell, folder, device, STEPS)
    out["seconds"] = round(time.time() - started, 1)
    if got["status"] != "measured":
        return pred, out | {"status": got["status"]}
    peak = dict(got["peak_bytes"])
    if device == "cuda":
        peak["nvml"] = got["nvml_bytes"]
        out["nvml_scope"] = got["nvml_scope"]
    measured = [k for k in peak if k != "nvml"]
    return pred, out | {"status": "measured", "measured_gib": {k: gib(v) for k, v in peak.items()},
                        "error": {k: round((pred[k] - peak[k]) / peak[k], 4) for k in measured},
                        "tokens_per_s": round(got["tokens_per_s"], 1), "peak_scope": got["peak_scope"]}


def summary(results: list[dict], smoke: bool) -> dict:
    measured = [c for c in results if c["status"] == "measured"]
    out = {"goal": f"within {GOAL:.0%}", **{s: sum(c["status"] == s for c in results)
                                              for s in ("measured", "oom", "skipped")}}
    keys = ("process",) if smoke else ("allocated", "reserved")
    for k in keys:
        errors = [abs(c["error"][k]) for c in measured]
        out[f"max_abs_error_{k}"] = round(max(errors), 4) if errors else None
        out[f"mean_abs_error_{k}"] = round(sum(errors) / len(errors), 4) if errors else None
    if smoke:  # a tiny model's process is mostly the runtime: its error says nothing about the memory model
        out["met"] = None
        out["note"] = cells.SMOKE_LABEL
    else:
        out["met"] = bool(measured) and all(out[f"max_abs_error_{k}"] <= GOAL for k in keys)
    return out


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Measure 5 cells instead of the whole grid.")
    parser.add_argument("--list", action="store_true", help="Print the grid and its predictions (GiB); needs no GPU.")
    parser.add_argument("--smoke", action="store_true",
                        help="Run a tiny model on the CPU through the same code (checks the script, measures no GPU).")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/memory_model-<gpu>.json; "
                                                 "with --smoke, nothing unless given).")
    args = parser.parse_args(argv)
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not args.list and not torch.cuda.is_available():
        print(cells.NO_GPU)
        return 0
    configs, grid_cells = models(args.smoke), grid(args.quick, args.smoke)
    if args.list:
        print(HEADER if device == "cuda" else HEADER_SMOKE_LIST)
        print("\n".join(row(cell, predict(cell, configs[cell.model], device)) for cell in grid_cells))
        return 0

    if args.smoke:
        cells.smoke_process()
    name = torch.cuda.get_device_name() if device == "cuda" else cells.SMOKE_LABEL
    default = REPO / "benchmarks" / "results" / f"memory_model-{cells.slug(name)}.json"
    out = args.out or (None if args.smoke else default)
    print(f"{name}: {len(grid_cells)} cells, {STEPS} steps each; errors are (predicted - measured) / measured.")
    print(HEADER_RUN if device == "cuda" else HEADER_SMOKE, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="tuneforge-memory-bench-") as root:
        for cell in grid_cells:
            pred, result = run_cell(cell, configs[cell.model], root, device)
            results.append(result)
            print(row(cell, pred, result), flush=True)
    s = summary(results, args.smoke)
    if out is not None:
        atomic.write_json(out, {"device": name, "smoke": args.smoke, "command": shlex.join(["python", *sys.argv]),
                                **cells.versions(),
                                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                "cells": results, "summary": s})
    written = f"Written to {out}." if out else "Nothing written (a smoke run writes only with --out)."
    if args.smoke:
        print(f"\n{cells.SMOKE_LABEL}: {s['measured']} of {len(results)} cells ran. {written}")
        return 0
    print(f"\nAllocated: max error {pct(s['max_abs_error_allocated'])}, mean {pct(s['mean_abs_error_allocated'])}; "
          f"reserved: max {pct(s['max_abs_error_reserved'])}, mean {pct(s['mean_abs_error_reserved'])} "
          f"(goal {s['goal']}: {'met' if s['met'] else 'not met'}). {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
