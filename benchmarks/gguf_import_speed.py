"""Turning a .gguf file into a model folder: ours (core/gguf_import.py) against transformers' GGUF loader.

The baseline is the path model_source took before, and still takes for architectures we do not export:
transformers loads the file into a float32 model, which is rebuilt from its config (a GGUF-loaded model
refuses save_pretrained) and saved (`model_source.save_through_transformers`). Both run on the same
files in the same run, each conversion in a fresh process, so that its peak resident memory is its own:

- the bundled default model (SmolLM2-135M-Instruct, Q4_1), the file every first run converts;
- a random-init Llama of `--shape` (1b by default: hidden 2048, 16 layers, vocabulary 49,152, 1.2B
  parameters), exported by our GGUF writer as `--quant` (q8_0 by default).

`--quick` converts only a tiny random Llama (4 layers, hidden 256), for checking the script itself.
`--tokenizer FOLDER` gives the random model another tokenizer than the default model's (a small vocabulary
makes a quick check quicker: both ways spend most of a tiny model's time on the 49,152-token vocabulary).

For each: seconds, the process's peak RSS, and the RSS the conversion added over the libraries loaded
(measured just before it starts), as figures and as ratios ours / transformers'. What our weights loop
holds by design (one shard, gguf_import.SHARD_BYTES, a chunk being de-quantized, and the largest tensor
the architecture rearranges, in float32) is recorded beside the measurement: `expected`.

    python benchmarks/gguf_import_speed.py             # both files
    python benchmarks/gguf_import_speed.py --quick     # a tiny random model only
    python benchmarks/gguf_import_speed.py --out /tmp/g.json

Without --out the result goes to benchmarks/results/gguf_import-<cpu>.json (a --quick run writes only
with --out). It needs no GPU.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SHAPES = {  # Llama shapes with the default model's vocabulary (its tokenizer is the one at hand)
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=8,
                 num_key_value_heads=4),
    "1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
               num_key_value_heads=8),
}
WAYS = ("ours", "transformers")


def child(way: str, gguf: Path, target: Path) -> None:
    """One conversion in this process; prints {seconds, peak_rss, rss_before} as JSON."""
    import psutil

    from core import model_source, runtime_env

    runtime_env.prepare()
    for library in ("torch", "transformers", "core.gguf_import"):  # what both ways load, before the start figure
        importlib.import_module(library)

    before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    if way == "ours":
        model_source.resolve(str(gguf), target.parent)
    else:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        target.mkdir(parents=True)
        model_source.save_through_transformers(gguf, config, target, None)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss": peak_rss(), "rss_before": before}))


def peak_rss() -> int:
    """This process's resident high-water mark. On Linux from /proc (VmHWM): getrusage's ru_maxrss carries
    the parent's peak over fork and exec, which here is the random model the parent built."""
    status = Path("/proc/self/status")
    if status.is_file():
        found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        if found:
            return int(found.group(1)) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def convert(way: str, gguf: Path, work: Path) -> dict:
    target = work / f"{way}-{gguf.stem}"
    proc = subprocess.run([sys.executable, __file__, "--child", way, str(gguf), str(target)], capture_output=True,
                          text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"The {way} conversion of {gguf.name} failed:\n{proc.stderr[-3000:]}")
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    folder = next(work.glob(f"{gguf.stem.lower()}-*"), None) if way == "ours" else target
    figures["folder_bytes"] = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    return figures


