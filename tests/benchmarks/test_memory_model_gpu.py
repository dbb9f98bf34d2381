"""The GPU memory benchmark as a real process on this machine: without CUDA it says so and writes
nothing; `--list` shows the grid and its predictions anywhere; `--smoke` runs every strategy of the
grid through the same measuring code on a tiny CPU model and writes only where it is told."""

from __future__ import annotations

import json
import re

import pytest
import torch

from tests.benchmarks.scripts import RESULTS, runner, says_no_gpu_and_writes_nothing

run = runner("memory_model_gpu.py")


def bnb_imports() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        return False
    return True


def results_listing() -> dict:
    return {p.name: p.stat().st_mtime_ns for p in RESULTS.glob("*")} if RESULTS.exists() else {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here: the script would measure")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    says_no_gpu_and_writes_nothing(run, tmp_path)


def test_list_prints_the_grid_with_predictions():
    proc = run("--list")
    assert proc.returncode == 0, proc.stderr
    # model, strategy, micro-batch, sequence length, checkpointing, then three predicted GiB figures
    assert re.search(r"^smollm2-135m\s+lora\s+1\s+256\s+off(\s+\d+\.\d\d){3}$", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^llama-1b-shape\s+full\s+4\s+1024\s+on\s", proc.stdout, re.MULTILINE), proc.stdout
    for lisa in ("lisa", r"lisa\+emb"):  # LISA with the embeddings frozen and trained
        assert re.search(rf"^llama-1b-shape\s+{lisa}\s+4\s+1024\s+on(\s+\d+\.\d\d){{3}}$", proc.stdout,
                         re.MULTILINE), proc.stdout


def smoke_report(run, out, *more: str) -> dict:
    """Run a benchmark script with --smoke --out OUT (and `more` arguments) and return its JSON, checking what
    every smoke run must do: say what it is, and never land among the GPU results."""
    before = results_listing()
    proc = run("--smoke", "--out", out, *more)
    assert proc.returncode == 0, proc.stderr
    assert "CPU smoke run" in proc.stdout
    assert results_listing() == before
    report = json.loads(out.read_text())
    assert report["smoke"] is True and "not a GPU result" in report["device"]
    return report


def test_smoke_runs_every_strategy_through_the_measuring_code_on_the_cpu(tmp_path):
    report = smoke_report(run, tmp_path / "smoke.json")
    assert report["summary"]["met"] is None  # a tiny CPU model judges nothing
    expected = {"lora", "dora", "full", "lisa", "lisa+emb", "lora+act"} | ({"qlora"} if bnb_imports() else set())
    assert {c["cell"] for c in report["cells"]} == expected
    for cell in report["cells"]:
        assert cell["status"] == "measured", cell
        assert cell["measured_gib"]["process"] > 0 and cell["predicted_gib"]["process"] > 0, cell
        assert cell["tokens_per_s"] > 0, cell
