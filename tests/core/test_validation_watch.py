"""The validation watch counts checks without a new low, says when to stop early, and on resume goes on from
what the checkpoint recorded (the writing of best/ itself is tested through real runs in tests/app)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from core import results
from core.validation_watch import STATE_KEY, Watch


def config(run_dir, patience: int = 0):
    return SimpleNamespace(run_dir=str(run_dir), keep_best=False, stop_early=patience)


@pytest.mark.parametrize("losses, patience, lowest, stops_after", [
    ([3.0, 2.0, 2.5, 2.1, 1.9, 2.0, 2.2], 2, [True, True, False, False, True, False, False], 4),
    ([3.0, 2.0, 2.5, 2.1, 1.9, 2.0, 2.2], 3, [True, True, False, False, True, False, False], None),
    ([3.0, 3.0, 3.0], 2, [True, False, False], 3),  # equal is not lower
    ([3.0, 2.5, 2.0, 1.5], 1, [True, True, True, True], None),
    ([3.0, 3.5, 4.0], 0, [True, False, False], None),  # 0: never stops
])
def test_checks_without_a_new_low_are_counted(tmp_path, losses, patience, lowest, stops_after):
    watch = Watch.start(config(tmp_path, patience), None, 0)
    seen, stopped = [], None
    for i, loss in enumerate(losses, 1):
        seen.append(watch.check(None, i * 10, loss))
        if watch.tired and stopped is None:
            stopped = i
    assert seen == lowest and stopped == stops_after
    assert watch.best_loss == min(losses) and watch.best_step == 10 * (losses.index(min(losses)) + 1)
    if stopped:
        assert f"{patience} validation checks in a row" in watch.why_stopped(stopped * 10)


def best_at(run_dir, step: int) -> None:
    (run_dir / "best").mkdir(exist_ok=True)
    (run_dir / "best" / results.MARK).write_text(json.dumps({"step": step, "loss": 1.0}))


@pytest.mark.parametrize("best_step, resumed_step, stays", [
    (40, 50, True),  # written before the checkpoint: still the run's
    (60, 50, False),  # written after it: those steps are trained again
    (50, 50, True),
])
def test_resuming_keeps_the_count_and_drops_a_best_from_steps_trained_again(tmp_path, best_step, resumed_step, stays):
    best_at(tmp_path, best_step)
    state = {STATE_KEY: {"best_loss": 1.5, "best_step": 40, "since": 1}}
    watch = Watch.start(config(tmp_path, 2), state, resumed_step)
    assert (watch.best_loss, watch.best_step, watch.since) == (1.5, 40, 1)
    assert (results.best_of(tmp_path) is not None) == stays
    assert not watch.check(None, resumed_step + 10, 1.6) and watch.tired  # the second check in a row without a low


def test_a_fresh_start_drops_an_earlier_start_s_best(tmp_path):
    best_at(tmp_path, 10)
    Watch.start(config(tmp_path), None, 0)
    assert results.best_of(tmp_path) is None and not (tmp_path / "best").exists()
