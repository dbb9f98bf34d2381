"""A mixture of experts trained each way a plan may pick for it: peak GPU memory against the memory model's estimate,
tokens/s against the speed model's, and both as ratios to plain transformers + peft measured in the same run.

The model is Qwen3-30B-A3B's shape (resources/models/qwen3-30b-a3b.json: 128 experts of width 768 a layer, 8 per
token) with fewer layers (4 by default: 3.1 B weights, 2.4 B of them experts), random init; nothing is downloaded.
Cells, each a few optimizer steps of 4 × 1024 tokens with checkpointing and LoRA r=16 (core.training.Session):

- peft-frozen-experts: the baseline, what one writes by hand: transformers + peft LoRA on the attention, the
  experts frozen in bf16, torch AdamW;
- lora / lora-frozen-experts: ours, adapters on every expert (peft's target_parameters) or on the attention alone;
- qlora: 4-bit linear layers, the experts in 16 bits with their adapters;
- qlora-frozen-experts: the experts in 4 bits too (core/four_bit_experts.py), how the plan fits Qwen3-30B-A3B on a
  24 GB card: its peak against the estimate, and its speed against the speed model's, which charges the experts'
  dequantization as memory traffic (core/speed_model.py `expert_dequant_seconds`);
- offload-frozen-experts: the layers streamed from pinned RAM, their experts as 4-bit codes (how 8 and 12 GB
  cards train it).

    python benchmarks/moe_gpu.py                          # a few minutes on one H100
    python benchmarks/moe_gpu.py --layers 8 --steps 3
    python benchmarks/moe_gpu.py --list                   # the cells and their predictions; needs no GPU
    python benchmarks/moe_gpu.py --smoke --out /tmp/m.json   # a tiny mixture of experts on the CPU, same code

Results go to `benchmarks/results/moe-<gpu>.json`; `--smoke` writes only with `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if "--smoke" in sys.argv[1:]:  # a smoke run is the CPU's: any GPU is hidden before torch starts
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

from benchmarks import cells  # noqa: E402  (puts core on the path and prepares the process first)
from benchmarks.cells import Cell, gib  # noqa: E402
from benchmarks.strategies_gpu import baseline  # noqa: E402
from core import atomic, hardware, speed_model  # noqa: E402
from core.model_shape import ModelShape  # noqa: E402

import torch  # noqa: E402

BASELINE = "peft-frozen-experts"
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]  # what the baseline adapts, as our frozen-experts LoRA does
LORA = {"r": 16, "alpha": 32}
FROZEN = {**LORA, "experts": False}
CELLS = [(BASELINE, "lora", FROZEN), ("lora", "lora", {**LORA, "experts": True}),
         ("lora-frozen-experts", "lora", FROZEN), ("qlora", "qlora", {**LORA, "experts": True}),
         ("qlora-frozen-experts", "qlora", FROZEN), ("offload-frozen-experts", "offload", {**FROZEN, "where": "ram"})]
STEPS, LAYERS = 4, 4
SMOKE_SHAPE = dict(model_type="qwen3_moe", vocab_size=1000, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                   moe_intermediate_size=64, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True)


def shape(layers: int) -> dict:
    config = json.loads((REPO / "resources" / "models" / "qwen3-30b-a3b.json").read_text(encoding="utf-8"))
    keep = ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_attention_heads", "head_dim",
            "num_key_value_heads", "max_position_embeddings", "moe_intermediate_size", "num_experts",
            "num_experts_per_tok", "norm_topk_prob", "rms_norm_eps", "rope_theta", "tie_word_embeddings")
    return {k: config[k] for k in keep if k in config} | {"num_hidden_layers": layers}


def plan(micro_batch: int, seq_len: int, smoke: bool) -> list[Cell]:
    stream = {"stream": "always"} if smoke else {}  # on the CPU offload streams only when told to
    return [Cell("moe", strategy, micro_batch, seq_len, True, {**options, **(stream if strategy == "offload" else {})},
                 label) for label, strategy, options in CELLS]


def predicted_tokens_per_s(cell: Cell, config: dict, device: str) -> float | None:
    """The speed model's tokens/s for the cell on this GPU (None on the CPU: a smoke run times nothing real)."""
    if device != "cuda":
        return None
    p = torch.cuda.get_device_properties(0)
    gpu = hardware.GPU(0, p.name, p.total_memory, p.total_memory, f"{p.major}.{p.minor}", True)
    hw = hardware.HardwareProfile(gpus=[gpu])
    seconds = speed_model.micro_batch_seconds(ModelShape.from_config(config), cells.setup(cell, device), hw, gpu,
                                              cell.seq_len)
    return cell.micro_batch * cell.seq_len / seconds


