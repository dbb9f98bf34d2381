"""The offload benchmark as a real process on this machine: without CUDA it says so and writes nothing; `--list`
shows its cells and their predictions anywhere; `--smoke` builds tiny models layer by layer (fp32 and nf4, and one
trained by LISA with its frozen layers streamed), streams them through the same store and streamer, and reports
what a GPU run reports."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tests.benchmarks.scripts import runner, says_no_gpu_and_writes_nothing
from tests.benchmarks.test_memory_model_gpu import smoke_report

run = runner("offload_gpu.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here: the script would measure")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    says_no_gpu_and_writes_nothing(run, tmp_path)


def test_list_prints_the_cells_with_predictions_under_their_caps():
    proc = run("--list")
    assert proc.returncode == 0, proc.stderr
    for cell, cap in (("8b-bf16-12g", 12), ("70b-nf4-24g", 24), ("8b-lisa-16g", 16)):
        found = re.search(rf"^{cell}\s.*cap {cap} GiB.*predicted (\d+\.\d\d) GiB$", proc.stdout, re.MULTILINE)
        assert found and 0 < float(found.group(1)) < cap, proc.stdout  # the memory model says it fits the cap


def test_a_layer_major_step_is_predicted_to_keep_more():
    """Layer-major keeps every layer's input for each micro-batch of a step: the prediction grows with them."""
    def predictions(*args):
        proc = run("--list", *args)
        assert proc.returncode == 0, proc.stderr
        return [float(x) for x in re.findall(r"predicted (\d+\.\d\d) GiB$", proc.stdout, re.MULTILINE)]

    plain, major = predictions(), predictions("--accumulation", "4", "--layer-major")
    assert len(plain) == len(major) == 3 and all(m > p for p, m in zip(plain, major)), (plain, major)


def test_smoke_streams_both_bases_and_reports_the_bound(tmp_path):
    out = tmp_path / "smoke.json"
    report = smoke_report(run, out, "--accumulation", "2", "--layer-major")  # two micro-batches a step, layer-major
    assert report["command"].endswith(f"--smoke --out {out} --accumulation 2 --layer-major") and report["date"]
    assert report["host_to_device_bytes_per_s"] > 0 and report["goal_fraction"] == 0.6
    cells = {c["cell"]: c for c in report["cells"]}
    assert set(cells) == {"smoke-fp32", "smoke-nf4", "smoke-lisa"}
    for cell in cells.values():
        assert cell["status"] == "measured", cell
        assert cell["tokens_per_s"] > 0 and cell["bound_tokens_per_s"] > 0 and 0 < cell["fraction_of_bound"]
        # the steps timed again without copies: the roofline is the slower of copies and compute
        assert cell["roofline_tokens_per_s"] == min(cell["bound_tokens_per_s"], cell["compute_tokens_per_s"]) > 0
        assert cell["fraction_of_roofline"] >= cell["fraction_of_bound"]
        assert cell["stalls"] == 0 and cell["loads"] > cell["layers"] and cell["streamed_bytes_per_step"] > 0
        assert all(math.isfinite(x) and 0 < x < 20 for x in cell["losses"])
        assert cell["losses"][-1] < cell["losses"][0] or cell["trains"] == "lora"  # (LoRA's B starts at zero)
        assert cell["placement"] == "RAM" and cell["predicted_gib"] > 0
        assert cell["accumulation"] == 2 and cell["layer_major"] is True
    assert cells["smoke-nf4"]["base"] == "nf4"
    # A 4-bit layer is about a quarter of an fp32 one... plus its norms, which stay in full precision.
    assert cells["smoke-nf4"]["bound_tokens_per_s"] > 4 * cells["smoke-fp32"]["bound_tokens_per_s"]
