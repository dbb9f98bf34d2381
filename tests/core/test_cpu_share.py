"""The share of the CPU other programs took while a run measured its pace (core/cpu_share.py), measured for real:
a busy child process is another program until it is waited for; this process's own work is not."""

import os
import subprocess
import sys
import time

import pytest
import torch

from core import cpu_share, memory_watch

SPIN = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"


def _spin_here(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


@pytest.mark.alone  # (it measures the load of every program on the machine)
def test_busy_programs_beside_the_run_are_counted_and_the_runs_own_work_is_not():
    load = cpu_share.OtherLoad()
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN.format(s=1.5)]) for _ in range(os.cpu_count() or 1)]
    time.sleep(1.2)  # while every core runs another program's loop
    busy = load.share()
    for p in spinners:
        p.wait()
    assert busy is not None and busy > 0.6, busy
    assert cpu_share.pace_note(busy) and f"{busy:.0%}" in cpu_share.pace_note(busy)

    load.restart()
    _spin_here(1.0)  # one core of ours, the others idle (the test runs alone: `make test` runs it after the rest)
    ours = load.share()
    assert ours is not None and ours < cpu_share.OTHERS_MAX, ours
    assert cpu_share.pace_note(ours) is None


def test_a_pace_measured_on_a_busy_machine_is_not_kept_but_its_peak_is():
    plan = {"memory": {"weights": 10 << 20}, "step_time_s": 1.0}
    quiet = memory_watch.calibration(plan, torch.device("cpu"), "r", 2.0, others=0.05)
    busy = memory_watch.calibration(plan, torch.device("cpu"), "r", 2.0, others=0.5)
    assert quiet["time_factor"] == 2.0 and quiet["others"] == 0.05 and "pace_note" not in quiet
    assert busy["time_factor"] is None and busy["factor"] == quiet["factor"]  # the memory measurement stays
    assert busy["others"] == 0.5 and "50% of the CPU" in busy["pace_note"]
    assert cpu_share.pace_note(cpu_share.OTHERS_MAX) is None  # at the line, the pace is kept
