"""End to end: Tuneforge's trainer against plain transformers + peft (+ bitsandbytes for QLoRA) on the
same random-init model, batches and LoRA settings, measured in the same run: tokens per second, peak
GPU memory, and model FLOPs utilisation (MFU).

Cells, in the order they run (the 8B shape by default; nothing is downloaded):

- `peft-lora`: transformers' bf16 model, peft's LoraConfig(r=16, alpha=32) on the seven projections,
  torch's AdamW (`strategies_gpu.baseline`, the same baseline the strategies benchmark uses);
- `lora`: our LoRA through core.training.Session with our kernels (the trainer's default on CUDA);
- `lora-no-kernels`: the same without our kernels, to show what they add on their own;
- `peft-qlora`: the QLoRA recipe as people write it: BitsAndBytesConfig nf4 with double quantization
  and bf16 compute, peft's prepare_model_for_kbit_training, the same LoraConfig, bitsandbytes' paged
  8-bit AdamW (what the recipe's `optim="paged_adamw_8bit"` picks);
- `qlora`: our QLoRA (nf4 base, our nf4-dequantizing LoRA kernel, paged 8-bit AdamW);
- `qlora-host-activations`: the same with `activations_on_host` (what the planner picks when the
  activations do not fit): with checkpointing each layer's input waits in pinned RAM, so the GPU holds
  about one layer's activations instead of every layer's input.

Gradient checkpointing is on for every cell (what makes an 8B model trainable on one card);
`--no-checkpointing` turns it off for every cell, as the planner does where the activations fit (an
80 GB card holds 4 × 2048 tokens of an 8B model's LoRA activations), and the output file says so.

MFU counts model FLOPs, not the hardware's: per trained token 4·N for LoRA (forward 2·N, backward 2·N
for the input gradients; the frozen base has no weight gradients, and checkpointing's recomputed
forward is not counted), N being the weights of the matmuls (the head included, the embedding
lookup not), plus causal attention's 2·L·T·d forward and 4·L·T·d backward. The peak is the data sheet's
dense bf16 figure (core.speed_model.GPU_TFLOPS), e.g. 989 TFLOP/s for an H100 SXM.

The issue's goals, judged in the summary: our QLoRA at least 2.2× peft-qlora's tokens/s at most
0.35× its peak memory (both at once, by one of our two QLoRA cells: `qlora_judged_on` names it;
`qlora_cells` has both); our bf16 LoRA at least 55% MFU on an H100 (judged on an H200 too: the same
Hopper chip and dense bf16 rate, with more and faster memory).

    python benchmarks/training_e2e_gpu.py                               # llama-3.1-8b, mb 4 × 2048 tokens
    python benchmarks/training_e2e_gpu.py --model llama-3.2-3b --seq-len 1024
    python benchmarks/training_e2e_gpu.py --smoke --out /tmp/e2e.json   # the same code on a tiny CPU model

Results go to `benchmarks/results/training_e2e-<model>-<gpu>.json`.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
if "--smoke" in sys.argv[1:]:  # a smoke run is the CPU's everywhere (see strategies_gpu.py)
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

from benchmarks import cells  # noqa: E402
from benchmarks.cells import Cell, gib  # noqa: E402
from benchmarks.strategies_gpu import LLAMA_TARGETS, LORA, baseline, plain_step  # noqa: E402
from core import atomic  # noqa: E402
from core.model_shape import ModelShape  # noqa: E402
from core.speed_model import GPU_TFLOPS  # noqa: E402

import torch  # noqa: E402

DEFAULT_MODEL = "llama-3.1-8b"
QLORA_SPEED, QLORA_MEMORY, LORA_MFU = 2.2, 0.35, 0.55  # the goals
HOPPER = re.compile(r"\bH(100|200)\b")  # where the MFU goal is judged: one chip, one dense bf16 rate
STEPS = 6  # one warm-up step, then five timed
SMOKE = dict(model="smoke-tiny", micro_batch=2, seq_len=32, steps=3)
# label → (strategy, our kernels: None for a baseline, "auto" for the trainer's default, [] for none, settings)
CELLS = {"peft-lora": ("lora", None, {}), "lora": ("lora", "auto", {}), "lora-no-kernels": ("lora", [], {}),
         "peft-qlora": ("qlora", None, {}), "qlora": ("qlora", "auto", {}),
         "qlora-host-activations": ("qlora", "auto", {"activations_on_host": True})}
QLORA_CELLS = ("qlora", "qlora-host-activations")  # ours, judged against peft-qlora


def peft_qlora(model_dir: Path, device: str, checkpointing: bool = True):
    """The QLoRA recipe with transformers + peft + bitsandbytes, as one writes it without Tuneforge."""
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), quantization_config=quant,
                                                 device_map={"": torch.device(device)})
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=LLAMA_TARGETS,
                                             task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = bnb.optim.PagedAdamW8bit(params, lr=2e-4) if device == "cuda" else torch.optim.AdamW(params, lr=2e-4)
    return plain_step(model, params, optimizer, device), None


def model_flops_per_token(config: dict, seq_len: int) -> float:
    """LoRA training's model FLOPs per token (see the docstring): 4·N matmul FLOPs and causal attention."""
    shape = ModelShape.from_config(config)
    matmul = shape.linear_params + shape.embedding_params  # the blocks' linears and the head
    attention = 2 * shape.layers * seq_len * shape.heads * shape.head_dim  # QKᵀ and AV, causal half, forward
    return 4 * matmul + 3 * attention  # attention: forward once, backward twice


