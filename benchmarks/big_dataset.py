"""A big JSONL end to end: inspected, then tokenized for training, then found in the token cache.

The issue asks that a 1 GB JSONL be inspected and tokenized without loading it whole into memory.
This writes a chat JSONL of the asked size (short rows from tokenize_speed's generator), then runs
each phase in a fresh process so that its peak resident memory is its own:
- inspect: `data inspect --model default` (rows, problems, token statistics, preview);
- tokenize: the trainer's path, dataset.load + the split + encode_all_cached into an empty cache;
- cached: the same again, which finds the cache entry and reads nothing but the dataset.
Each phase's seconds, rows/s and peak RSS go to the JSON, with the RSS it had before touching the data
(libraries and tokenizer loaded) so the memory the data itself takes can be compared with the file's size.

    python benchmarks/big_dataset.py                 # 1024 MB (several minutes per phase on 2 cores)
    python benchmarks/big_dataset.py --size-mb 64 --out /tmp/big.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PHASES = ("inspect", "tokenize", "cached")


def write_jsonl(path: Path, size_mb: int) -> int:
    """Chat rows until the file reaches size_mb; returns the row count. Rows repeat in blocks of 50,000
    with a running number, so no two rows are the same."""
    from benchmarks.tokenize_speed import chat_rows

    block = chat_rows(50_000)
    target, written, n = size_mb << 20, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            e = block[n % len(block)]
            messages = [dict(m) for m in e.messages]
            messages[-1]["content"] += f" [{n}]"
            line = json.dumps({"messages": messages}, ensure_ascii=False) + "\n"
            f.write(line)
            written += len(line.encode("utf-8"))
            n += 1
    return n


def phase(name: str, path: Path, cache: Path) -> dict:
    """One phase, in this process; prints its figures as JSON on the last line."""
    from core import runtime_env

    runtime_env.prepare()
    from app import operations as ops
    from app import paths
    from core import model_source
    from core.data import dataset, token_cache
    from transformers import AutoTokenizer

    ref = model_source.resolve("default", paths.models_dir())
    tok = AutoTokenizer.from_pretrained(str(ref.path))
    tok("warm up")
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # libraries and tokenizer, before any data
    start = time.perf_counter()
    if name == "inspect":
        report = ops.inspect_data(str(path), model="default")
        rows, detail = report["rows"], {"tokens_per_epoch": report["tokens_per_epoch"],
                                        "median_tokens": report["tokens"]["median"]}
    else:
        ds = dataset.load(path)
        train, held, _ = ds.split(None, seed=42)
        stored = token_cache.encode_all_cached(train, tok, 512, "assistant", cache, ds.digest)
        rows, detail = len(train), {"stored_rows": len(stored), "stored_tokens": stored.total_tokens(),
                                    "in_memory": ds.examples.in_memory}
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": round(seconds, 1), "rows": rows, "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak_kb / 1024), "baseline_rss_mb": round(baseline_kb / 1024),
            "added_by_the_data_mb": round((peak_kb - baseline_kb) / 1024), **detail}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="Size of the JSONL to write, in MB.")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/big_dataset.json).")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # internal: one phase in a child
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(args.phase, args.path, args.cache)))
        return 0
    if args.size_mb < 1:
        parser.error("--size-mb must be at least 1.")

    from core import atomic, hardware

    with tempfile.TemporaryDirectory(prefix="tuneforge-big-") as tmp:
        path, cache = Path(tmp) / "big.jsonl", Path(tmp) / "cache"
        rows = write_jsonl(path, args.size_mb)
        size = path.stat().st_size
        print(f"Wrote {size / 2**20:,.0f} MB, {rows:,} chat rows")
        results = {}
        for name in PHASES:
            done = subprocess.run([sys.executable, __file__, "--phase", name, "--path", str(path), "--cache",
                                   str(cache)], capture_output=True, text=True, cwd=REPO)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[name]
            print(f"  {name:9} {r['seconds']:>8.1f} s  {r['rows_per_s']:>8,} rows/s  peak RSS {r['peak_rss_mb']:>6,} MB "
                  f"({r['added_by_the_data_mb']:,} MB over the libraries and tokenizer alone)")
    cpu = hardware._cpu_name() or platform.processor() or platform.machine()
    result = {
        "benchmark": "big_dataset", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/big_dataset.py", *(argv if argv is not None else sys.argv[1:])]),
        "device": {"cpu": cpu, "cores_logical": os.cpu_count(), "platform": platform.platform(),
                   "load_average_after": list(os.getloadavg())},
        "file_mb": round(size / 2**20), "rows": rows, "phases": results,
        "data_memory_over_file_size": round(max(r["added_by_the_data_mb"] for r in results.values())
                                            / (size / 2**20), 3),
    }
    out = args.out or REPO / "benchmarks" / "results" / "big_dataset.json"
    atomic.write_json(out, result)
    print(f"Memory the data added at its peak: {result['data_memory_over_file_size']}× the file's size. Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