def synthetic(shape: str, quant: str, folder: Path, tokenizer: Path | None = None) -> tuple[Path, dict]:
    """A random-init Llama of `shape` (with `tokenizer`, else the default model's) written by our GGUF writer as
    `quant`; the file and its facts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from app import paths
    from core import model_source
    from core.gguf_export import architectures, tensor_types, vocab, writer
    from core.progress import Progress

    tok = AutoTokenizer.from_pretrained(str(tokenizer or model_source.resolve("default", paths.models_dir()).path))
    cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=2048, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **SHAPES[shape])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    c = model.config.to_dict()
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    arch = architectures.get("llama")
    plan = writer.plan(arch, c, shapes, vocab.build(tok, len(tok), "<|im_end|>"), tensor_types.pick(quant),
                       f"random-{shape}")
    path = folder / f"random-{shape}.{quant}.gguf"
    writer.write(plan, model.state_dict(), path, Progress())
    params = sum(t.numel() for t in model.state_dict().values())
    largest = max(t.numel() for t in model.state_dict().values())
    rearranged = max((t.numel() for k, t in model.state_dict().items()  # what gguf_import assembles in float32
                      if (name := arch.gguf_name(k, c)) and arch.untransforms(name, c)), default=0)
    return path, {"params": params, "vocab_size": len(tok), "largest_tensor_values": largest,
                  "largest_rearranged_values": rearranged}


def expected(largest_values: int, rearranged_values: int, stored_bytes: int = 2) -> int:
    """What our weights loop holds at once, by design: a full shard (or the largest tensor as stored, when that
    is larger and so a shard alone), a chunk's de-quantizing temporaries, and the largest tensor the
    architecture rearranges (Llama's Q/K), which is assembled in float32 first. Besides it: transformers'
    config and tokenizer from the file's metadata (a few hundred MB for a 50,000-token vocabulary) and the
    file pages being read."""
    from core import gguf_import

    return (max(gguf_import.SHARD_BYTES, largest_values * stored_bytes) + gguf_import.CHUNK_VALUES * 4 * 3
            + rearranged_values * (4 + stored_bytes))


def measure(gguf: Path, work: Path, facts: dict) -> dict:
    result = {"file": gguf.name, "file_bytes": gguf.stat().st_size, **facts}
    for way in WAYS:
        result[way] = convert(way, gguf, work)
        result[way]["added_rss"] = result[way]["peak_rss"] - result[way]["rss_before"]
    ours, theirs = result["ours"], result["transformers"]
    result["ratio"] = {"seconds": ours["seconds"] / theirs["seconds"],
                       "added_rss": ours["added_rss"] / theirs["added_rss"],
                       "peak_rss": ours["peak_rss"] / theirs["peak_rss"]}
    if "largest_tensor_values" in facts:
        result["ours_expected_bytes"] = expected(facts["largest_tensor_values"], facts["largest_rearranged_values"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="1b", choices=SHAPES, help="The random Llama shape to convert too.")
    parser.add_argument("--quant", default="q8_0", help="The GGUF type that random model is written as.")
    parser.add_argument("--quick", action="store_true", help="A tiny random model only (checks the script).")
    parser.add_argument("--tokenizer", type=Path, help="A tokenizer folder for the random model (default: the "
                        "default model's).")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/gguf_import-<cpu>.json).")
    parser.add_argument("--child", nargs=3, metavar=("WAY", "GGUF", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0

    from core import atomic, hardware, model_source, runtime_env

    runtime_env.prepare()
    import psutil
    import torch
    import transformers

    files = []
    with tempfile.TemporaryDirectory(prefix="gguf-import-") as tmp:
        work = Path(tmp)
        if not args.quick:
            files.append(measure(model_source.default_gguf(), work / "default", {"model": model_source.DEFAULT_LABEL}))
        shape = "tiny" if args.quick else args.shape
        path, facts = synthetic(shape, args.quant, work, args.tokenizer)
        files.append(measure(path, work / shape, {"model": f"random Llama {shape}", **facts}))

    cpu = hardware._cpu_name() or platform.processor() or platform.machine()
    result = {
        "benchmark": "gguf_import", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "quick": args.quick,
        "device": {"cpu": cpu, "cores_logical": os.cpu_count(), "platform": platform.platform(),
                   "ram_bytes": psutil.virtual_memory().total},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "files": files,
    }
    for f in files:
        print(f"{f['model']} ({f['file']}, {f['file_bytes'] / 1e6:.0f} MB):")
        for way in WAYS:
            w = f[way]
            print(f"  {way:>12}: {w['seconds']:6.1f} s, peak RSS {w['peak_rss'] / 2**30:5.2f} GiB "
                  f"(+{w['added_rss'] / 2**30:.2f} GiB over the libraries), folder {w['folder_bytes'] / 1e6:.0f} MB")
        r = f["ratio"]
        print(f"  ours / transformers: {r['seconds']:.2f}x the time, {r['added_rss']:.2f}x the added memory")
        if "ours_expected_bytes" in f:
            print(f"  ours by design (a shard, a chunk, Q in float32): {f['ours_expected_bytes'] / 2**30:.2f} GiB")
    if args.quick and not args.out:
        print("Nothing written (a --quick run writes only with --out).")
        return 0
    out = args.out or REPO / "benchmarks" / "results" / f"gguf_import-{_slug(cpu)}.json"
    atomic.write_json(out, result)
    print(f"Wrote {out}")
    return 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cpu"


if __name__ == "__main__":
    sys.exit(main())
