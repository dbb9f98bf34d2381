"""Our kernels against plain PyTorch and Liger-Kernel: time and peak GPU memory of one forward + backward, per
kernel, at Llama-3-8B sizes.

The PyTorch baseline of each kernel is the reference its test checks it against (imported from tests/kernels/,
STYLE §8), so what is timed is exactly what is proven equal. Liger-Kernel, when it imports, is a second
baseline through its functional API (never used by Tuneforge itself); otherwise its cells say "not installed".

Sizes (Llama-3-8B, bf16, a micro-batch of 2 × 4096 tokens):

- cross_entropy: 8192 tokens × hidden 4096 × vocabulary 128,256; the head frozen (LoRA) and trained (full), and
  each token's loss (`reduction="none"`, as the preference objectives score answers; the head frozen, its
  logits made again in backward; no Liger cell);
- rmsnorm: 8192 rows × 4096, Llama's and Gemma's casting orders, the weight trained;
- swiglu: 8192 × 14,336 (the MLP's intermediate size), SiLU and GELU-tanh; gate and up reach each
  implementation as temporaries, as in an MLP (ours then writes its gradients over them);
- rope: batch 2 × 4096 positions, 32 query and 8 key heads of 128, q and k strided as attention makes them;
- lora: one LoRA linear, 8192 tokens × 4096 → 14,336 (the MLP's up projection), rank 16, A and B trained, the
  base frozen: bf16, and nf4 (bitsandbytes' 4-bit; the baseline dequantizes with bitsandbytes, then the same
  plain math). The baseline is plain math like peft's, not peft's modules.

Each figure: the median of `--repeats` runs after two warm-ups (Triton compiles there); peak memory is torch's
peak allocated bytes above the inputs during the runs (the input gradients included), so it is what the op
itself costs. Ratios: speed-up = baseline time / ours, memory = our peak / baseline's.

    python benchmarks/kernels_gpu.py                          # every kernel (a minute on one H100)
    python benchmarks/kernels_gpu.py --kernel cross_entropy   # one (repeatable)
    python benchmarks/kernels_gpu.py --smoke --out /tmp/k.json   # tiny sizes on the CPU, in Triton's interpreter

Results go to `benchmarks/results/kernels-<gpu>.json` with the device, the command and library versions.
Without CUDA (and without --smoke) it says a GPU is needed and exits. `--smoke` proves the script works:
its figures are CPU interpreter timings, its JSON says so, and it writes only where `--out` says.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# A smoke run is the CPU's, in Triton's interpreter: both must be settled before torch and triton start.
if "--smoke" in sys.argv[1:]:
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ["TRITON_INTERPRET"] = "1"

from benchmarks import cells  # noqa: E402  (puts core on the path and prepares the process first)
from core import atomic  # noqa: E402
from tuneforge_kernels import OPS  # noqa: E402

import torch  # noqa: E402

LLAMA_8B = dict(batch=2, seq=4096, hidden=4096, intermediate=14336, vocab=128256, q_heads=32, kv_heads=8, head_dim=128)
SMOKE = dict(batch=2, seq=16, hidden=64, intermediate=128, vocab=1000, q_heads=4, kv_heads=2, head_dim=16)
REPEATS, SMOKE_REPEATS, WARMUP = 10, 2, 2
EPS = 1e-5


def references() -> dict:
    """The PyTorch baseline of each kernel: its test's reference."""
    from tests.kernels import test_fused_linear_cross_entropy, test_lora, test_rmsnorm, test_rope, test_swiglu

    return {"cross_entropy": test_fused_linear_cross_entropy.reference, "rmsnorm": test_rmsnorm.reference,
            "swiglu": test_swiglu.reference, "rope": test_rope.reference, "lora": test_lora.reference}


def liger() -> dict | None:
    """Liger-Kernel's functional API per kernel, or None when it does not import."""
    try:
        from liger_kernel.transformers import functional as f
    except Exception:
        return None
    return {"cross_entropy": f.liger_fused_linear_cross_entropy, "rmsnorm": f.liger_rms_norm,
            "swiglu": f.liger_swiglu, "geglu": f.liger_geglu, "rope": f.liger_rope}


