"""The memory model against real peak GPU memory, over a grid of models, strategies and batch shapes.

`core.memory_model.estimate` predicts a training step's peak GPU memory from a model's config alone,
and the planner trusts it to pick a strategy and batch that fit. Its activation coefficients are
re-measured on the CPU by `tests/core/test_memory_model.py`, but a CPU cannot show what decides an
out-of-memory error on a GPU: the peak the CUDA caching allocator reaches in a real step (temporaries
in backward and in the optimizer), the blocks it reserves beyond that, and the CUDA context.

For each cell this runs 3 optimizer steps of a random-init Llama built from its config (nothing is
downloaded), prepared by `core.strategies` exactly as the trainer does, on random token batches, and
compares torch's peak allocated and reserved bytes with the prediction:

    predicted allocated = device_total - allocator slack - CUDA context
    predicted reserved  = predicted allocated + allocator slack

NVML's figure for the whole process (context included) is recorded beside the predicted total.
Relative error is (predicted - measured) / measured: positive means the model overestimates.

    python benchmarks/memory_model_gpu.py            # the whole grid (a few minutes on one H100)
    python benchmarks/memory_model_gpu.py --quick    # 4 cells
    python benchmarks/memory_model_gpu.py --list     # the grid and its predictions; needs no GPU
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from core import atomic, runtime_env, strategies  # noqa: E402
from core.memory_model import GIB, Setup, estimate  # noqa: E402
from core.model_shape import ModelShape  # noqa: E402
from core.run_config import RunConfig  # noqa: E402

runtime_env.prepare()

NO_GPU = "No CUDA GPU here: nothing measured; run this on a machine with an NVIDIA GPU."
GOAL = 0.10  # the memory model should be within 10% of the measured peaks
STEPS = 3  # the optimizer state appears in step 1, so the steady peak is only reached from step 2 on
MAX_PARAMS = 1e9  # bigger shipped configs add minutes but no code path the 1B shape below does not cover
MAX_SHARE = 0.8  # cells predicted above this share of the GPU are skipped: an OOM there tells us little
# Llama-3.2-1B's shape with an untied head, so the grid has one tied and one untied model.
LLAMA_1B_SHAPE = dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=False,
                      max_position_embeddings=131072, rms_norm_eps=1e-5)


@dataclass(frozen=True)
class Cell:
    model: str
    strategy: str
    micro_batch: int
    seq_len: int
    checkpointing: bool

    def run_config(self) -> RunConfig:
        """What the trainer would get; the paths are never opened."""
        return RunConfig(run_id="benchmark", run_dir="unused", db_path="unused", model_path="unused",
                         data_path="unused", strategy=self.strategy, seq_len=self.seq_len,
                         micro_batch=self.micro_batch, gradient_checkpointing=self.checkpointing)

    def setup(self) -> Setup:
        return Setup(self.strategy, self.micro_batch, self.seq_len, compute_bytes=2,
                     checkpointing=self.checkpointing, lora_r=self.run_config().lora_r)


def bnb_version() -> str | None:
    try:
        import bitsandbytes
    except Exception:  # a broken CUDA setup fails in many ways; each means the same: no QLoRA cells
        return None
    return bitsandbytes.__version__


def models() -> dict[str, dict]:
    """Shipped Llama configs up to MAX_PARAMS, plus the 1B shape. Only Llama: we build a LlamaConfig, and
    another family's config (Qwen's attention biases) would not be the model its shape describes."""
    found = {}
    for path in sorted((REPO / "resources" / "models").glob("*.json")):
        cfg = json.loads(path.read_text(encoding="utf-8"))
        if cfg.get("model_type") == "llama" and ModelShape.from_config(cfg).params <= MAX_PARAMS:
            found[path.stem] = cfg
    return found | {"llama-1b-shape": LLAMA_1B_SHAPE}


def grid(quick: bool) -> list[Cell]:
    names = ["lora", "dora", "full"] + (["qlora"] if bnb_version() else [])
    if quick:  # one cell per strategy family, both models, both ends of the batch shapes
        return [Cell("smollm2-135m", "lora", 1, 256, False), Cell("smollm2-135m", "full", 4, 1024, True),
                Cell("llama-1b-shape", "dora", 4, 1024, False),
                Cell("llama-1b-shape", "qlora" if "qlora" in names else "lora", 1, 1024, True)]
    return [Cell(m, s, b, n, c) for m in models() for s in names for b in (1, 4) for n in (256, 1024)
            for c in (False, True)]


def predict(cell: Cell, cfg: dict) -> dict:
    est = estimate(ModelShape.from_config(cfg), cell.setup())
    slack, context = est.device["allocator slack"], est.device["CUDA context"]
    allocated = est.device_total - slack - context
    return {"allocated": allocated, "reserved": allocated + slack, "total": est.device_total, "terms": est.device}


def build(cfg: dict):
    from transformers import AutoModelForCausalLM, LlamaConfig

    with torch.device("cuda"):  # initialising on the GPU takes seconds where the CPU takes a minute for 1B
        return AutoModelForCausalLM.from_config(LlamaConfig(**cfg), dtype=torch.bfloat16)


def load_4bit(name: str, cfg: dict, tmp: str):
    """QLoRA quantizes while loading, so it needs a saved model: the random one, saved once per shape."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    folder = Path(tmp) / name
    if not folder.exists():
        build(cfg).save_pretrained(folder)
        gc.collect()  # the 16-bit model must be gone before the measured one loads
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, quantization_config=quant,
                                                device_map={"": 0})


