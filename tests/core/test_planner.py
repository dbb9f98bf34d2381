import json

import pytest

from core import hardware, planner
from tests.conftest import REPO

SMOL = json.loads((REPO / "resources" / "models" / "smollm2-135m.json").read_text())
CPU_ONLY = hardware.HardwareProfile(cores_physical=2, ram_total_bytes=24 << 30, ram_available_bytes=20 << 30)


def test_plan_is_deterministic_and_explains_itself():
    lengths = [40, 60, 70, 33]
    a = planner.make_plan(CPU_ONLY, SMOL, lengths)
    b = planner.make_plan(CPU_ONLY, SMOL, lengths)
    assert a == b
    assert a.device == "cpu" and a.precision == "fp32" and a.strategy == "lora"
    assert a.seq_len == 80  # from the data's longest row (70), rounded up to 16
    assert any("CPU" in r for r in a.reasons) and any("Sequence length 80" in r for r in a.reasons)
    assert {r["strategy"] for r in a.rejected} >= {"full", "qlora"}
    assert a.peak_bytes == sum(a.memory.values()) > a.memory["weights"] > 0


def test_wishes_override_and_say_so():
    plan = planner.make_plan(CPU_ONLY, SMOL, [500] * 10, planner.Wishes(seq_len=256, micro_batch=2, lr=1e-3))
    assert (plan.seq_len, plan.micro_batch, plan.lr) == (256, 2, 1e-3)
    assert plan.truncated_rows == 10
    assert any("as you asked" in r and "cuts 10 of 10" in r for r in plan.reasons)


def test_not_built_strategies_are_planned_but_marked():
    plan = planner.make_plan(CPU_ONLY, SMOL, [50], planner.Wishes(strategy="qlora"))
    assert plan.strategy == "qlora" and not plan.strategy_built
    assert any("not built yet" in w for w in plan.warnings)


@pytest.mark.parametrize("profile,fits", [("gpu-8gb-laptop.json", True), ("gpu-24gb.json", True)])
def test_small_model_fits_consumer_gpus(profile, fits):
    hw = hardware.load(REPO / "resources" / "hardware" / profile)
    plan = planner.make_plan(hw, SMOL, [512] * 100)
    assert (plan.peak_bytes <= plan.memory_limit) == fits
    assert plan.precision == "bf16" and plan.micro_batch >= 1


def test_steps_follow_rows_batch_and_epochs():
    plan = planner.make_plan(CPU_ONLY, SMOL, [50] * 100, planner.Wishes(micro_batch=4, grad_accum=5, epochs=2))
    assert plan.total_steps == 10  # 100 rows / 4 = 25 micro-batches, / 5 = 5 steps, × 2 epochs