# --- cells: inputs, and one forward + backward per implementation -------------------------------------------------
def cross_entropy_cells(s, dtype, device, ref, lig):
    from tuneforge_kernels.fused_linear_cross_entropy import fused_linear_cross_entropy

    tokens = s["batch"] * s["seq"]
    for variant, head_trains, reduction in (("head frozen (LoRA)", False, "mean"), ("head trained", True, "mean"),
                                            ("per-token (pairs)", False, "none")):
        def inputs(head_trains=head_trains):
            g = torch.Generator(device).manual_seed(0)
            h = torch.randn(tokens, s["hidden"], device=device, generator=g, dtype=dtype).requires_grad_()
            w = (torch.randn(s["vocab"], s["hidden"], device=device, generator=g) / s["hidden"] ** 0.5).to(dtype)
            return h, w.requires_grad_(head_trains), torch.randint(0, s["vocab"], (tokens,), device=device,
                                                                   generator=g)

        def backward_of(fn, r=reduction):  # "none": each token's loss, summed (the gradient still goes per token)
            return lambda h, w, t: fn(h, w, t, reduction=r).sum().backward()

        impls = {"tuneforge": backward_of(fused_linear_cross_entropy), "pytorch": backward_of(ref["cross_entropy"])}
        if lig and reduction == "mean":
            impls["liger"] = lambda h, w, t: lig["cross_entropy"](h, w, t).backward()
        yield "cross_entropy", variant, f"{tokens}x{s['hidden']} -> {s['vocab']}", inputs, impls


def rmsnorm_cells(s, dtype, device, ref, lig):
    from tuneforge_kernels.rmsnorm import GEMMA, LLAMA, VARIANTS, rms_norm

    rows = s["batch"] * s["seq"]
    for variant in VARIANTS:
        def inputs():
            g = torch.Generator(device).manual_seed(0)
            x = torch.randn(rows, s["hidden"], device=device, generator=g, dtype=dtype).requires_grad_()
            w = (torch.randn(s["hidden"], device=device, generator=g) * 0.1).to(dtype).requires_grad_()
            return x, w, torch.randn(rows, s["hidden"], device=device, generator=g, dtype=dtype)

        impls = {"tuneforge": lambda x, w, dy, v=variant: rms_norm(x, w, EPS, v).backward(dy),
                 "pytorch": lambda x, w, dy, v=variant: ref["rmsnorm"](x, w, EPS, v).backward(dy)}
        if lig:
            offset = 1.0 if variant == GEMMA else 0.0
            casting = LLAMA if variant == LLAMA else GEMMA  # (Gemma 4's: Gemma's casting, no offset)
            # in_place=False: Liger's default writes dx over dy, which every run here reuses
            impls["liger"] = lambda x, w, dy, c=casting, o=offset: lig["rmsnorm"](x, w, EPS, o, c, False).backward(dy)
        yield "rmsnorm", variant, f"{rows}x{s['hidden']}", inputs, impls


def swiglu_cells(s, dtype, device, ref, lig):
    from tuneforge_kernels.swiglu import GELU_TANH, SILU, gated

    rows = s["batch"] * s["seq"]
    for variant, liger_name in ((SILU, "swiglu"), (GELU_TANH, "geglu")):
        def inputs():
            g = torch.Generator(device).manual_seed(0)
            return tuple(torch.randn(rows, s["intermediate"], device=device, generator=g, dtype=dtype)
                         .requires_grad_(i < 2) for i in range(3))

        # gate and up are temporaries, as the MLP's projections make them: every implementation gets fresh ones
        impls = {"tuneforge": lambda a, b, d, v=variant: gated(a * 1, b * 1, v, inplace=True).backward(d),
                 "pytorch": lambda a, b, d, v=variant: ref["swiglu"](a * 1, b * 1, v).backward(d)}
        if lig:
            impls["liger"] = lambda a, b, d, n=liger_name: lig[n](a * 1, b * 1).backward(d)
        yield "swiglu", variant, f"{rows}x{s['intermediate']}", inputs, impls


