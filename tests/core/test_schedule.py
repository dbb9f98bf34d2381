"""The learning-rate schedule, and its cut when a run is too slow for its time limit (core.training.LrSchedule)."""

import math

import pytest
import torch

from core import checkpoint
from core.training import LrSchedule


def test_warm_up_then_cosine_to_a_tenth():
    s = LrSchedule(100, 10)
    assert [s(k) for k in (0, 9)] == [pytest.approx(1 / 11), pytest.approx(10 / 11)]
    assert s(10) == 1.0 and s(55) == pytest.approx(0.55) and s(100) == pytest.approx(0.1) and s(150) == 0.1
    assert all(s(k) >= s(k + 1) for k in range(10, 120))


@pytest.mark.parametrize("at", [30, 60, 95])
def test_a_cut_past_the_warm_up_goes_on_from_where_it_is_and_ends_on_a_tenth(at):
    s = LrSchedule(100, 10)
    before = s(at)
    s.cut(at, at + 20, 2)
    assert s(at) == pytest.approx(before)  # no jump
    assert s(at + 20) == pytest.approx(0.1) and s(at + 10) == pytest.approx(0.1 + (before - 0.1) / 2)
    assert all(s(k) >= s(k + 1) for k in range(at, at + 25))
    s.cut(at + 10, at + 15, 1)  # a second cut (a resumed session that is slower still) bends again
    assert s(at + 10) == pytest.approx(0.1 + (before - 0.1) / 2) and s(at + 15) == pytest.approx(0.1)


def test_a_cut_within_the_warm_up_takes_the_shorter_runs_own_schedule():
    s = LrSchedule(100_000, 3_000)  # a warm-up no run of 40 steps would have
    s.cut(3, 40, 1)
    assert [s(k) for k in (0, 1, 40)] == [0.5, 1.0, pytest.approx(0.1)]
    assert s(3) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 2 / 39)))


def test_a_cut_is_kept_by_the_checkpoint_and_a_resume_follows_it(tmp_path):
    def session():
        layer = torch.nn.Linear(2, 2)
        opt = torch.optim.AdamW(layer.parameters(), lr=1e-3)
        return layer, opt, torch.optim.lr_scheduler.LambdaLR(opt, LrSchedule(1000, 30))

    layer, opt, sched = session()
    for _ in range(40):
        opt.step()
        sched.step()
    sched.lr_lambdas[0].cut(40, 60, 1)
    saved = checkpoint.save(tmp_path, 40, dict(layer.named_parameters()), opt, sched, {})
    layer2, opt2, sched2 = session()
    checkpoint.load(saved, dict(layer2.named_parameters()), opt2, sched2)
    for _ in range(20):
        for o, s in ((opt, sched), (opt2, sched2)):
            o.step()
            s.step()
        assert sched2.get_last_lr() == sched.get_last_lr()
    assert sched2.get_last_lr()[0] == pytest.approx(1e-4)  # ended at step 60, on a tenth of the peak
