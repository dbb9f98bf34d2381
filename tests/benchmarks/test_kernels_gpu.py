"""The kernels benchmark as a real process on this machine: without CUDA it says so and writes nothing;
`--smoke` runs every kernel, ours and the PyTorch baseline (and Liger-Kernel's when it is installed), through
the same measuring code at tiny sizes in Triton's interpreter; the baseline is the tests' reference."""

from __future__ import annotations


import pytest
import torch

from tests.benchmarks.scripts import runner, says_no_gpu_and_writes_nothing
from tests.benchmarks.test_memory_model_gpu import smoke_report

run = runner("kernels_gpu.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here: the script would measure")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    says_no_gpu_and_writes_nothing(run, tmp_path)


def test_smoke_measures_every_kernel_against_its_baselines(tmp_path):
    out = tmp_path / "smoke.json"
    report = smoke_report(run, out)
    assert report["command"].endswith(f"--smoke --out {out}") and report["torch"] and report["date"]
    from tuneforge_kernels import OPS

    assert {c["kernel"] for c in report["cells"]} == set(OPS)
    for cell in report["cells"]:
        results = cell["results"]
        assert results["tuneforge"]["status"] == results["pytorch"]["status"] == "measured", cell
        assert results["tuneforge"]["ms"] > 0 and cell["vs_pytorch"]["speedup"] > 0, cell
        assert results["liger"]["status"] in ("measured", "not installed", "has no such kernel"), cell


def test_the_baselines_are_the_tests_references():
    from benchmarks import kernels_gpu
    from tests.kernels import test_fused_linear_cross_entropy, test_lora, test_rmsnorm, test_rope, test_swiglu

    assert kernels_gpu.references() == {
        "cross_entropy": test_fused_linear_cross_entropy.reference, "rmsnorm": test_rmsnorm.reference,
        "swiglu": test_swiglu.reference, "rope": test_rope.reference, "lora": test_lora.reference}
