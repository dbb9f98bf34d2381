"""What rounding a merged model to 16 bits does to a fine-tune, on the CPU: the ground for the merged export's
`auto` dtype (core/merge_stream.py: keep the base's 16-bit dtype where at least KEEP_BAR of the change survives
the rounding, else float32).

Real runs, not random adapters: LoRA runs of the default model (float16, converted from its GGUF) on the demo
chats, of a few lengths, trained through the CLI in a temporary data folder. Each run's adapter is merged into the
base as stored (float16) and into the base rounded to bfloat16 (as a bfloat16 release stores it), each in float32
and in the base's own dtype (what `auto` writes when enough survives), and measured:
- the share of the fine-tune's change that survives the rounding, as the export measures it (64 rows of every
  adapted weight) and over every row;
- the held-out demo chats' answer loss (core.evaluation.loss, as `evaluate` counts it) with the base, the float32
  merge (peft's merge exactly) and the 16-bit merge, and the share of the fine-tune's gain in that loss the 16-bit
  merge keeps: (base − 16-bit) / (base − float32).

    python benchmarks/merge_dtype.py                  # runs of 3, 10 and 30 steps
    python benchmarks/merge_dtype.py --steps 3 --out /tmp/m.json

Without --out the result goes to benchmarks/results/merge_dtype.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import runtime_env  # noqa: E402

runtime_env.prepare()

from core import atomic, merge_stream  # noqa: E402

DEMO = REPO / "resources" / "demo"


def train(home: Path, steps: int) -> dict:
    """A LoRA run of the default model on the demo chats, through the CLI; its history row."""
    env = {**os.environ, "TUNEFORGE_HOME": str(home)}
    done = subprocess.run([sys.executable, str(REPO / "main.py"), "train", "--model", "default", "--data",
                           str(DEMO / "pirate_chat.jsonl"), "--max-steps", str(steps), "--json"],
                          env=env, capture_output=True, text=True, check=True)
    run_id = json.loads(done.stdout.strip().splitlines()[-1])["run_id"]
    found = subprocess.run([sys.executable, str(REPO / "main.py"), "show", run_id, "--json"], env=env,
                           capture_output=True, text=True, check=True)
    return json.loads(found.stdout)["run"]


def answer_loss(folder: Path, tokenizer, examples, seq_len: int) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    from core import evaluation

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)  # 16-bit weights read exactly
    return evaluation.loss(model, tokenizer, examples, seq_len)[0]


def bfloat16_copy(base: Path, folder: Path) -> Path:
    """The base's weights rounded to bfloat16 in `folder`: the base as a bfloat16 release would store it."""
    import torch
    from safetensors.torch import load_file, save_file

    folder.mkdir(exist_ok=True)
    for shard in sorted(set(merge_stream.weight_files(base).values())):
        save_file({n: t.to(torch.bfloat16) for n, t in load_file(str(shard)).items()}, str(folder / shard.name),
                  metadata={"format": "pt"})
    config = json.loads((base / "config.json").read_text())
    atomic.write_json(folder / "config.json", {**config, "dtype": "bfloat16"})
    return folder


def measure(run: dict, scratch: Path) -> dict:
    """For each base dtype (the default model's float16 as stored, and rounded to bfloat16): what the export's
    `auto` would write and the held-out loss of the float32 and the 16-bit merge."""
    from transformers import AutoTokenizer

    from core.data import dataset

    stored, adapter = Path(run["model_path"]), Path(run["run_dir"]) / "result"
    tokenizer = AutoTokenizer.from_pretrained(str(stored))
    examples = list(dataset.load(DEMO / "pirate_heldout.jsonl").examples)
    seq_len = json.loads((Path(run["run_dir"]) / "run.json").read_text())["seq_len"]
    found = {}
    for dtype, base in (("float16", stored), ("bfloat16", bfloat16_copy(stored, scratch / f"{run['id']}-bf16"))):
        losses = {"base": answer_loss(base, tokenizer, examples, seq_len)}
        for written in ("float32", dtype):
            folder = scratch / f"{run['id']}-{dtype}-{written}"
            folder.mkdir()
            merge_stream.write(base, adapter, folder, None, written)
            losses[written] = answer_loss(folder, tokenizer, examples, seq_len)
        gain = losses["base"] - losses["float32"]
        sampled = merge_stream.kept_share(base, adapter, dtype)
        found[dtype] = {"held_out_loss": losses, "kept_share_sampled": sampled,
                        "kept_share_all_rows": merge_stream.kept_share(base, adapter, dtype, rows=None),
                        "loss_gain_kept": (losses["base"] - losses[dtype]) / gain if gain else None,
                        "auto_writes": dtype if sampled >= merge_stream.KEEP_BAR else "float32"}
    return {"run": run["id"], "steps": run["steps_done"], "bases": found}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, nargs="+", default=[3, 10, 30], help="run lengths to train and merge")
    p.add_argument("--out", help="JSON path (default: benchmarks/results/merge_dtype.json)")
    a = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as home:
        for steps in a.steps:
            run = train(Path(home), steps)
            rows.append(measure(run, Path(home)))
            for dtype, f in rows[-1]["bases"].items():
                print(f"{steps:>3} steps, {dtype:8} base: kept share {f['kept_share_sampled']:.2%} (64 rows) / "
                      f"{f['kept_share_all_rows']:.2%} (all rows); held-out loss {f['held_out_loss']['base']:.4f} "
                      f"base, {f['held_out_loss']['float32']:.4f} float32 merge, {f['held_out_loss'][dtype]:.4f} "
                      f"{dtype} merge: {f['loss_gain_kept']:.1%} of the gain kept; auto writes {f['auto_writes']}",
                      flush=True)
    result = {"benchmark": "merge_dtype", "command": "python " + " ".join(shlex.quote(x) for x in sys.argv),
              "date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
              "keep_bar": merge_stream.KEEP_BAR, "runs": rows}
    out = Path(a.out) if a.out else REPO / "benchmarks" / "results" / "merge_dtype.json"
    atomic.write_json(out, result)
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
