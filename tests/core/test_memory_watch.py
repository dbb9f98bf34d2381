"""The CPU calibration measures training, not loading: the process's high-water mark starts again once the
model is loaded (Linux), and loading's own peak is kept beside it. Training on the CPU gives freed blocks back
to the system (glibc), so a step's peak does not grow with each step."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import memory_watch

MIB = 1024**2
GIB = 1024**3


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="resetting the high-water mark is Linux's")
def test_the_training_peak_starts_after_loading():
    block = bytearray(300 * MIB)  # filled, so every page was resident: what loading leaves behind in the mark
    del block
    loading = memory_watch.start_training_peak(torch.device("cpu"))
    assert loading is not None and loading >= 300 * MIB
    assert memory_watch.process_peak_bytes() < loading - 200 * MIB  # the mark starts from where the process is now
    kept = bytearray(100 * MIB)
    assert memory_watch.process_peak_bytes() >= 100 * MIB  # and follows what training does from there
    del kept
    measured = memory_watch.calibration({"memory": {"weights": 10 * MIB}}, torch.device("cpu"), "r", 1.0, loading)
    assert measured["measured"]["loading"] == loading and measured["factor"] > 1


def test_on_a_gpu_nothing_is_reset():
    assert memory_watch.start_training_peak(torch.device("cuda")) is None


# A freed 8 MiB block (glibc raises its threshold past it), then 256 blocks of 1 MiB of which all but the last are
# freed: what the process still holds of them, in MiB.
FRAGMENTS = r"""
import sys, torch
from core import memory_watch
held = memory_watch.return_freed_blocks(torch.device(sys.argv[1]))
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
big = torch.ones(2 << 20)
del big
blocks = [torch.ones(1 << 18) for _ in range(256)]
before = rss()
del blocks[:-1]
print(held, round(before - rss()))
"""
@pytest.mark.skipif(not memory_watch.on_glibc() or not Path("/proc/self/statm").exists(),
                    reason="glibc's allocator, on Linux")
@pytest.mark.parametrize("device, held", [("cpu", True), ("cuda", False)])
def test_training_on_the_cpu_gives_freed_blocks_back(device, held):
    from tests.conftest import REPO

    out = subprocess.run([sys.executable, "-c", FRAGMENTS, device], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == str(held)
    given_back = int(out[1])
    assert given_back >= 200 if held else given_back < 50, out  # glibc's default keeps them in its heap


def test_the_heap_is_kept_lean_only_where_ram_is_short_of_the_plan():
    plan = {"device": "cpu", "memory": {"weights": 4 * GIB, "activations": 2 * GIB, "allocator slack": 1 * GIB,
                                        "Python, torch and libraries": GIB // 2}}
    short = memory_watch.ram_short_of_plan
    assert not short(plan, available=7 * GIB, resident=GIB)  # 7.5 GiB at the peak, 8 within reach
    assert short(plan, available=6 * GIB, resident=GIB)
    assert short(plan, available=64 * GIB, resident=GIB, cap=7 * GIB)
    assert not short(plan, available=64 * GIB, resident=GIB, cap=8 * GIB)
    assert not short({**plan, "device": "cuda"}, available=GIB, resident=GIB)  # a GPU plan's RAM is not the device
    no_slack = {"device": "cpu", "memory": {k: v for k, v in plan["memory"].items() if k != "allocator slack"}}
    assert not short(no_slack, available=GIB, resident=GIB)  # a plan from before the slack was counted


def test_a_lean_heap_is_calibrated_without_the_slack():
    plan = {"memory": {"weights": 100 * MIB, "allocator slack": 100 * MIB}, "step_time_s": 2.0}
    fat = memory_watch.calibration(plan, torch.device("cpu"), "r", 1.0)
    lean = memory_watch.calibration(plan, torch.device("cpu"), "r", 1.0, lean_heap=True)
    assert (fat["predicted_bytes"], lean["predicted_bytes"]) == (200 * MIB, 100 * MIB)
    assert not fat.get("lean_heap") and lean["lean_heap"]
    assert lean["time_factor"] is None  # its steps are slower on purpose: no lesson for the next plan's speed


def test_the_time_factor_is_measured_against_the_speed_models_own_estimate():
    """A plan already scaled by an earlier run's time factor: the next factor corrects the speed model, not
    that plan, or plans would swing (×0.1, ×10, ...) from run to run."""
    plan = {"memory": {"weights": 100 * MIB}, "step_time_s": 4.0, "calibration": {"time_factor": 2.0}}
    measured = memory_watch.calibration(plan, torch.device("cpu"), "r", 3.0)
    assert (measured["predicted_seconds_per_step"], measured["time_factor"]) == (2.0, 1.5)
    plain = memory_watch.calibration({**plan, "calibration": {}}, torch.device("cpu"), "r", 3.0)
    assert plain["time_factor"] == 0.75
