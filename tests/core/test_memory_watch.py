"""The CPU calibration measures training, not loading: the process's high-water mark starts again once the
model is loaded (Linux), and loading's own peak is kept beside it."""

from pathlib import Path

import pytest
import torch

from core import memory_watch

MIB = 1024**2


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
