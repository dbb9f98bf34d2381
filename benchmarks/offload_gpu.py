"""Training models whose weights exceed the GPU: the offload strategy's layer streaming (core/offload/stream.py)
on random-init Llama shapes, with the GPU's memory capped to a consumer card's, against the host-to-device
bandwidth measured in the same run.

Cells (default): Llama-3.1-8B with its base in bf16 (15 GiB of weights) under a 12 GiB cap, and the 70B shape
with an nf4 base (QLoRA; about 37 GiB) under a 24 GiB cap: LoRA r=16 on every projection, torch AdamW on the
adapters. And full-parameter LISA on the 8B under a 16 GiB cap (LISA's stream_frozen): two sampled layers
train on the GPU with fp32 masters and moments (core.optimizers.MasterAdamW), switched every other step, and
the other thirty stream. All with gradient checkpointing and the frozen layers in pinned RAM.

Why the models are built here, layer by layer, and not loaded through core.training.Session as the other
GPU benchmarks do: a 70B model in bf16 is 140 GB, more than the benchmark machine's RAM or disk, so it can
never exist whole. Each layer is made on the GPU (random, then quantized to nf4 by bitsandbytes for the
4-bit cells), handed to the WeightStore, and freed before the next (WeightStore's `materialize`); peft
wraps the model while it is still on the meta device. From there on the path is the strategy's: the same
store, streamer and hooks that `Offload.prepare` installs.

Per cell: tokens/s over the steps after the first; the bytes streamed per step (the streamer's counter);
the bound those bytes imply at the measured bandwidth (tokens per step ÷ (bytes ÷ bandwidth)); the share
of that bound reached (the goal is ≥ 60%; below it, the copies are not hidden behind compute or wait on
each other); the same steps timed again with the copies taken out (`ComputeOnly`), so the roofline (copies
or compute, whichever is slower) and the share of it reached (where compute is the slower, no schedule can
reach the copy bound, and this share says how well the copies hide); the peak allocated bytes next to the
cap and the memory model's prediction; and the stalls (layers the prefetch did not have in place in time).

    python benchmarks/offload_gpu.py                       # both cells (a few minutes on one H100)
    python benchmarks/offload_gpu.py --cell 8b-bf16-12g    # one of them
    python benchmarks/offload_gpu.py --list                # the cells and their predictions; needs no GPU
    python benchmarks/offload_gpu.py --smoke --out /tmp/o.json   # the same code on a tiny CPU model

Results go to `benchmarks/results/offload-<gpu>.json`; `--smoke` writes only with `--out`.
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
from benchmarks.cells import gib  # noqa: E402
from core import atomic, link_probe, memory_model, optimizers  # noqa: E402
from core.model_shape import ModelShape  # noqa: E402

import torch  # noqa: E402

GOAL = 0.6  # share of the bandwidth bound a streamed step should reach
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# name → (model config, nf4 base, GiB cap, micro-batch, sequence length, what trains: "lora" or "lisa")
CELLS = {
    "8b-bf16-12g": ("llama-3.1-8b", False, 12, 1, 1024, "lora"),  # 15.0 GiB of weights
    "70b-nf4-24g": ("llama-3.1-70b", True, 24, 1, 1024, "lora"),  # 37 GiB of weights
    "8b-lisa-16g": ("llama-3.1-8b", False, 16, 1, 1024, "lisa"),  # full-parameter quality on a 16 GB card
}
SMOKE_CELLS = {"smoke-fp32": ("smoke", False, 0, 1, 32, "lora"), "smoke-nf4": ("smoke", True, 0, 1, 32, "lora"),
               "smoke-lisa": ("smoke", False, 0, 1, 32, "lisa")}
LISA_LAYERS, LISA_INTERVAL = 2, 2
STEPS, SMOKE_STEPS = 4, 3  # the first is a warm-up
COMPUTE_STEPS = 3  # the steps timed again with the copies taken out (ComputeOnly), the first a warm-up
BANDWIDTH_BYTES = 1 << 30  # one pinned GiB: long enough that the copy engine's start-up cost vanishes


def config(name: str) -> dict:
    return cells.SMOKE_SHAPE if name == "smoke" else json.loads(
        (REPO / "resources" / "models" / f"{name}.json").read_text(encoding="utf-8"))


def predict(model: str, nf4: bool, mb: int, seq: int, device: str, trains: str = "lora", accumulation: int = 1,
            major: bool = False) -> float:
    """The memory model's device GiB for the cell, built as the planner builds an offload (or streamed LISA) Setup
    (a layer-major step keeps every layer's input for each of its `accumulation` micro-batches)."""
    what = (dict(lisa_layers=LISA_LAYERS, lisa_embeddings=False, frozen_streamed=True) if trains == "lisa" else
            dict(quantized_base=nf4, lora_r=16))
    setup = memory_model.Setup("lisa" if trains == "lisa" else "offload", mb, seq, optimizer="adamw",
                               compute_bytes=2 if device == "cuda" else 4, checkpointing=True,
                               on_gpu=device == "cuda", layer_major=major, accumulation=accumulation, **what)
    return gib(memory_model.estimate(ModelShape.from_config(config(model)), setup).device_total, 2)


def build(cfg: dict, nf4: bool, device: str, dtype, root: Path, trains: str = "lora"):
    """A random-init model of `cfg` whose layers stream, made one layer at a time (see the docstring), in the
    strategy's order: layers into the store, the streamer, then peft's adapters (LoRA) or LISA's sampler, which
    owns the sampled layers on the GPU. (model, streamer, sampler or None)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    from core.offload import layerwise
    from core.offload.stream import LayerStreamer
    from core.offload.weight_store import WeightStore
    from core.strategies.lisa import decoder_layers

    torch.manual_seed(0)
    llama = LlamaConfig(**cfg, use_cache=False)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(llama, dtype=dtype)
    layers = decoder_layers(model)
    if nf4:
        layerwise.four_bit_modules(layers, dtype, "nf4", double_quant=True)
        model.is_loaded_in_4bit = True
    for module in [model.model.embed_tokens, model.model.norm, model.lm_head]:
        module.to_empty(device=device)
    with torch.no_grad():
        model.model.embed_tokens.weight.normal_(0, 0.02)
        model.lm_head.weight.normal_(0, 0.02)
        model.model.norm.weight.fill_(1.0)
    model.model.rotary_emb = LlamaRotaryEmbedding(llama).to(device)  # buffers computed, not random

    def materialize(i: int) -> list:
        import bitsandbytes as bnb

        with torch.no_grad():
            for module in list(layers[i].modules()):
                for name, p in list(module.named_parameters(recurse=False)):
                    w = torch.ones(p.shape, dtype=dtype, device=device) if p.dim() == 1 else \
                        torch.randn(p.shape, dtype=dtype, device=device) * 0.02
                    # as the strategy's loader does: the module's own 4-bit settings, quantized on the device
                    w = bnb.nn.Params4bit(w, requires_grad=False, **p.__dict__).to(device) \
                        if isinstance(p, bnb.nn.Params4bit) else torch.nn.Parameter(w, requires_grad=False)
                    setattr(module, name, w)
        return [p for p in layers[i].parameters() if not p.requires_grad]

    store = WeightStore([None] * len(layers), "ram", root, materialize=materialize)
    streamer = LayerStreamer(layers, store, device, ring=2)
    streamer.attach(model.model)
    model.activation_checkpointing_enable()
    if trains == "lisa":  # as Lisa.prepare does with frozen embeddings: backward stops below the lowest sampled layer
        from core.strategies.lisa import LayerSampler, LisaOptions

        model.disable_input_require_grads()
        opts = LisaOptions(layers=LISA_LAYERS, interval=LISA_INTERVAL, embeddings=False, stream_frozen=True)
        model.train()
        return model, streamer, LayerSampler(layers, [], [1.0] * len(layers), opts, seed=0, streamer=streamer)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
    model.train()
    return model, streamer, None


class ComputeOnly:
    """The weight store as the streamer sees it while a step's compute alone is timed: every fetch hands out one
    layer's bytes already on the device, so a load is a device-to-device copy (about a hundredth of a host
    copy's time) and the step takes what its compute takes. The weights are then wrong (every layer gets the
    same bytes, whose shapes all layers share), which timing does not mind. Everything else is the real store's."""

    def __init__(self, store, device: str):
        self.store = store
        self.resident = store.fetch(0).to(device, copy=True)
        store.done_with(0, None)

    def fetch(self, i: int):
        return self.resident[:self.store.nbytes(i)]

    def done_with(self, i: int, event) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(self.store, name)


