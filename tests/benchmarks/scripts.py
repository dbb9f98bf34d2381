"""Benchmark scripts run as the person runs them, and the check every GPU benchmark shares."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.conftest import REPO

RESULTS = REPO / "benchmarks" / "results"
NO_GPU = "No CUDA GPU here: nothing measured; run this on a machine with an NVIDIA GPU."


def runner(script: str) -> Callable[..., subprocess.CompletedProcess]:
    """run(*args) for benchmarks/<script>: a real process from the repository root, output captured."""
    path = REPO / "benchmarks" / script

    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(path), *map(str, args)], cwd=REPO, capture_output=True,
                              text=True, timeout=300)

    return run


def says_no_gpu_and_writes_nothing(run, tmp_path) -> None:
    out = tmp_path / "result.json"
    proc = run("--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == NO_GPU
    assert not out.exists()
