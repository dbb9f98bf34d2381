"""The mixture-of-experts benchmark as a real process on this machine: without CUDA it says so and writes nothing;
`--list` predicts every cell anywhere (the 4-bit experts' far below the 16-bit ones'); `--smoke` runs the baseline
and every cell through the same measuring code on a tiny Qwen3 MoE on the CPU."""

from __future__ import annotations

import re

import pytest
import torch

from tests.benchmarks.scripts import runner, says_no_gpu_and_writes_nothing
from tests.benchmarks.test_memory_model_gpu import bnb_imports, smoke_report

run = runner("moe_gpu.py")
CELLS = ["peft-frozen-experts", "lora", "lora-frozen-experts", "qlora", "qlora-frozen-experts",
         "offload-frozen-experts"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here: the script would measure")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    says_no_gpu_and_writes_nothing(run, tmp_path)


def test_list_predicts_every_cell_and_the_4_bit_experts_far_below_the_16_bit_ones():
    proc = run("--list", "--layers", "8")
    assert proc.returncode == 0, proc.stderr
    predicted = {m.group(1): float(m.group(2))
                 for m in re.finditer(r"^(\S+)\s+(\d+\.\d\d)( \d+\.\d\d){2}$", proc.stdout, re.MULTILINE)}
    assert list(predicted) == CELLS
    experts = 8 * 128 * 3 * 768 * 2048 / 2**30  # GiB of expert weights at one byte each
    assert predicted["qlora"] - predicted["qlora-frozen-experts"] > 1.4 * experts  # 16 bits against ~4.1


def test_smoke_measures_every_cell_against_its_prediction_and_the_baseline(tmp_path):
    out = tmp_path / "smoke.json"
    report = smoke_report(run, out)
    cells = {c["cell"]: c for c in report["cells"]}
    assert list(cells) == CELLS and report["config"]["model_type"] == "qwen3_moe"
    for name, cell in cells.items():
        if name in ("qlora", "qlora-frozen-experts", "offload-frozen-experts") and not bnb_imports():
            assert cell["status"] == "skipped"
            continue
        assert cell["status"] == "measured", cell
        assert cell["tokens_per_s"] > 0 and cell["peak_over_predicted"] > 0, cell
        assert len(cell["per_step"]) == cell["steps"]
        if name != "peft-frozen-experts":
            assert cell["vs_baseline"]["peak"] > 0 and cell["vs_baseline"]["tokens_per_s"] > 0, cell
    assert cells["peft-frozen-experts"]["runs"].startswith("transformers + peft")
    assert cells["offload-frozen-experts"]["options"]["stream"] == "always"  # the CPU streams only when told to
