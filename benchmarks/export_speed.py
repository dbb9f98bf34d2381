"""GGUF export speed on the CPU: `export --format gguf --quant q4_k_m` of the default model, by stage.

The run exported is the default model (SmolLM2-135M-Instruct) with a LoRA adapter of the default shape
(r=16, alpha=32, attention and MLP projections) whose weights are random instead of trained: export
does not care how an adapter was learned, and this needs no training first. The export goes through
core.export exactly as the CLI's, and the stages are timed from its progress reports:

- load + merge: loading the base and the adapter, merging, reading the tokenizer and chat format, planning;
- write: converting, quantizing and writing the GGUF file, the Modelfile and the LoRA file;
- verify: reading the file back, loading it with transformers' GGUF loader, comparing with the merged
  model, and the tokenizer round trip.

    python benchmarks/export_speed.py                 # 3 exports of q4_k_m, the median of each stage
    python benchmarks/export_speed.py --quick         # one export
    python benchmarks/export_speed.py --quant f16 --out /tmp/e.json

Without --out the result goes to benchmarks/results/export_speed-<cpu>.json. Timings are wall clock, so
other work on the machine lowers them: the JSON holds the load average before and after.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core import runtime_env  # noqa: E402

runtime_env.prepare()

from app import paths  # noqa: E402
from core import atomic, export, hardware, model_source  # noqa: E402
from core.gguf_export import QUANT_NAMES, exporter  # noqa: E402
from core.progress import Progress  # noqa: E402

STAGES = ("load_merge", "write", "verify")


def make_run(model_path: Path, folder: Path) -> dict:
    """A LoRA run of the default shape with random adapter weights (B ~ N(0, 0.01), so the merge matters)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_path), LoraConfig(
        r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    model.save_pretrained(folder / "result")
    return {"id": "bench", "run_dir": str(folder), "model_path": str(model_path), "strategy": "lora", "status": "done"}


def timed_export(run: dict, quant: str, out: Path) -> dict:
    """One export; seconds per stage, from the exporter's own progress reports."""
    marks = {"start": time.perf_counter()}

    def on_progress(fraction, text):
        if text.startswith("Writing") and "write" not in marks:
            marks["write"] = time.perf_counter()
        elif text == "Checking the file" and "verify" not in marks:
            marks["verify"] = time.perf_counter()

    export.export(run, "gguf", out, quant, Progress(on_progress))
    marks["end"] = time.perf_counter()
    report = (out / exporter.REPORT).read_text(encoding="utf-8")
    return {"load_merge": marks["write"] - marks["start"], "write": marks["verify"] - marks["write"],
            "verify": marks["end"] - marks["verify"], "total": marks["end"] - marks["start"], "report": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quant", default="q4_k_m", choices=QUANT_NAMES, help="The GGUF type to export.")
    parser.add_argument("--repeats", type=int, default=3, help="Exports to time (the median is reported).")
    parser.add_argument("--quick", action="store_true", help="One export instead of --repeats.")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/export_speed-<cpu>.json).")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be at least 1.")

    import json

    import torch
    import transformers

    ref = model_source.resolve("default", paths.models_dir())
    load_before = os.getloadavg()
    runs = []
    with tempfile.TemporaryDirectory(prefix="export-speed-") as tmp:
        run = make_run(ref.path, Path(tmp) / "run")
        for i in range(repeats):
            runs.append(timed_export(run, args.quant, Path(tmp) / f"out{i}"))
    report = json.loads(runs[-1].pop("report"))
    for r in runs[:-1]:
        r.pop("report")
    median = {k: round(statistics.median(r[k] for r in runs), 2) for k in (*STAGES, "total")}

    cpu = hardware._cpu_name() or platform.processor() or platform.machine()
    result = {
        "benchmark": "export_speed", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": cpu, "cores_logical": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                   "platform": platform.platform(), "load_average_before": list(load_before),
                   "load_average_after": list(os.getloadavg())},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__},
        "model": ref.label, "quant": args.quant, "repeats": repeats,
        "seconds_median": median, "seconds_each": [{k: round(r[k], 2) for k in (*STAGES, "total")} for r in runs],
        "file_bytes": report["bytes"], "tensor_types": report["tensor_types"],
        "verification": report["verification"],
    }
    out = args.out or REPO / "benchmarks" / "results" / f"export_speed-{_slug(cpu)}.json"
    atomic.write_json(out, result)
    print(f"GGUF export of {ref.label} as {args.quant} ({report['bytes'] / 1e6:.0f} MB), {cpu}, "
          f"median of {repeats}:")
    print(f"  load + merge: {median['load_merge']:6.1f} s")
    print(f"  write:        {median['write']:6.1f} s")
    print(f"  verify:       {median['verify']:6.1f} s   ({report['verification']['summary']})")
    print(f"  total:        {median['total']:6.1f} s   (load average {load_before[0]:.1f} before, "
          f"{result['device']['load_average_after'][0]:.1f} after)")
    print(f"Wrote {out}")
    return 0 if report["verification"]["ok"] else 1


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "cpu"


if __name__ == "__main__":
    sys.exit(main())