def datasheet_flops(name: str) -> float | None:
    return next((t * 1e12 for key, t in GPU_TFLOPS if key.lower() in name.lower()), None)


def run_cell(label: str, config: dict, folder: Path, mb: int, seq: int, steps: int, device: str,
             checkpointing: bool = True) -> dict:
    strategy, kernels, settings = CELLS[label]
    out = {"cell": label, "strategy": strategy, "runs": "transformers + peft" + (" + bitsandbytes" if strategy ==
                                                                                 "qlora" else "")
           if kernels is None else f"core.training.Session, kernels {kernels!r}"}
    if strategy == "qlora" and not cells.bnb_version():
        return out | {"status": "skipped", "reason": "bitsandbytes does not import here"}
    started = time.time()
    if kernels is None:
        batches = cells.random_batches(config["vocab_size"], mb, seq, steps)
        prepare = ((lambda: baseline(folder, device, checkpointing)) if strategy == "lora" else
                   (lambda: peft_qlora(folder, device, checkpointing)))
        got = cells.run(prepare, batches, device)
    else:
        cell = Cell(str(folder.name), strategy, mb, seq, checkpointing, {**LORA, **settings}, label)
        got = cells.run_session(cell, folder, device, steps, kernels=kernels)
    out["seconds"] = round(time.time() - started, 1)
    if got["status"] != "measured":
        return out | {"status": got["status"]}
    key = cells.headline(device)
    return out | {"status": "measured", "tokens_per_s": round(got["tokens_per_s"], 1),
                  "peak_gib": {k: gib(v) for k, v in got["peak_bytes"].items()}, "peak_key": key}


