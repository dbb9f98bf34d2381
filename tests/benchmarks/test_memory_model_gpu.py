"""The GPU memory benchmark as a real process on this machine: without CUDA it says so and writes
nothing; `--list` shows the grid and its predictions anywhere."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "memory_model_gpu.py"


def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here: the script would measure")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    out = tmp_path / "result.json"
    proc = run("--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "No CUDA GPU here: nothing measured; run this on a machine with an NVIDIA GPU."
    assert not out.exists()


def test_list_prints_the_grid_with_predictions():
    proc = run("--list")
    assert proc.returncode == 0, proc.stderr
    # model, strategy, micro-batch, sequence length, checkpointing, then three predicted GiB figures
    assert re.search(r"^smollm2-135m\s+lora\s+1\s+256\s+off(\s+\d+\.\d\d){3}$", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^llama-1b-shape\s+full\s+4\s+1024\s+on\s", proc.stdout, re.MULTILINE), proc.stdout
