"""How long a run trains (core.plan_length): one table over data sizes and wishes, then the planner and the
CLI carrying it."""

import json

import pytest

from core import hardware, plan_length, planner, plan_text
from tests.conftest import REPO

SMOL = json.loads((REPO / "resources" / "models" / "smollm2-135m.json").read_text())
CPU_ONLY = hardware.HardwareProfile(cores_physical=2, ram_total_bytes=24 << 30, ram_available_bytes=20 << 30)


@pytest.mark.parametrize("examples, held, per_epoch, wishes, epochs, steps, stop, said", [
    (950, 50, 119, {}, 3, 357, 3, "three passes over 950 training rows"),
    (22, 2, 3, {}, 10, 30, 3, "more than 10 passes would mostly memorize"),  # small: up to MIN_STEPS, capped
    (36, 4, 8, {}, 7, 56, 3, "make 8 steps a pass, and a model needs about 50 steps"),
    (10, 0, 2, {}, 3, 6, 0, "none held out for validation"),  # nothing to stop on, nothing to catch memorizing
    (12_000, 256, 1500, {}, 2, 3000, 3, "12,000 training rows are plenty"),
    (50_000, 256, 6250, {}, 1, 6250, 0, "every row at least once"),  # one pass: nothing to stop early on
    (950, 50, 119, {"max_steps": 30}, 1.0, 30, 0, "30 steps as you asked"),
    (950, 50, 119, {"epochs": 2.5}, 2.5, 298, 0, "2.5 epochs as you asked: 298 steps"),
    (950, 50, 119, {"stop_early": 0}, 3, 357, 0, "three passes"),  # asked off
    (950, 50, 119, {"max_steps": 30, "stop_early": 5}, 1.0, 30, 5, "5 validation checks in a row"),
])
def test_the_length_fits_the_data_and_keeps_wishes(examples, held, per_epoch, wishes, epochs, steps, stop, said):
    length = plan_length.choose(examples, held, per_epoch, **wishes)
    assert (length.epochs, length.steps, length.stop_early) == (epochs, steps, stop)
    assert length.reasons[0].startswith("Length: ") and any(said in r for r in length.reasons), length.reasons
    assert any("Stops early" in r for r in length.reasons) == bool(stop)


def test_the_plan_sizes_a_small_set_and_says_so_everywhere():
    plan = planner.make_plan(CPU_ONLY, SMOL, [40] * 24)  # 24 rows: 2 held out, 22 trained, 3 steps a pass
    assert (plan.epochs, plan.total_steps, plan.stop_early) == (10, 30, 3)
    assert any(r.startswith("Length: 10 epochs (30 steps)") for r in plan.reasons), plan.reasons
    steps_line = next(line for line in plan_text.describe(plan) if line.startswith("Steps:"))
    assert steps_line.startswith("Steps: 30 (10 epochs), ") and "at most" in steps_line and "ends early after 3" \
        in steps_line
    asked = planner.make_plan(CPU_ONLY, SMOL, [40] * 24, planner.Wishes(max_steps=4))
    assert (asked.total_steps, asked.stop_early) == (4, 0) and "(10 epochs)" not in plan_text.describe(asked)[3]


@pytest.mark.parametrize("limit, step_s, steps, epochs, capped, said", [
    (None, 2.0, 357, 3, False, None),  # no limit: the length as chosen, nothing said
    (3600, 2.0, 357, 3, False, "Time: about 12 min, within the 60 min you allowed"),
    (600, 2.0, 270, 2.27, True, "Time: 270 steps (2.27 epochs) instead of 357, to end within the 10 min"),
    (60, 120.0, 1, 0.01, True, "one step takes about 2 min, longer than the 60 s you allowed"),
])
def test_a_time_limit_cuts_the_run_to_what_fits_in_it(limit, step_s, steps, epochs, capped, said):
    length = plan_length.within(plan_length.choose(950, 50, 119), step_s, limit, 119)
    assert (length.steps, length.epochs, length.capped, length.stop_early) == (steps, epochs, capped, 3)
    assert length.reasons[0].startswith("Length: 3 epochs")
    assert [r for r in length.reasons if r.startswith("Time: ")] == ([] if said is None else [length.reasons[-1]])
    assert said is None or said in length.reasons[-1], length.reasons


def test_the_plan_cuts_to_a_time_limit_and_says_so():
    free = planner.make_plan(CPU_ONLY, SMOL, [200] * 400)
    limit = free.total_time_s / 2
    plan = planner.make_plan(CPU_ONLY, SMOL, [200] * 400, planner.Wishes(time_limit_s=limit))
    assert plan.time_capped and plan.time_limit_s == limit and plan.total_time_s <= 0.9 * limit
    assert plan.total_steps == int(0.9 * limit / plan.step_time_s) < free.total_steps
    steps_line = next(line for line in plan_text.describe(plan) if line.startswith("Steps:"))
    assert steps_line.startswith(f"Steps: {plan.total_steps} ({plan.epochs:g} epochs, to end within "), steps_line
    said = [r for r in plan.reasons if r.startswith(("Length:", "Time:"))]  # the length's sentences, in order
    assert [r.split(":")[0] for r in said] == ["Length", "Time"]


def test_a_separate_validation_set_holds_nothing_out_and_a_share_is_planned_as_asked():
    own = planner.make_plan(CPU_ONLY, SMOL, [40] * 60, planner.Wishes(micro_batch=8, eval_rows=8,
                                                                      eval_source="acme/qa:validation"))
    assert (own.total_steps, own.epochs, own.stop_early) == (56, 7, 3)  # 60 rows train: 8 steps a pass
    assert any(r.startswith("Validation on acme/qa:validation (8 rows), so every training row trains") for r in
               own.reasons)
    share = planner.make_plan(CPU_ONLY, SMOL, [40] * 100, planner.Wishes(micro_batch=8, eval_fraction=0.3,
                                                                         epochs=1))
    assert share.total_steps == 9  # 70 rows train (not the rule's 90)


def test_a_separate_validation_set_is_sampled_when_large():
    from core.data import split
    from core.data.example import Example
    from core.data.rows import Rows

    def rows(n):
        return Rows(n, "d", kept=[Example(source=f"v.jsonl:{i}", messages=None, text=f"row {i}") for i in range(n)])

    small, why = split.separate(rows(12), "v.jsonl", seed=1)
    assert len(small) == 12 and why == "validation on the 12 rows of v.jsonl; every training row trains"
    big, why = split.separate(rows(1000), "v.jsonl", seed=1)
    assert len(big) == split.AUTO_MAX == len({e.source for e in big}) and "256 of the 1,000 rows" in why
    assert [e.source for e in big] == [e.source for e in split.separate(rows(1000), "v.jsonl", seed=1)[0]]