def nvml_used() -> tuple[int, str] | None:
    """GPU memory of this whole process as the driver sees it (torch's figures leave out the context)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        mine = [p.usedGpuMemory for h in handles for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                if p.pid == os.getpid() and p.usedGpuMemory]
        # In a container the driver may not list our pid; the whole GPU's use is the next best figure.
        return (mine[0], "process") if mine else (torch.cuda.device_memory_used(), "device")
    except Exception:  # no NVML library, no permission: a figure we can do without, the torch ones stand
        return None


def measure(cell: Cell, cfg: dict, tmp: str) -> dict:
    """Peak bytes of STEPS training steps, prepared and run the way core/trainer.py does it."""
    run = cell.run_config()
    model = load_4bit(cell.model, cfg, tmp) if cell.strategy == "qlora" else build(cfg)
    model.config.use_cache = False
    if run.gradient_checkpointing:
        model.activation_checkpointing_enable()
        model.enable_input_require_grads()
    # QLoRA is not a built strategy yet; its recipe is LoRA's prepare over the 4-bit base.
    model = strategies.get("lora" if cell.strategy == "qlora" else cell.strategy).prepare(model, run)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=run.lr, weight_decay=run.weight_decay)
    ids = torch.randint(0, cfg["vocab_size"], (cell.micro_batch, cell.seq_len), device="cuda")
    batch = {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}  # as the trainer collates
    trained = cell.micro_batch * (cell.seq_len - 1)  # the loss predicts every token but each row's first
    # Loading leaves transient blocks behind (the 4-bit loader its 16-bit staging); the model predicts a step.
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(STEPS):
        loss = model(**batch, num_items_in_batch=trained).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, run.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    nvml = nvml_used()  # before anything is freed: the reserved blocks are still held
    return {"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved(),
            "nvml": nvml[0] if nvml else None, "nvml_scope": nvml[1] if nvml else None}


def gib(n):
    return None if n is None else round(n / GIB, 4)


HEADER = (f"{'model':<16} {'strat':<6} {'mb':>3} {'seq':>5} {'ckpt':<4} "
          f"{'pred al':>8} {'pred res':>8} {'pred tot':>8}")
HEADER_RUN = f"{HEADER} {'meas al':>8} {'err':>7} {'meas res':>8} {'err':>7} {'nvml':>8}"


def row(cell: Cell, pred: dict, result: dict | None = None) -> str:
    line = (f"{cell.model:<16} {cell.strategy:<6} {cell.micro_batch:>3} {cell.seq_len:>5} "
            f"{'on' if cell.checkpointing else 'off':<4}"
            + "".join(f" {pred[k] / GIB:>8.2f}" for k in ("allocated", "reserved", "total")))
    if result is None:
        return line
    if result["status"] != "measured":
        return f"{line}   {result['status']}" + (f" ({result['reason']})" if "reason" in result else "")
    m, e = result["measured_gib"], result["error"]
    nvml = "-" if m["nvml"] is None else f"{m['nvml']:.2f}"
    return (f"{line} {m['allocated']:>8.2f} {e['allocated']:>+7.1%} {m['reserved']:>8.2f} {e['reserved']:>+7.1%} "
            f"{nvml:>8}")


def run_cell(cell: Cell, cfg: dict, tmp: str, gpu_bytes: int) -> tuple[dict, dict]:
    pred = predict(cell, cfg)
    out = {"model": cell.model, "strategy": cell.strategy, "micro_batch": cell.micro_batch,
           "seq_len": cell.seq_len, "checkpointing": cell.checkpointing,
           "predicted_gib": {k: gib(pred[k]) for k in ("allocated", "reserved", "total")},
           "terms_gib": {k: gib(v) for k, v in pred["terms"].items()}}
    if pred["total"] > MAX_SHARE * gpu_bytes:
        return pred, out | {"status": "skipped", "reason": f"predicted above {MAX_SHARE:.0%} of the GPU"}
    gc.collect()  # the previous cell's model and optimizer sit in reference cycles (peft, hooks)
    torch.cuda.empty_cache()  # and its cached blocks go, so this model is laid out as in a fresh process
    started = time.time()
    try:
        got = measure(cell, cfg, tmp)
    except torch.OutOfMemoryError:
        got = None
    out["seconds"] = round(time.time() - started, 1)
    if got is None:
        return pred, out | {"status": "oom"}
    return pred, out | {"status": "measured", "nvml_scope": got["nvml_scope"],
                        "measured_gib": {k: gib(got[k]) for k in ("allocated", "reserved", "nvml")},
                        "error": {k: round((pred[k] - got[k]) / got[k], 4) for k in ("allocated", "reserved")}}


def summary(cells: list[dict]) -> dict:
    measured = [c for c in cells if c["status"] == "measured"]
    out = {"goal": f"within {GOAL:.0%}", **{s: sum(c["status"] == s for c in cells)
                                              for s in ("measured", "oom", "skipped")}}
    for k in ("allocated", "reserved"):
        errors = [abs(c["error"][k]) for c in measured]
        out[f"max_abs_error_{k}"] = round(max(errors), 4) if errors else None
        out[f"mean_abs_error_{k}"] = round(sum(errors) / len(errors), 4) if errors else None
    out["met"] = bool(measured) and all(out[f"max_abs_error_{k}"] <= GOAL for k in ("allocated", "reserved"))
    return out


def pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Measure 4 cells instead of the whole grid.")
    parser.add_argument("--list", action="store_true", help="Print the grid and its predictions (GiB); needs no GPU.")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/memory_model-<gpu>.json).")
    args = parser.parse_args(argv)
    configs, cells = models(), grid(args.quick)
    if args.list:
        print(HEADER)
        print("\n".join(row(cell, predict(cell, configs[cell.model])) for cell in cells))
        return 0
    if not torch.cuda.is_available():
        print(NO_GPU)
        return 0

    import peft
    import transformers

    device = torch.cuda.get_device_name()
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    out = args.out or REPO / "benchmarks" / "results" / f"memory_model-{slug}.json"
    print(f"{device}: {len(cells)} cells, {STEPS} steps each; errors are (predicted - measured) / measured.")
    print(HEADER_RUN, flush=True)
    gpu_bytes, results = torch.cuda.get_device_properties(0).total_memory, []
    with tempfile.TemporaryDirectory(prefix="tuneforge-memory-bench-") as tmp:
        for cell in cells:
            pred, result = run_cell(cell, configs[cell.model], tmp, gpu_bytes)
            results.append(result)
            print(row(cell, pred, result), flush=True)
    s = summary(results)
    atomic.write_json(out, {"device": device, "command": shlex.join(["python", *sys.argv]),
                            "torch": torch.__version__, "transformers": transformers.__version__,
                            "peft": peft.__version__, "bitsandbytes": bnb_version(),
                            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                            "cells": results, "summary": s})
    print(f"\nAllocated: max error {pct(s['max_abs_error_allocated'])}, mean {pct(s['mean_abs_error_allocated'])}; "
          f"reserved: max {pct(s['max_abs_error_reserved'])}, mean {pct(s['mean_abs_error_reserved'])} "
          f"(goal {s['goal']}: {'met' if s['met'] else 'not met'}). Written to {out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
