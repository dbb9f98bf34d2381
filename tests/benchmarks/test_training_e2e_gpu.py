"""The end-to-end training benchmark as a real process: without CUDA it says so and writes nothing;
`--smoke` runs both baselines and our trainer through the same measuring code on a tiny CPU model;
the MFU arithmetic matches a count made by hand."""

from __future__ import annotations

import pytest
import torch

from benchmarks.training_e2e_gpu import CELLS, datasheet_flops, model_flops_per_token
from tests.benchmarks.scripts import runner, says_no_gpu_and_writes_nothing
from tests.benchmarks.test_memory_model_gpu import bnb_imports, smoke_report

run = runner("training_e2e_gpu.py")


@pytest.mark.skipif(torch.cuda.is_available(), reason="there is a GPU here: the script would measure")
def test_without_a_gpu_it_says_so_and_writes_nothing(tmp_path):
    says_no_gpu_and_writes_nothing(run, tmp_path)


def test_smoke_measures_the_baselines_and_our_trainer(tmp_path):
    report = smoke_report(run, tmp_path / "smoke.json")
    by = {c["cell"]: c for c in report["cells"]}
    assert list(by) == list(CELLS)
    expected = {label for label, (strategy, _, _) in CELLS.items() if strategy != "qlora" or bnb_imports()}
    assert {label for label, c in by.items() if c["status"] == "measured"} == expected
    assert all(by[label]["tokens_per_s"] > 0 and by[label]["peak_gib"]["process"] > 0 for label in expected)
    assert "transformers + peft" in by["peft-lora"]["runs"] and "Session" in by["lora"]["runs"]
    assert set(report["summary"]) >= {"qlora_speed_met", "qlora_memory_met", "lora_mfu_met", "lora_vs_peft-lora"}
    assert report["summary"]["peak_flops"] is None  # no MFU on the CPU: there is no data-sheet peak to divide by
    if bnb_imports():  # both QLoRA cells are judged against the goals
        assert set(report["summary"]["qlora_cells"]) == {"qlora", "qlora-host-activations"}
        assert report["summary"]["qlora_judged_on"] in report["summary"]["qlora_cells"]


def test_model_flops_count_the_matmuls_and_causal_attention():
    cfg = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
               vocab_size=1000, tie_word_embeddings=True)
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128  # q, k and v (2 kv heads of 16), o, gate/up/down
    matmul = 2 * per_layer + 1000 * 64  # and the head
    attention = 2 * 2 * 100 * 4 * 16  # QKᵀ and AV over 100 positions, causal half, 2 layers
    assert model_flops_per_token(cfg, 100) == 4 * matmul + 3 * attention
    assert datasheet_flops("NVIDIA H100 80GB HBM3") == 989e12 and datasheet_flops("Some CPU") is None