def summarise(results: dict[str, dict], config: dict, seq: int, device_name: str, device: str) -> dict:
    def measured(label: str) -> dict | None:
        r = results.get(label, {})
        return r if r.get("status") == "measured" else None

    key = cells.headline(device)
    out: dict = {"goals": {"qlora_speed": f">= {QLORA_SPEED} x peft-qlora tokens/s",
                           "qlora_memory": f"<= {QLORA_MEMORY} x peft-qlora peak",
                           "lora_mfu": f">= {LORA_MFU:.0%} on an H100 or H200"}}
    peak = datasheet_flops(device_name) if device == "cuda" else None
    per_token = model_flops_per_token(config, seq)
    for label, r in results.items():
        if r.get("status") == "measured" and peak:
            r["mfu"] = round(r["tokens_per_s"] * per_token / peak, 4)
    pairs = [("lora", "peft-lora"), ("lora-no-kernels", "peft-lora")] + [(q, "peft-qlora") for q in QLORA_CELLS]
    for ours, theirs in pairs:
        a, b = measured(ours), measured(theirs)
        if a and b:
            out[f"{ours}_vs_{theirs}"] = {"tokens_per_s": round(a["tokens_per_s"] / b["tokens_per_s"], 3),
                                          "peak": round(a["peak_gib"][key] / b["peak_gib"][key], 3)}
    # Each QLoRA cell against both goals; the pair is judged on the first that meets both, else on `qlora`.
    out["qlora_cells"] = {q: {"speed_met": r["tokens_per_s"] >= QLORA_SPEED, "memory_met": r["peak"] <= QLORA_MEMORY}
                          for q in QLORA_CELLS if (r := out.get(f"{q}_vs_peft-qlora"))}
    both = [q for q, met in out["qlora_cells"].items() if all(met.values())]
    judged = both[0] if both else "qlora" if "qlora" in out["qlora_cells"] else next(iter(out["qlora_cells"]), None)
    out["qlora_judged_on"] = judged
    out["qlora_speed_met"] = None if judged is None else out["qlora_cells"][judged]["speed_met"]
    out["qlora_memory_met"] = None if judged is None else out["qlora_cells"][judged]["memory_met"]
    lora = measured("lora")
    out["lora_mfu_met"] = (lora["mfu"] >= LORA_MFU) if lora and "mfu" in lora and HOPPER.search(device_name) else None
    out["model_flops_per_token"] = per_token
    out["peak_flops"] = peak
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(cells.shipped_llamas(1e12)),
                        help=f"A shipped Llama config (default {DEFAULT_MODEL}).")
    parser.add_argument("--seq-len", type=int, default=2048, help="Tokens per example (default 2048).")
    parser.add_argument("--micro-batch", type=int, default=4, help="Examples per step (default 4).")
    parser.add_argument("--no-checkpointing", action="store_true",
                        help="Keep every activation instead of recomputing them in backward (default: "
                             "checkpointing on).")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"Steps per cell, the first untimed (default {STEPS}).")
    parser.add_argument("--cell", action="append", choices=list(CELLS), help="Run only these cells (repeatable).")
    parser.add_argument("--smoke", action="store_true", help="A tiny model on the CPU through the same code.")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/training_e2e-<model>-"
                                                 "<gpu>.json; with --smoke, nothing unless given).")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is a warm-up.")
    if args.smoke:
        device, model, config = "cpu", SMOKE["model"], cells.SMOKE_SHAPE
        mb, seq, steps = SMOKE["micro_batch"], SMOKE["seq_len"], SMOKE["steps"]
    else:
        device, model = "cuda", args.model
        config, mb, seq, steps = cells.shipped_llamas(1e12)[model], args.micro_batch, args.seq_len, args.steps
        if not torch.cuda.is_available():
            print(cells.NO_GPU)
            return 0
    if args.smoke:
        cells.smoke_process()
    ckpt = not args.no_checkpointing
    name = torch.cuda.get_device_name() if device == "cuda" else cells.SMOKE_LABEL
    kept = "" if ckpt else "-no-checkpointing"  # its own file: it does not overwrite the checkpointed run
    out = args.out or (None if args.smoke else
                       REPO / "benchmarks" / "results" / f"training_e2e-{model}{kept}-{cells.slug(name)}.json")
    print(f"{name}: {model}, micro-batch {mb} × {seq} tokens, checkpointing {'on' if ckpt else 'off'}, "
          f"{steps} steps per cell (the first untimed).")
    print(f"{'cell':<24} {'status':<9} {'tok/s':>9} {'peak GiB':>9} {'seconds':>8}", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="tuneforge-e2e-bench-") as root:
        folder = cells.random_model(model, config, root, device)
        for label in args.cell or list(CELLS):
            r = results[label] = run_cell(label, config, folder, mb, seq, steps, device, ckpt)
            p = (r.get("peak_gib") or {}).get(cells.headline(device))
            print(f"{label:<24} {r['status']:<9} {r.get('tokens_per_s', 0):>9.0f} "
                  f"{p if p is not None else float('nan'):>9.2f} {r.get('seconds', 0):>8.1f}"
                  + (f"  ({r['reason']})" if "reason" in r else ""), flush=True)
    s = summarise(results, config, seq, name, device)
    for label, r in results.items():
        if "mfu" in r:
            print(f"{label}: MFU {r['mfu']:.1%}")
    for k, v in s.items():
        if "_vs_" in k:
            print(f"{k}: {v['tokens_per_s']:.2f}× tokens/s at {v['peak']:.2f}× peak memory")
    print(f"goals: qlora speed {s['qlora_speed_met']}, qlora memory {s['qlora_memory_met']} "
          f"(judged on {s['qlora_judged_on']}), "
          f"lora MFU {s['lora_mfu_met']}")
    if out is not None:
        atomic.write_json(out, {"device": name, "smoke": args.smoke, "command": shlex.join(["python", *sys.argv]),
                                **cells.versions(),
                                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                "settings": {"model": model, "micro_batch": mb, "seq_len": seq, "steps": steps,
                                             "checkpointing": ckpt, "lora": LORA},
                                "cells": list(results.values()), "summary": s})
        print(f"Written to {out}.")
    else:
        print(f"{cells.SMOKE_LABEL}: nothing written (a smoke run writes only with --out).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