def rope_cells(s, dtype, device, ref, lig):
    from tuneforge_kernels.rope import apply_rope

    b, seq, qh, kh, d = s["batch"], s["seq"], s["q_heads"], s["kv_heads"], s["head_dim"]

    def inputs():
        g = torch.Generator(device).manual_seed(0)
        q = torch.randn(b, seq, qh * d, device=device, generator=g, dtype=dtype).requires_grad_()
        k = torch.randn(b, seq, kh * d, device=device, generator=g, dtype=dtype).requires_grad_()
        freqs = torch.arange(seq, device=device)[:, None] / 500000 ** (torch.arange(0, d, 2, device=device) / d)
        emb = torch.cat((freqs, freqs), -1)[None]
        grads = (torch.randn(b, qh, seq, d, device=device, generator=g, dtype=dtype),
                 torch.randn(b, kh, seq, d, device=device, generator=g, dtype=dtype))
        return q, k, emb.cos().to(dtype), emb.sin().to(dtype), grads

    def run(fn):
        def step(q, k, cos, sin, grads):
            q_out, k_out = fn(q.view(b, seq, qh, d).transpose(1, 2), k.view(b, seq, kh, d).transpose(1, 2), cos, sin)
            torch.autograd.backward((q_out, k_out), grads)
        return step

    impls = {"tuneforge": run(apply_rope), "pytorch": run(ref["rope"])}
    if lig:
        impls["liger"] = run(lig["rope"])
    yield "rope", "rotate_half", f"{b}x{seq}, {qh}/{kh} heads x {d}", inputs, impls


def lora_cells(s, dtype, device, ref, lig):
    from tuneforge_kernels.lora import lora_linear

    tokens, n_in, n_out, rank = s["batch"] * s["seq"], s["hidden"], s["intermediate"], 16
    for variant in ("base " + str(dtype).removeprefix("torch."), "base nf4"):
        def inputs(nf4=variant.endswith("nf4")):
            g = torch.Generator(device).manual_seed(0)
            x = torch.randn(tokens, n_in, device=device, generator=g, dtype=dtype).requires_grad_()
            w = (torch.randn(n_out, n_in, device=device, generator=g) / n_in ** 0.5).to(dtype)
            state = None
            if nf4:
                from bitsandbytes.functional import quantize_4bit

                w, state = quantize_4bit(w, quant_type="nf4", blocksize=64)
            a = (torch.randn(rank, n_in, device=device, generator=g) / n_in ** 0.5).to(dtype).requires_grad_()
            b = (torch.randn(n_out, rank, device=device, generator=g) / rank).to(dtype).requires_grad_()
            return x, w, state, a, b, torch.randn(tokens, n_out, device=device, generator=g, dtype=dtype)

        def plain(x, w, state, a, b, dy):
            if state is not None:
                from bitsandbytes.functional import dequantize_4bit

                w = dequantize_4bit(w, state).to(x.dtype)
            ref["lora"](x, w, None, a, b, 2.0).backward(dy)

        impls = {"tuneforge": lambda x, w, st, a, b, dy: lora_linear(x, w, st, None, a, b, 2.0).backward(dy),
                 "pytorch": plain}
        yield "lora", variant, f"{tokens}x{n_in} -> {n_out} r{rank}", inputs, impls


CELLS = {"cross_entropy": cross_entropy_cells, "rmsnorm": rmsnorm_cells, "swiglu": swiglu_cells, "rope": rope_cells,
         "lora": lora_cells}


# --- measuring --------------------------------------------------------------------------------------------------
def measure(inputs, run, device: str, repeats: int) -> dict:
    """Median milliseconds of `run(*inputs)` after WARMUP runs, and peak bytes above the inputs (CUDA only)."""
    args = inputs()
    leaves = [t for t in args if isinstance(t, torch.Tensor) and t.requires_grad]
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    seconds = []
    for _ in range(WARMUP + repeats):
        for t in leaves:
            t.grad = None
        started = time.perf_counter()
        run(*args)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() - base if device == "cuda" else None
    del args, leaves
    return {"status": "measured", "ms": round(statistics.median(seconds[WARMUP:]) * 1000, 4),
            "peak_mib": None if peak is None else round(peak / 2 ** 20, 1)}


