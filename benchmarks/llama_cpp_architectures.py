"""Every architecture we export, run by llama.cpp itself: a tiny random model of each (the table of
tests/core/gguf_export/test_architectures.py) written as f32 GGUF, and llama.cpp's next-token distribution after a
prompt compared with transformers' for the same model. Where a tensor name, a norm offset, a rope setting or an
architecture's own metadata key (Granite's scales, OLMo 2's norms, SmolLM3's layers without rope, Gemma's soft
caps, Qwen 3.5's linear-attention layers and the order of their value heads, Granite 4.0's feed-forward split into
the gate's rows and the up's, Qwen3 MoE's experts stacked as ffn_*_exps) were wrong, llama.cpp would refuse the file
or give other numbers (Granite 4.0's with the halves swapped: a log-probability 0.018 away; Qwen3 MoE's with each
expert's gate and up rows swapped 0.68, and one whose chosen experts' weights are not renormalized, which llama.cpp's
qwen3moe always does, 0.29): the unit tests read our files back with transformers' reader or our own, this reads them
with the runtime people use.

    python benchmarks/llama_cpp_architectures.py --server PATH/llama-server [--out FILE]

For each architecture: the top 20 tokens by llama.cpp (`/completion` of `llama-server`, the prompt given as token
ids, `n_probs`, keys and values kept in float32, no flash attention) and their log-probabilities against
transformers' log-softmax of the last logits, in float64. Both run in float32, so they agree to rounding: a check
passes when the same 20 tokens come out and no log-probability differs by more than TOLERANCE (GELU_TOLERANCE
for Gemma's, below). The result goes to benchmarks/results/llama_cpp_architectures.json unless --out says
otherwise; the exit status is 1 when a check fails. It needs no GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.llama_cpp_check import Server, version  # noqa: E402
from core import atomic  # noqa: E402

PROMPT = "Where is the gold, matey? Arr! The old oak by the river knows."
TOP = 20
# In log-probability. Float32 on both sides agrees to about 1e-6; llama.cpp's GELU (Gemma's MLP) is read from a
# float16 table on the CPU, which moves Gemma 2's and 3's by about 5e-4 and Gemma 4's by 1.5e-3 (its per-layer inputs
# pass a GELU too; the same table in transformers leaves 5e-4, where float32 rounding before it picks a neighbouring
# entry), and Gemma 4's mixture of experts, a dense MLP and two experts a token each through a GELU, by 3.1e-3 (2.1e-4
# with the table in transformers too); a wrong rope share of Gemma 4's full layers moves it by 0.16, a wrong window by
# 3, the experts' scales read in the wrong order by 0.25, the router's by 1.1.
TOLERANCE = 1e-5
GELU_TOLERANCE = 4e-3
GELU = {"gemma2", "gemma3_text", "gemma4_text"}
# Weights five times the usual initial scale, so that attention is far from uniform and a wrong setting shows: with
# them, llama.cpp on a SmolLM3 file against the same model with rope in every layer differs by 0.07, on a Llama
# file against the same model with another rope base by 0.9.
SHARP = {"initializer_range": 0.1}
# llama.cpp keeps keys and values in float16, and its flash attention computes in float16, unless told.
EXACT = ("--cache-type-k", "f32", "--cache-type-v", "f32", "--flash-attn", "off")


def llama_cpp_top(server: Server, ids: list[int]) -> list[tuple[int, float]]:
    """llama.cpp's TOP likeliest next tokens after `ids`, with their log-probabilities (before any sampler)."""
    body = {"prompt": ids, "n_predict": 1, "n_probs": TOP, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
            "min_p": 0.0, "seed": 0, "ignore_eos": True}
    request = urllib.request.Request(f"http://127.0.0.1:{server.port}/completion", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as r:
        answer = json.loads(r.read())
    if not answer.get("completion_probabilities"):
        raise SystemExit(f"llama-server gave no probabilities: {json.dumps(answer)[:400]}")
    return [(t["id"], t["logprob"]) for t in answer["completion_probabilities"][0]["top_logprobs"]]


def check(name: str, tokenizer, binary: Path, folder: Path) -> dict:
    """One row of the tests' architecture table (a model type, or a variant of one: Granite 4.0's hybrids)."""
    import torch

    from core.gguf_export import writer
    from core.progress import Progress
    from tests.core.gguf_export import tiny
    from tests.core.gguf_export.test_architectures import COMMON, row

    model_type, settings = row(name)
    model = tiny.random_model(model_type, tokenizer, **{**COMMON, **settings, **SHARP})
    path = folder / f"{name}.f32.gguf"
    writer.write(tiny.plan(model, tokenizer, "f32"), model.state_dict(), path, Progress())
    ids = tokenizer(PROMPT)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1)
    with Server(binary, path, extra=EXACT) as server:
        theirs = llama_cpp_top(server, ids)
    ours = [(int(i), float(logprobs[i])) for i in torch.topk(logprobs, TOP).indices]
    worst = max(abs(lp - float(logprobs[i])) for i, lp in theirs)
    tolerance = GELU_TOLERANCE if model_type in GELU else TOLERANCE
    same = sorted(i for i, _ in theirs) == sorted(i for i, _ in ours)
    return {"architecture": name, "tokens": len(ids), "same_top_tokens": same,
            "max_logprob_difference": worst, "spread_of_top": ours[0][1] - ours[-1][1],
            "tolerance": tolerance, "llama_cpp_top5": theirs[:5], "transformers_top5": ours[:5],
            "ok": same and worst <= tolerance}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, required=True, help="The llama-server binary of a llama.cpp build.")
    parser.add_argument("--only", nargs="*", help="Architectures to check (default: every one we export).")
    parser.add_argument("--out", type=Path,
                        help="JSON to write (default benchmarks/results/llama_cpp_architectures.json).")
    args = parser.parse_args(argv)
    if not args.server.is_file():
        parser.error(f"{args.server}: no such file; give the llama-server binary of a llama.cpp build.")

    from transformers import AutoTokenizer

    from tests.core.gguf_export import tiny
    from tests.core.gguf_export.test_architectures import ROWS

    unknown = sorted(set(args.only or ()) - set(ROWS))
    if unknown:
        parser.error(f"{', '.join(unknown)}: not an architecture we export; choose from {', '.join(ROWS)}.")
    checks = []
    with tempfile.TemporaryDirectory(prefix="llama-cpp-arch-") as tmp:
        tokenizer = AutoTokenizer.from_pretrained(tiny.byte_level(Path(tmp) / "tok"))
        for model_type in sorted(args.only or ROWS):
            checks.append(check(model_type, tokenizer, args.server, Path(tmp)))
            c = checks[-1]
            same = "same" if c["same_top_tokens"] else "DIFFER"
            print(f"{'ok  ' if c['ok'] else 'FAIL'} {model_type}: top {TOP} {same}, largest log-probability "
                  f"difference {c['max_logprob_difference']:.1e} (the top {TOP} span {c['spread_of_top']:.3f})")
    result = {
        "benchmark": "llama_cpp_architectures", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": platform.processor() or platform.machine(), "platform": platform.platform()},
        "llama_cpp": version(args.server), "prompt": PROMPT, "top": TOP, "server_options": list(EXACT),
        "checks": checks, "ok": all(c["ok"] for c in checks),
    }
    out = args.out or REPO / "benchmarks" / "results" / "llama_cpp_architectures.json"
    atomic.write_json(out, result)
    print(f"Wrote {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
