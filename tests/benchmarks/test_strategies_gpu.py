"""The strategies benchmark as a real process on this machine: without CUDA it says so and writes
nothing; `--list` shows its cells and their predictions anywhere; `--smoke` runs the baseline and every
strategy through the same measuring code on a tiny CPU model, with LISA's peak per switch window."""

from __future__ import annotations

import re

import pytest
import torch

from tests.benchmarks.scripts import runner, says_no_gpu_and_writes_nothing
from tests.benchmarks.test_memory_model_gpu import bnb_imports, smoke_report

run = runner("strategies_gpu.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here: the script would measure")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    says_no_gpu_and_writes_nothing(run, tmp_path)


def test_list_prints_the_cells_with_predictions():
    proc = run("--list", "--model", "llama-1b-shape", "--model", "llama-3.1-8b")
    assert proc.returncode == 0, proc.stderr
    # model, cell, micro-batch, sequence length, checkpointing, steps, predicted allocated and total GiB
    for model in ("llama-1b-shape", "llama-3.1-8b"):
        for cell, steps in (("peft-lora", 5), ("lora", 5), ("dora", 5), ("lisa", 10), (r"lisa\+emb", 10), ("full", 5),
                            (r"full\+galore", 5), (r"full\+galore\+sr", 5), (r"lora\+orpo", 5), (r"lora\+dpo", 5)):
            assert re.search(rf"^{model}\s+{cell}\s+4\s+1024\s+on\s+{steps}(\s+\d+\.\d\d){{2}}$", proc.stdout,
                             re.MULTILINE), (cell, proc.stdout)
    # An 8B model's full fine-tuning is predicted far beyond any single GPU's 80% (it will be skipped there).
    full_8b = re.search(r"^llama-3\.1-8b\s+full\s.*\s(\d+\.\d\d)$", proc.stdout, re.MULTILINE)
    assert float(full_8b.group(1)) > 100


def test_smoke_measures_every_strategy_and_lisa_per_window(tmp_path):
    out = tmp_path / "smoke.json"
    report = smoke_report(run, out)
    assert report["command"].endswith(f"--smoke --out {out}") and report["torch"] and report["date"]

    cells = {c["cell"]: c for c in report["cells"]}
    expected = ({"peft-lora", "lora", "dora", "lisa", "lisa+emb", "full", "full+galore", "full+galore+sr",
                 "lora+orpo", "lora+dpo", "lora+kto"}
                | ({"qlora"} if bnb_imports() else set()))
    assert set(cells) == expected
    for name, cell in cells.items():
        assert cell["status"] == "measured", cell
        assert cell["tokens_per_s"] > 0 and cell["peak_gib"]["process"] > 0, cell
        assert len(cell["per_step"]) == cell["steps"] and all(s["peak_gib"]["process"] > 0 for s in cell["per_step"])
        if name != "peft-lora":
            assert cell["vs_baseline"]["peak"] > 0 and cell["vs_baseline"]["tokens_per_s"] > 0, cell
    assert cells["peft-lora"]["runs"].startswith("transformers + peft")

    interval = report["settings"]["lisa_interval"]
    for name in ("lisa", "lisa+emb"):
        windows = cells[name]["windows"]
        assert len(windows) == -(-cells[name]["steps"] // interval) >= 2  # layers switched at least once
        assert all(w["peak_gib"] > 0 and len(w["active_layers"]) == 2 for w in windows), windows

    summary = report["summary"]["smoke-tiny"]
    assert summary["lisa_peak_over_lora"] > 0 and summary["lisa_peak_over_full"] > 0
    assert summary["full_peak_from"] == "measured"
    assert isinstance(summary["lisa_close_to_lora"], bool) and isinstance(summary["lisa_flat_over_switches"], bool)
    assert len(summary["lisa_window_peaks_gib"]) == len(cells["lisa"]["windows"])
    # Preference tuning: twice the sequences of LoRA's micro-batch, each peak set against its own prediction.
    assert cells["lora+dpo"]["objective"] == "dpo" and cells["lora"]["objective"] == "sft"
    for name in ("orpo", "dpo", "kto"):
        assert summary[f"{name}_peak_over_lora"] > 0 and summary[f"{name}_peak_over_predicted"] > 0, summary


def test_the_baseline_adapts_the_same_projections_as_tuneforge_lora():
    from benchmarks import strategies_gpu
    from core.strategies import lora

    assert strategies_gpu.LLAMA_TARGETS == lora.TARGETS["llama"]