def run_cell(name: str, spec: tuple, device: str, steps: int, link: float, root: Path, accumulation: int = 1,
             major: bool = False) -> dict:
    """One cell; `accumulation` micro-batches a step, run layer-major (core/offload/layer_major.py) with `major`."""
    from core.offload import layer_major
    from core.strategies.lisa import decoder_layers

    model_name, nf4, cap, mb, seq, trains = spec
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    out = {"cell": name, "model": model_name, "base": "nf4" if nf4 else str(dtype).removeprefix("torch."),
           "trains": trains, "cap_gib": cap or None, "micro_batch": mb, "seq_len": seq, "checkpointing": True,
           "accumulation": accumulation, "layer_major": major, "ring": 2, "where": "RAM",
           "predicted_gib": predict(model_name, nf4, mb, seq, device, trains, accumulation, major)}
    if device == "cuda":
        cells.free(device)
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap * cells.GIB / total), 0)
    started = time.perf_counter()
    model, streamer, sampler = build(config(model_name), nf4, device, dtype, root, trains)
    out["build_s"] = round(time.perf_counter() - started, 1)
    out["placement"] = streamer.store.placement
    if sampler is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=2e-4)
    else:  # every layer in the one group; only the sampled ones have state (as Lisa.make_optimizer)
        params = [p for layer in sampler.layers for p in layer.parameters()]
        optimizer = optimizers.build("adamw", params, 2e-5, 0.0, masters=True)
    batches = cells.random_batches(model.config.vocab_size, mb * accumulation, seq, steps)  # split per step
    counted = {"step": 0}

    def step(micro_batches) -> int:
        before, counted["loss"] = streamer.bytes_copied, 0.0
        if sampler is not None:  # switching writes the old layers back and copies the new ones in: counted
            sampler.switch(counted["step"], optimizer)
        counted["step"] += 1
        parts = [{k: v[i:i + mb].to(device) for k, v in b.items()} for b in micro_batches
                 for i in range(0, mb * accumulation, mb)]
        trained = sum(int((p["labels"][:, 1:] != -100).sum()) for p in parts)
        if major and len(parts) > 1:
            counted["loss"] = layer_major.step(model, decoder_layers(model), parts, trained, streamer)
        else:
            for part in parts:
                loss = model(**part, num_items_in_batch=trained).loss
                loss.backward()
                counted["loss"] += float(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        counted["bytes"] = streamer.bytes_copied - before
        return sum(int(b["attention_mask"].sum()) for b in micro_batches)

    measured = cells.measure(step, batches, device, observe=lambda: {"streamed_bytes": counted["bytes"],
                                                                     "loss": round(counted["loss"], 4)})
    timed = measured["steps"][1:]
    streamed = sum(r["streamed_bytes"] for r in timed)
    tokens = sum(r["tokens"] for r in timed)
    bound = tokens / (streamed / link) if streamed else None  # tokens/s if the copies were all a step took
    # The same steps with the copies taken out (ComputeOnly): what compute alone allows. A streamed step can be
    # no faster than its copies or its compute, whichever is slower (the roofline); where compute is the
    # slower, the copy bound is out of reach for any schedule and the roofline says how well copies are hidden.
    real_store = streamer.store
    streamer.store = ComputeOnly(real_store, device)
    try:
        compute = cells.measure(step, batches[:COMPUTE_STEPS], device)["tokens_per_s"]
    finally:
        streamer.store = real_store
    roofline = min(bound, compute) if bound else compute
    out.update(tokens_per_s=round(measured["tokens_per_s"], 2), streamed_bytes_per_step=streamed // len(timed),
               bound_tokens_per_s=round(bound, 2) if bound else None,
               fraction_of_bound=float(f"{measured['tokens_per_s'] / bound:.4g}") if bound else None,
               compute_tokens_per_s=round(compute, 2), roofline_tokens_per_s=round(roofline, 2),
               fraction_of_roofline=float(f"{measured['tokens_per_s'] / roofline:.4g}"),
               peak_gib={k: gib(v, 2) for k, v in measured["peak_bytes"].items()},
               losses=[r["loss"] for r in measured["steps"]], stalls=streamer.stalls, loads=streamer.loads,
               layers=len(streamer.layers), status="measured")
    streamer.close()
    model = optimizer = params = streamer = sampler = None  # freed before the next cell (the closure above still names them)
    cells.free(device)
    return out


def line(r: dict) -> str:
    if r["status"] != "measured":
        return f"{r['cell']}: out of memory"
    return (f"{r['cell']}: {r['tokens_per_s']} tokens/s, copy bound {r['bound_tokens_per_s']} "
            f"({r['fraction_of_bound']:.0%}), compute alone {r['compute_tokens_per_s']} (roofline "
            f"{r['fraction_of_roofline']:.0%}), {r['streamed_bytes_per_step'] / cells.GIB:.2f} GiB streamed/step, "
            f"peak {r['peak_gib']} GiB (predicted {r['predicted_gib']}), stalls {r['stalls']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", action="append", choices=sorted(CELLS),
                        help="Cell to run (repeatable; default all).")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"Steps per cell, the first untimed (default {STEPS}).")
    parser.add_argument("--seq-len", type=int, help="Tokens per example, for every cell (default: the cell's, 1024).")
    parser.add_argument("--micro-batch", type=int, help="Examples per step, for every cell (default: the cell's, 1).")
    parser.add_argument("--accumulation", type=int, default=1,
                        help="Micro-batches per optimizer step, for every cell (default 1).")
    parser.add_argument("--layer-major", action="store_true", help="Run a step's micro-batches layer-major "
                                                                   "(core/offload/layer_major.py): each layer "
                                                                   "streams in once per step, not per micro-batch.")
    parser.add_argument("--list", action="store_true", help="Print the cells and their predictions; needs no GPU.")
    parser.add_argument("--smoke", action="store_true", help="Run a tiny model on the CPU through the same code "
                                                             "(checks the script; measures no GPU).")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/offload-<gpu>.json; "
                                                 "with --smoke, nothing unless given).")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step is a warm-up.")
    device = "cpu" if args.smoke else "cuda"
    todo = SMOKE_CELLS if args.smoke else {n: CELLS[n] for n in (args.cell or CELLS)}
    steps = SMOKE_STEPS if args.smoke else args.steps
    todo = {n: (m, nf4, cap, args.micro_batch or mb, args.seq_len or seq, trains)
            for n, (m, nf4, cap, mb, seq, trains) in todo.items()}
    if args.list:
        for n, (model, nf4, cap, mb, seq, trains) in todo.items():
            print(f"{n:<14} {model:<14} {trains} over {'nf4' if nf4 else '16-bit'}, cap {cap} GiB, {mb} x {seq}: "
                  f"predicted {predict(model, nf4, mb, seq, 'cuda', trains, args.accumulation, args.layer_major):.2f}"
                  " GiB")
        return 0
    started = cells.begin(args.smoke, "offload", args.out)
    if started is None:
        return 0
    name, out = started
    link = link_probe.copy_bytes_per_s(BANDWIDTH_BYTES if device == "cuda" else 1 << 24, device, repeats=5)
    print(f"{name}: host-to-device {link / 1e9:.1f} GB/s (one pinned copy, best of 5 after a warm-up)", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="tuneforge-offload-bench-") as root:
        for n, spec in todo.items():
            try:
                r = run_cell(n, spec, device, steps, link, Path(root), args.accumulation, args.layer_major)
            except torch.OutOfMemoryError:
                r = {"cell": n, "status": "oom"}
                cells.free(device)
            results.append(r)
            print(line(r), flush=True)
    met = all(r.get("fraction_of_bound", 0) >= GOAL for r in results)
    met_roofline = all(r.get("fraction_of_roofline", 0) >= GOAL for r in results)
    if out is not None:
        atomic.write_json(out, {"device": name, "smoke": args.smoke, "command": shlex.join(["python", *sys.argv]),
                                **cells.versions(), "date": datetime.datetime.now(datetime.timezone.utc)
                                .isoformat(timespec="seconds"), "host_to_device_bytes_per_s": round(link),
                                "steps": steps, "goal_fraction": GOAL, "goal_met": met,
                                "goal_met_roofline": met_roofline, "cells": results})
    written = f"Written to {out}." if out else "Nothing written (a smoke run writes only with --out)."
    print((f"{cells.SMOKE_LABEL}: " if args.smoke else "") + written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
