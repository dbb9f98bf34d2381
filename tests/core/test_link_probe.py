"""The host↔GPU link measured (core.link_probe), cached in the history like the disk's speed, and used by the
speed model and the plan's reasons in place of the PCIe generation × width estimate."""

import dataclasses
import json

import pytest
import torch

from core import hardware, history, link_probe, memory_model, planner, speed_model
from core.model_shape import ModelShape
from tests.core.test_plan_offload_optimizer import LENGTHS, model, profile


def measured(name: str, h2d: float | None) -> hardware.HardwareProfile:
    hw = profile(name)
    hw.gpus[0].h2d_bytes_per_s = h2d
    hw.gpus[0].d2h_bytes_per_s = h2d
    return hw


def test_the_streamed_step_time_follows_the_measured_bandwidth():
    shape = ModelShape.from_config(model("llama-3.1-70b"))
    setup = memory_model.Setup("offload", 1, 256, compute_bytes=2, checkpointing=True, on_gpu=True,
                               quantized_base=True, lora_r=16, optimizer="adamw")
    times = {}
    for h2d in (20e9, 10e9):
        hw = measured("gpu-24gb", h2d)
        assert speed_model.pcie_bytes_per_s(hw.gpu) == h2d
        times[h2d] = speed_model.micro_batch_seconds(shape, setup, hw, hw.gpu, 256)
    moved = 2 * memory_model.layer_weight_bytes(shape, setup.weight_storage)
    assert times[20e9] == pytest.approx(moved / 20e9)  # copy-bound: 70B in 4-bit streams longer than it computes
    assert times[10e9] == pytest.approx(2 * times[20e9])
    unmeasured = profile("gpu-24gb").gpu
    assert speed_model.pcie_bytes_per_s(unmeasured) == pytest.approx(1.969e9 * 16 * speed_model.COPY_EFFICIENCY)


def test_the_plan_says_which_bandwidth_it_used():
    config, wishes = model("llama-3.1-8b"), planner.Wishes(strategy="lisa")
    plan = planner.make_plan(measured("gpu-24gb", 12.34e9), config, LENGTHS, wishes)
    speed = next(r for r in plan.reasons if r.startswith("Optimizer on the host"))
    assert "at about 12 GB/s (measured 12.3 GB/s host→device)" in speed
    guessed = planner.make_plan(profile("gpu-24gb"), config, LENGTHS, wishes)
    assert "(estimated from PCIe 4.0 ×16)" in next(r for r in guessed.reasons if r.startswith("Optimizer on the host"))
    assert guessed.step_time_s < plan.step_time_s  # 12.3 GB/s measured is slower than 25 estimated

    offload = planner.Wishes(strategy="offload")
    streamed = planner.make_plan(measured("gpu-24gb", 6e9), config, LENGTHS, offload)
    assert streamed.offload == "weights"
    assert any(r.startswith("Streaming:") and "at about 6.0 GB/s (measured 6.0 GB/s host→device)" in r
               for r in streamed.reasons), streamed.reasons
    from_disk = planner.make_plan(measured("gpu-24gb", 6e9), model("llama-3.1-70b"), LENGTHS, offload)
    assert from_disk.offload == "weights on disk"  # 37 GB of 4-bit weights, 32 GB of RAM: the disk is the bound
    assert any(r.startswith("Streaming:") and "(an assumed 1.5 GB/s from the unmeasured disk)" in r
               for r in from_disk.reasons)


def test_without_cuda_nothing_is_measured(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert link_probe.measure(0) is None


def test_the_link_is_measured_once_per_gpu_and_cached(tmp_path, monkeypatch):
    calls = []

    def fake(index):
        calls.append(index)
        return link_probe.LinkSpeed(20e9 + len(calls), 18e9, 1 << 20)

    monkeypatch.setattr(link_probe, "measure_in_child", fake)
    gpus = lambda: [hardware.GPU(0, "Card", 8 << 30, 8 << 30), hardware.GPU(1, "Card", 8 << 30, 8 << 30)]  # noqa: E731
    with history.History(tmp_path / "h.sqlite") as h:
        first = gpus()
        hardware._link_speeds(first, h, reprobe=False)
        assert calls == [0, 1] and [g.h2d_bytes_per_s for g in first] == [20e9 + 1, 20e9 + 2]
        again = gpus()
        hardware._link_speeds(again, h, reprobe=False)
        assert calls == [0, 1] and again == first  # from the cache
        hardware._link_speeds(gpus(), h, reprobe=True)
        assert calls == [0, 1, 0, 1]
    monkeypatch.setattr(link_probe, "measure_in_child", lambda index: None)  # no CUDA in the child
    with history.History(tmp_path / "other.sqlite") as h:
        none = gpus()
        hardware._link_speeds(none, h, reprobe=False)
        assert [g.h2d_bytes_per_s for g in none] == [None, None] and h.link_probe("0:Card:8589934592") is None


def test_profiles_round_trip_with_and_without_the_measured_link(tmp_path):
    hw = measured("gpu-24gb", 21.5e9)
    back = hardware.HardwareProfile.from_dict(json.loads(json.dumps(hw.to_dict())))
    assert back.gpu.h2d_bytes_per_s == 21.5e9 and back == dataclasses.replace(back, source=hw.source)
    older = hw.to_dict()  # as a version before the field wrote it (run.json's hardware, profile --json files)
    for g in older["gpus"]:
        del g["h2d_bytes_per_s"], g["d2h_bytes_per_s"]
    (tmp_path / "old.json").write_text(json.dumps(older))
    old = hardware.load(tmp_path / "old.json")
    assert old.gpu.h2d_bytes_per_s is None and "estimated" in speed_model.pcie_source(old.gpu)
    assert "GB/s" not in hardware.describe(old)[0] and "host→GPU 21.5 GB/s" in hardware.describe(hw)[0]


def test_a_copy_is_timed_on_the_cpu_too():
    assert link_probe.copy_bytes_per_s(1 << 20, "cpu", repeats=1) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_link_measures_a_positive_figure_both_ways():
    speed = link_probe.measure(0, nbytes=64 << 20)
    assert speed.h2d_bytes_per_s > 1e9 and speed.d2h_bytes_per_s > 1e9  # any PCIe link since 1.0 x16 beats 1 GB/s
    child = link_probe.measure_in_child(0)
    assert child is not None and child.h2d_bytes_per_s > 1e9