def run_cell(cell: Cell, steps: int, config: dict, root: str, device: str, base: dict | None) -> dict:
    key = cells.headline(device)
    pred = cells.predicted_peak(cells.predict(cell, config, device), device)
    speed = predicted_tokens_per_s(cell, config, device)
    out = {**cell.describe(), "steps": steps, "predicted_gib": {k: gib(v) for k, v in pred.items()},
           "predicted_tokens_per_s": speed and round(speed, 1),
           "runs": "transformers + peft, no Tuneforge code" if cell.name == BASELINE else "core.training.Session"}
    if cell.strategy in ("qlora", "offload") and not cells.bnb_version():
        return out | {"status": "skipped", "reason": "bitsandbytes does not import here"}
    started = time.time()
    folder = cells.random_model(cell.model, config, root, device)
    if cell.name == BASELINE:
        batches = cells.random_batches(config["vocab_size"], cell.micro_batch, cell.seq_len, steps)
        got = cells.run(lambda: baseline(folder, device, cell.checkpointing, ATTENTION), batches, device)
    else:
        got = cells.run_session(cell, folder, device, steps)
    out["seconds"] = round(time.time() - started, 1)
    if got["status"] != "measured":
        return out | {"status": got["status"]}
    peak = got["peak_bytes"][key]
    out |= {"status": "measured", "peak_gib": {k: gib(v) for k, v in got["peak_bytes"].items()},
            "peak_over_predicted": round(peak / pred[key], 3), "tokens_per_s": round(got["tokens_per_s"], 1),
            "per_step": [{"seconds": round(s["seconds"], 4), "peak_gib": gib(s["peak_bytes"][key])}
                         for s in got["steps"]]}
    if speed:
        out["tokens_per_s_over_predicted"] = round(got["tokens_per_s"] / speed, 3)
    if base is not None and base.get("status") == "measured":
        out["vs_baseline"] = {"peak": round(out["peak_gib"][key] / base["peak_gib"][key], 3),
                              "tokens_per_s": round(out["tokens_per_s"] / base["tokens_per_s"], 3)}
    return out


def row(result: dict) -> str:
    measured = result.get("status") == "measured"
    if measured:
        figures = (f"{result['peak_gib'][next(iter(result['peak_gib']))]:8.2f} {result['peak_over_predicted']:6.2f} "
                   f"{result['tokens_per_s']:10.1f}")
    else:
        figures = f"  {result.get('status')}: {result.get('reason', '')}"
    predicted = next(iter(result["predicted_gib"].values()))
    return f"{result['cell']:24s} {predicted:8.2f}{figures}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=LAYERS, help=f"Decoder layers (default {LAYERS}).")
    parser.add_argument("--seq-len", type=int, default=1024, help="Tokens per example (default 1024).")
    parser.add_argument("--micro-batch", type=int, default=4, help="Examples per step (default 4).")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"Steps per cell, the first untimed (default {STEPS}).")
    parser.add_argument("--list", action="store_true", help="Print the cells and their predictions; needs no GPU.")
    parser.add_argument("--smoke", action="store_true", help="A tiny mixture of experts on the CPU, same code.")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/moe-<gpu>.json; with "
                                                 "--smoke, nothing unless given).")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is a warm-up.")
    device = "cpu" if args.smoke else "cuda"
    config = SMOKE_SHAPE if args.smoke else shape(args.layers)
    mb, seq, steps = (2, 32, 3) if args.smoke else (args.micro_batch, args.seq_len, args.steps)
    todo = plan(mb, seq, args.smoke)
    if args.list:
        for cell in todo:
            pred = cells.predicted_peak(cells.predict(cell, config, device), device)
            print(f"{cell.name:24s} {' '.join(f'{gib(v):.2f}' for v in pred.values())}")
        return 0
    started = cells.begin(args.smoke, "moe", args.out)
    if started is None:
        return 0
    name, out = started
    what = "a tiny Qwen3 MoE" if args.smoke else "Qwen3-30B-A3B's shape"
    print(f"{name}: {what}, {config['num_hidden_layers']} layers, {ModelShape.from_config(config).params / 1e9:.2f} B "
          f"weights; {mb} × {seq} tokens a step.")
    print(f"{'cell':24s} {'pred GiB':>8s} {'peak GiB':>8s} {'/pred':>6s} {'tokens/s':>10s}", flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tuneforge-moe-bench-") as root:
        for cell in todo:
            base = next((r for r in results if r["cell"] == BASELINE), None)
            results.append(run_cell(cell, steps, config, root, device, base))
            print(row(results[-1]), flush=True)
    if out is not None:
        atomic.write_json(out, {"device": name, "smoke": args.smoke, "command": shlex.join(["python", *sys.argv]),
                                **cells.versions(),
                                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                "config": config, "settings": {"micro_batch": mb, "seq_len": seq, "steps": steps,
                                                               "checkpointing": True, "lora": LORA},
                                "cells": results})
    print(f"Written to {out}." if out else "Nothing written (a smoke run writes only with --out).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