def run_cell(inputs, impls: dict, device: str, repeats: int, liger_here: bool) -> dict:
    out = {}
    for name, run in impls.items():
        try:
            out[name] = measure(inputs, run, device, repeats)
        except Exception as e:  # one implementation failing (out of memory, an API change) leaves the others
            out[name] = {"status": f"failed: {type(e).__name__}: {str(e)[:200]}"}
        finally:
            if device == "cuda":
                torch.cuda.empty_cache()
    out.setdefault("liger", {"status": "has no such kernel" if liger_here else "not installed"})
    return out


def ratios(ours: dict, base: dict) -> dict | None:
    if ours.get("status") != "measured" or base.get("status") != "measured":
        return None
    memory = (round(ours["peak_mib"] / base["peak_mib"], 3)
              if ours["peak_mib"] is not None and base["peak_mib"] else None)
    return {"speedup": float(f"{base['ms'] / ours['ms']:.3g}"), "memory": memory}  # 3 figures: tiny under the interpreter


def fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", action="append", choices=list(OPS), help="Kernel to measure (repeatable; "
                                                                              "default all).")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"Timed runs per cell (default {REPEATS}).")
    parser.add_argument("--smoke", action="store_true", help="Tiny sizes on the CPU in Triton's interpreter "
                                                             "(checks the script; measures no GPU).")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/kernels-<gpu>.json; "
                                                 "with --smoke, nothing unless given).")
    args = parser.parse_args(argv)
    started = cells.begin(args.smoke, "kernels", args.out)
    if started is None:
        return 0
    name, out = started
    device, sizes = ("cpu", SMOKE) if args.smoke else ("cuda", LLAMA_8B)
    repeats = SMOKE_REPEATS if args.smoke else args.repeats
    dtype = torch.float32 if args.smoke else torch.bfloat16
    ref, lig = references(), liger()
    print(f"{name}: forward + backward, median of {repeats}; PyTorch baseline = the tests' references; "
          f"Liger-Kernel {'installed' if lig else 'not installed'}.")
    print(f"{'kernel':<14} {'variant':<19} {'impl':<10} {'ms':>10} {'peak MiB':>10} {'speed-up':>9} {'memory':>7}")
    results = []
    for kernel in args.kernel or list(OPS):
        for op, variant, shape, inputs, impls in CELLS[kernel](sizes, dtype, device, ref, lig):
            measured = run_cell(inputs, impls, device, repeats, lig is not None)
            cell = {"kernel": op, "variant": variant, "shape": shape, "dtype": str(dtype).removeprefix("torch."),
                    "results": measured, "vs_pytorch": ratios(measured["tuneforge"], measured["pytorch"]),
                    "vs_liger": ratios(measured["tuneforge"], measured["liger"])}
            results.append(cell)
            for impl, r in measured.items():
                versus = cell["vs_pytorch"] if impl == "tuneforge" else None
                print(f"{op:<14} {variant:<19} {impl:<10} {fmt(r.get('ms'), '.3f'):>10} "
                      f"{fmt(r.get('peak_mib'), '.1f'):>10} {fmt(versus and versus['speedup'], '.2f'):>9} "
                      f"{fmt(versus and versus['memory'], '.2f'):>7}" + ("" if "ms" in r else f"  {r['status']}"),
                      flush=True)
    if out is not None:
        atomic.write_json(out, {"device": name, "smoke": args.smoke, "command": shlex.join(["python", *sys.argv]),
                                **cells.versions(), "liger_kernel": _liger_version(),
                                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                "settings": {"sizes": sizes, "dtype": str(dtype), "repeats": repeats,
                                             "warmup": WARMUP},
                                "cells": results})
    written = f"Written to {out}." if out else "Nothing written (a smoke run writes only with --out)."
    print((f"{cells.SMOKE_LABEL}: " if args.smoke else "") + written)
    return 0


def _liger_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("liger-kernel")
    except Exception:
        return None


if __name__ == "__main__":
    sys.exit(main())
