"""Peak GPU memory and tokens per second of every training strategy, against plain transformers + peft
LoRA measured in the same run.

Each strategy trains a random-init Llama (the 1B shape by default; `--model` picks a shipped Llama
config up to 8B) through `core.training.Session`, the trainer's own code path (`benchmarks/cells.py`),
for a few optimizer steps on random batches: lora, qlora (when bitsandbytes imports), dora, lisa with
the embeddings frozen and trained, and full fine-tuning with AdamW, with GaLore and with GaLore and
stochastic rounding (only where the memory model predicts it fits in 80% of the GPU; otherwise the cell is
recorded as skipped, with the reason); then LoRA with preference tuning, ORPO and DPO (a micro-batch of
pairs: twice the sequences, with their full logits), each peak against the memory model's estimate for it, as
the plan makes it. Speed counts the
steps after the first (LISA's include its layer switches, every 2 steps here where a run's default is
every 20, so its speed reads a little low). Nothing is downloaded.

The baseline ("peft-lora") is what one would write without Tuneforge: transformers' model,
peft's `get_peft_model` with LoraConfig(r=16, alpha=32) on the same projections, torch's AdamW,
gradient clipping, the same batches; no Tuneforge code in its path (only the timing and peak reading
it shares with the other cells). Every cell's peak and speed are also given as ratios to it, so a
result means the same on any GPU.

LISA runs long enough to switch layers several times (interval 2, 10 steps: 5 windows), and its
peak is recorded per window: the public implementations' memory creeps up to full fine-tuning's
because every layer ever sampled keeps its optimizer state; ours must stay flat. Two judgements:

- `lisa_close_to_lora`: LISA's peak (embeddings frozen, γ = 2 layers) is at most 1.5 × LoRA's. Why
  1.5: LISA adds to LoRA's peak the two active layers' gradients, fp32 masters and Adam moments
  (14 bytes a weight) and full-parameter activations; the memory model puts that at 1.16-1.23 ×
  LoRA's peak for the 1B-8B shapes at the default batch (4 × 1024, checkpointing), while state kept
  for every layer sampled over 5 windows would add 12 bytes for each of ~10 layers (about 2 × for
  the 1B shape) and full fine-tuning is 3-6 ×. With the embeddings trained LISA is expected to be
  far above LoRA (the head's gradient and state), so only its ratios are reported.
- `lisa_flat_over_switches`: the largest window's peak is at most 1.10 × the smallest. Windows differ
  a little (backward stops below the lowest sampled layer), but one window's worth of leaked state
  is about 15% of LoRA's peak on the 1B shape, so a creep shows above 10% by the second switch.

Ratios and judgements use torch's peak allocated bytes (reserved bytes, also recorded, add the
allocator's fragmentation, which varies from run to run).

    python benchmarks/strategies_gpu.py                          # the 1B shape (a couple of minutes on one H100)
    python benchmarks/strategies_gpu.py --model llama-3.1-8b     # an 8B shape (full fine-tuning is skipped)
    python benchmarks/strategies_gpu.py --list                   # the cells and their predictions; needs no GPU
    python benchmarks/strategies_gpu.py --smoke --out /tmp/s.json   # the same code on a tiny CPU model

Results go to `benchmarks/results/strategies-<gpu>.json` (`strategies-<models>-<gpu>.json` for other
shapes, so one run does not overwrite another's). `--smoke` runs a tiny model on the CPU through the
same code, to prove the measuring code works without a GPU; its JSON says so and it writes nothing
unless given `--out`.
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

import torch  # noqa: E402

MAX_PARAMS = 8.5e9  # "1B to 8B": Llama-3.1-8B has 8.03B weights
MAX_SHARE = 0.8  # a cell predicted above this share of the GPU is skipped: an OOM tells us nothing
CLOSE_TO_LORA = 1.5  # LISA (embeddings frozen) within this many times LoRA's peak; see the docstring
FLAT = 1.10  # LISA's largest window peak within this many times its smallest; see the docstring
STEPS = 5  # one warm-up step, then four timed
LISA_STEPS, LISA_INTERVAL = 10, 2  # five windows: four layer switches after the first sampling
BASELINE = "peft-lora"
LORA = {"r": 16, "alpha": 32}  # the baseline's settings, given explicitly so a change of defaults stays comparable
# The projections Tuneforge's LoRA adapts on a Llama (core.strategies.lora.TARGETS), written out here
# so that the baseline's path has no Tuneforge code; a test checks the two lists agree.
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_MODEL = "llama-1b-shape"
SMOKE = dict(model="smoke-tiny", micro_batch=2, seq_len=32, steps=3, lisa_steps=3, lisa_interval=1)


def models() -> dict[str, dict]:
    return {DEFAULT_MODEL: cells.LLAMA_1B_SHAPE} | cells.shipped_llamas(MAX_PARAMS)


def variants(interval: int) -> list[tuple[str, str, dict, str]]:
    """(label, strategy, settings, objective) of every cell after the baseline, in the order they run: each
    strategy supervised, then LoRA with three preference objectives (a micro-batch of pairs: twice the sequences;
    KTO's second half, the mismatched rows, without gradients), whose peaks are judged against the memory
    model's."""
    lisa = {"layers": 2, "interval": interval}
    return [("lora", "lora", LORA, "sft"), ("qlora", "qlora", LORA, "sft"), ("dora", "dora", LORA, "sft"),
            ("lisa", "lisa", lisa | {"embeddings": False}, "sft"),
            ("lisa+emb", "lisa", lisa | {"embeddings": True}, "sft"), ("full", "full", {}, "sft"),
            ("full+galore", "full", {"optimizer": "galore"}, "sft"),
            ("full+galore+sr", "full", {"optimizer": "galore", "stochastic_rounding": True}, "sft"),
            ("lora+orpo", "lora", LORA, "orpo"), ("lora+dpo", "lora", LORA, "dpo"),
            ("lora+kto", "lora", LORA, "kto")]


def plan(names: list[str], micro_batch: int, seq_len: int, checkpointing: bool, steps: int, lisa_steps: int,
         interval: int) -> list[tuple[Cell, int]]:
    """Each cell with its step count; the baseline first, so every later cell can be compared with it."""
    out = []
    for m in names:
        # The baseline's prediction is LoRA's: the same adapters, the same optimizer.
        out.append((Cell(m, "lora", micro_batch, seq_len, checkpointing, LORA, BASELINE), steps))
        for label, strategy, options, objective in variants(interval):
            n = lisa_steps if strategy == "lisa" else steps
            out.append((Cell(m, strategy, micro_batch, seq_len, checkpointing, options, label, objective), n))
    return out


def baseline(model_dir: Path, device: str, checkpointing: bool, targets: list[str] = LLAMA_TARGETS):
    """Plain transformers + peft LoRA and torch's AdamW, as one would write it without Tuneforge."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # as the Session picks on each device
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).to(device)
    model.config.use_cache = False
    if checkpointing:
        model.activation_checkpointing_enable()  # non-reentrant; makes the embedding output require grad
    model = get_peft_model(model, LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=targets,
                                             task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return plain_step(model, params, torch.optim.AdamW(params, lr=2e-4), device), None


def plain_step(model, params: list, optimizer, device: str):
    """The training step a hand-written loop has: forward, backward, clip at 1.0, optimizer step; returns the
    tokens it saw (the baselines' step, with no Tuneforge code in it)."""

    def step(batches: list[dict]) -> int:
        tokens = 0
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items()}
            tokens += int(batch["attention_mask"].sum())
            loss = model(**batch).loss
            loss.backward()
            float(loss.detach())  # a training loop logs its loss (the trainer does), which waits for the GPU
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return tokens

    return step


def windows(steps: list[dict], interval: int, key: str) -> list[dict]:
    """LISA's steps grouped by sampling window: the layers trained and the window's peak."""
    out = []
    for start in range(0, len(steps), interval):
        group = steps[start:start + interval]
        out.append({"window": start // interval, "steps": list(range(start + 1, start + len(group) + 1)),
                    "active_layers": group[0].get("active_layers"),
                    "peak_gib": gib(max(s["peak_bytes"][key] for s in group)),
                    "optimizer_state_gib": gib(max(s.get("optimizer_state_bytes", 0) for s in group))})
    return out


def run_cell(cell: Cell, steps: int, cfg: dict, root: str, device: str, base: dict | None) -> dict:
    key = cells.headline(device)
    pred = cells.predicted_peak(cells.predict(cell, cfg, device), device)
    runs = "transformers + peft, no Tuneforge code" if cell.name == BASELINE else "core.training.Session"
    out = {**cell.describe(), "runs": runs, "steps": steps, "predicted_gib": {k: gib(v) for k, v in pred.items()}}
    top, room = pred.get("total", pred.get("process")), cells.capacity(device)
    if cell.strategy == "qlora" and not cells.bnb_version():
        return out | {"status": "skipped", "reason": "bitsandbytes does not import here"}
    if top > MAX_SHARE * room:
        return out | {"status": "skipped", "reason": f"the memory model predicts {gib(top, 1)} GiB, above "
                                                     f"{MAX_SHARE:.0%} of the device's {gib(room, 1)} GiB"}
    started = time.time()
    folder = cells.random_model(cell.model, cfg, root, device)
    if cell.name == BASELINE:
        batches = cells.random_batches(cfg["vocab_size"], cell.micro_batch, cell.seq_len, steps)
        got = cells.run(lambda: baseline(folder, device, cell.checkpointing), batches, device)
    else:
        got = cells.run_session(cell, folder, device, steps)
    out["seconds"] = round(time.time() - started, 1)
    if got["status"] != "measured":
        return out | {"status": got["status"]}
    out |= {"status": "measured", "peak_gib": {k: gib(v) for k, v in got["peak_bytes"].items()},
            "peak_scope": got["peak_scope"], "tokens_per_s": round(got["tokens_per_s"], 1),
            "per_step": [{"seconds": round(s["seconds"], 4), "tokens": s["tokens"],
                          "peak_gib": {k: gib(v) for k, v in s["peak_bytes"].items()},
                          **({"optimizer_state_gib": gib(s["optimizer_state_bytes"])}
                             if "optimizer_state_bytes" in s else {}),
                          **({"active_layers": s["active_layers"]} if "active_layers" in s else {})}
                         for s in got["steps"]]}
    if device == "cuda":
        out["nvml_gib"], out["nvml_scope"] = gib(got["nvml_bytes"]), got["nvml_scope"]
    if cell.strategy == "lisa":
        out["windows"] = windows(got["steps"], cell.options["interval"], key)
    if base is not None and base.get("status") == "measured":
        out["vs_baseline"] = {"peak": round(out["peak_gib"][key] / base["peak_gib"][key], 3),
                              "tokens_per_s": round(out["tokens_per_s"] / base["tokens_per_s"], 3)}
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def summary(results: list[dict], device: str) -> dict:
    """Per model: LoRA against the baseline, and LISA against LoRA and full fine-tuning."""
    key = cells.headline(device)
    out = {"criteria": {"lisa_close_to_lora": f"lisa (embeddings frozen) peak <= {CLOSE_TO_LORA} x lora's",
                        "lisa_flat_over_switches": f"largest LISA window peak <= {FLAT} x the smallest",
                        "orpo/dpo_peak_over_predicted": "a preference run's peak against the memory model's "
                                                        "estimate for it (the plan's), reported",
                        "peak": f"torch's peak {key} bytes" if device == "cuda" else "the process's resident peak"}}
    for m in dict.fromkeys(c["model"] for c in results):
        by = {c["cell"]: c for c in results if c["model"] == m}

        def peak(name: str) -> float | None:
            c = by.get(name, {})
            return c["peak_gib"][key] if c.get("status") == "measured" else None

        full, full_from = peak("full"), "measured"
        if full is None and "full" in by:  # skipped (or out of memory): the memory model's figure stands in
            full, full_from = by["full"]["predicted_gib"][key], "predicted"
        s = {"lora_peak_over_baseline": ratio(peak("lora"), peak(BASELINE)),
             "lora_speed_over_baseline": ratio(by.get("lora", {}).get("tokens_per_s"),
                                               by.get(BASELINE, {}).get("tokens_per_s")),
             "full_peak_from": full_from}
        for name, prefix in (("lisa", "lisa"), ("lisa+emb", "lisa_emb")):
            s[f"{prefix}_peak_over_lora"] = ratio(peak(name), peak("lora"))
            s[f"{prefix}_peak_over_full"] = ratio(peak(name), full)
            w = [x["peak_gib"] for x in by.get(name, {}).get("windows", [])]
            s[f"{prefix}_window_peaks_gib"] = w
            s[f"{prefix}_flat_over_switches"] = (max(w) <= FLAT * min(w)) if w else None
        for name, prefix in (("lora+orpo", "orpo"), ("lora+dpo", "dpo"), ("lora+kto", "kto")):  # as planned?
            s[f"{prefix}_peak_over_lora"] = ratio(peak(name), peak("lora"))
            s[f"{prefix}_peak_over_predicted"] = ratio(peak(name), by.get(name, {}).get("predicted_gib", {}).get(key))
        close = s["lisa_peak_over_lora"]
        s["lisa_close_to_lora"] = None if close is None else close <= CLOSE_TO_LORA
        out[m] = s
    return out


def fmt(x: float | None, spec: str) -> str:
    """`x` formatted by `spec` (e.g. '>9.2f'), or a dash as wide when there is no figure."""
    width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
    return format("-", f">{width}") if x is None else format(x, spec)


HEADER = f"{'model':<16} {'cell':<14} {'mb':>3} {'seq':>5} {'ckpt':<4} {'steps':>5} {'pred al':>9} {'pred tot':>8}"
HEADER_RUN = f"{HEADER} {'status':<8} {'peak GiB':>9} {'reserved':>9} {'tok/s':>9} {'peak/base':>9} {'tok/s/base':>10}"


def row(cell: Cell, steps: int, pred: dict, result: dict | None = None) -> str:
    top = pred.get("total", pred.get("process"))
    line = (f"{cell.model:<16} {cell.name:<14} {cell.micro_batch:>3} {cell.seq_len:>5} "
            f"{'on' if cell.checkpointing else 'off':<4} {steps:>5} "
            f"{pred.get('allocated', pred.get('process')):>9.2f} {top:>8.2f}")
    if result is None:
        return line
    if result["status"] != "measured":
        return f"{line} {result['status']:<8}" + (f" ({result['reason']})" if "reason" in result else "")
    p, vs = result["peak_gib"], result.get("vs_baseline", {})
    line += (f" {'measured':<8} {fmt(p.get('allocated', p.get('process')), '>9.2f')} {fmt(p.get('reserved'), '>9.2f')} "
             f"{result['tokens_per_s']:>9.0f} {fmt(vs.get('peak'), '>9.2f')} {fmt(vs.get('tokens_per_s'), '>10.2f')}")
    for w in result.get("windows", []):
        line += (f"\n{'':<18}window {w['window']}: steps {w['steps']}, layers {w['active_layers']}, "
                 f"peak {w['peak_gib']:.2f} GiB")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=sorted(models()),
                        help=f"Model shape (repeatable; default {DEFAULT_MODEL}): a shipped Llama config up to 8B.")
    parser.add_argument("--seq-len", type=int, default=1024, help="Tokens per example (default 1024).")
    parser.add_argument("--micro-batch", type=int, default=4, help="Examples per step (default 4).")
    parser.add_argument("--no-checkpointing", action="store_true", help="Keep activations (default: checkpointing on).")
    parser.add_argument("--steps", type=int, default=STEPS,
                        help=f"Steps per cell, the first untimed (default {STEPS}).")
    parser.add_argument("--lisa-steps", type=int, default=LISA_STEPS,
                        help=f"Steps of the LISA cells; layers switch every {LISA_INTERVAL} (default {LISA_STEPS}).")
    parser.add_argument("--list", action="store_true",
                        help="Print the cells and their predictions (GiB); needs no GPU.")
    parser.add_argument("--smoke", action="store_true", help="Run a tiny model on the CPU through the same code "
                                                             "(checks the script; measures no GPU).")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/strategies-<gpu>.json; "
                                                 "with --smoke, nothing unless given).")
    args = parser.parse_args(argv)
    if min(args.steps, args.lisa_steps) < 2:
        parser.error("--steps and --lisa-steps must be at least 2: the first step is a warm-up.")
    if args.smoke:  # fixed figures: the point is that the code runs, in seconds
        device, configs, names = "cpu", {SMOKE["model"]: cells.SMOKE_SHAPE}, [SMOKE["model"]]
        mb, seq, ckpt, steps, lisa_steps, interval = (SMOKE["micro_batch"], SMOKE["seq_len"], True, SMOKE["steps"],
                                                      SMOKE["lisa_steps"], SMOKE["lisa_interval"])
    else:
        device, configs, names = "cuda", models(), args.model or [DEFAULT_MODEL]
        mb, seq, ckpt, steps, lisa_steps, interval = (args.micro_batch, args.seq_len, not args.no_checkpointing,
                                                      args.steps, args.lisa_steps, LISA_INTERVAL)
    todo = plan(names, mb, seq, ckpt, steps, lisa_steps, interval)
    predicted = [cells.predicted_peak(cells.predict(c, configs[c.model], device), device) for c, _ in todo]
    predicted = [{k: gib(v) for k, v in p.items()} for p in predicted]
    if args.list:
        print(HEADER)
        print("\n".join(row(c, n, p) for (c, n), p in zip(todo, predicted)))
        return 0
    started = cells.begin(args.smoke, "strategies" if names == [DEFAULT_MODEL] else f"strategies-{'-'.join(names)}",
                          args.out)
    if started is None:
        return 0
    name, out = started
    print(f"{name}: {len(todo)} cells; speed over the steps after the first; ratios to {BASELINE} "
          f"(transformers + peft) measured in this run.")
    print(HEADER_RUN, flush=True)
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tuneforge-strategies-bench-") as root:
        for (cell, n), pred in zip(todo, predicted):
            base = next((r for r in results if r["model"] == cell.model and r["cell"] == BASELINE), None)
            result = run_cell(cell, n, configs[cell.model], root, device, base)
            results.append(result)
            print(row(cell, n, pred, result), flush=True)
    s = summary(results, device)
    settings = {"micro_batch": mb, "seq_len": seq, "checkpointing": ckpt, "steps": steps, "lisa_steps": lisa_steps,
                "lisa_interval": interval, "max_share": MAX_SHARE,
                "baseline": f"transformers + peft LoRA r={LORA['r']} alpha={LORA['alpha']} on "
                            f"{','.join(LLAMA_TARGETS)}, torch AdamW lr 2e-4, gradient clipping at 1.0"}
    if out is not None:
        atomic.write_json(out, {"device": name, "smoke": args.smoke, "command": shlex.join(["python", *sys.argv]),
                                **cells.versions(),
                                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                "settings": settings, "cells": results, "summary": s})
    print()
    for m in names:
        x = s[m]
        print(f"{m}: lora/{BASELINE} peak {fmt(x['lora_peak_over_baseline'], '.2f')}, speed "
              f"{fmt(x['lora_speed_over_baseline'], '.2f')}; lisa/lora peak {fmt(x['lisa_peak_over_lora'], '.2f')} "
              f"(close to LoRA, <= {CLOSE_TO_LORA}: {x['lisa_close_to_lora']}), lisa/full "
              f"{fmt(x['lisa_peak_over_full'], '.2f')} (full {x['full_peak_from']}); flat over switches: "
              f"{x['lisa_flat_over_switches']} (lisa), {x['lisa_emb_flat_over_switches']} (lisa+emb); preference "
              f"tuning peak over LoRA's, and over its prediction: orpo {fmt(x['orpo_peak_over_lora'], '.2f')}, "
              f"{fmt(x['orpo_peak_over_predicted'], '.2f')}; dpo {fmt(x['dpo_peak_over_lora'], '.2f')}, "
              f"{fmt(x['dpo_peak_over_predicted'], '.2f')}.")
    written = f"Written to {out}." if out else "Nothing written (a smoke run writes only with --out)."
    print((f"{cells.SMOKE_LABEL}: " if args.smoke else "") + written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
