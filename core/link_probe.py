"""Measure the link between host RAM and a GPU: one pinned copy each way, timed on the GPU.

Streaming weights and keeping the optimizer on the host cost what the copies cost, and NVML's PCIe
generation × width is only a ceiling: the card may sit in a slot wired with fewer lanes, behind a
chipset, or report a slower generation while idle. So the planner uses this measured figure when the
profile has it (core.speed_model.pcie_bytes_per_s). Like the disk probe, the result is cached in the
history per GPU, so a start of the app does not repeat it.

`profile_machine` runs the measurement in a child process (`python -m core.link_probe INDEX`): a CUDA
context made in the app's own process would stay for the app's life and take GPU memory from the
trainer. `benchmarks/offload_gpu.py` times its copies with `copy_bytes_per_s` too, so there is one
way of measuring the link.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from core import runtime_env

PROBE_BYTES = 256 << 20  # long enough that the copy engine's start-up cost is noise, short enough to be quick
REPEATS = 3  # best of three, after one warm-up copy
TIMEOUT_S = 120  # a child that takes longer has hung in the driver: the profile goes on without the figure


@dataclass
class LinkSpeed:
    h2d_bytes_per_s: float  # pinned host → GPU
    d2h_bytes_per_s: float  # GPU → pinned host
    probe_bytes: int


def device_id(gpu) -> str:
    """A GPU's cache key: its index, name and memory size (NVML's current PCIe generation is not in it, since
    a card lowers it when idle)."""
    return f"{gpu.index}:{gpu.name}:{gpu.total_bytes}"


def copy_bytes_per_s(nbytes: int, device: str = "cuda", to_host: bool = False, repeats: int = REPEATS) -> float:
    """Bytes/s of one copy of `nbytes` between pinned host memory and `device` ("cuda", "cuda:1"), best of
    `repeats` after a warm-up, timed with CUDA events; on the CPU a plain memory copy timed by the clock."""
    import torch

    cuda = torch.device(device).type == "cuda"
    host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=cuda)
    there = torch.empty(nbytes, dtype=torch.uint8, device=device)
    src, dst = (there, host) if to_host else (host, there)
    best = float("inf")
    for i in range(repeats + 1):
        if cuda:
            with torch.cuda.device(there.device):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                dst.copy_(src, non_blocking=True)
                end.record()
                end.synchronize()
                seconds = start.elapsed_time(end) / 1000
        else:
            started = time.perf_counter()
            dst.copy_(src)
            seconds = time.perf_counter() - started
        if i:  # the first copy is the warm-up (page tables, the copy engine's first use)
            best = min(best, seconds)
    return nbytes / max(best, 1e-9)


def measure(index: int = 0, nbytes: int = PROBE_BYTES) -> LinkSpeed | None:
    """Both directions of GPU `index`'s link, in this process; None without CUDA."""
    import torch

    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        return None
    device = f"cuda:{index}"
    return LinkSpeed(copy_bytes_per_s(nbytes, device), copy_bytes_per_s(nbytes, device, to_host=True), nbytes)


def measure_in_child(index: int) -> LinkSpeed | None:
    """`measure` in a child process (see the module's docstring); None when it cannot (no CUDA, a failure).
    `index` is NVML's, which counts GPUs in PCI bus order; CUDA is told to count the same way."""
    env = {**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    try:
        done = subprocess.run(runtime_env.module_command("core.link_probe", str(index)), capture_output=True,
                              text=True, timeout=TIMEOUT_S, env=env, cwd=Path(__file__).resolve().parent.parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or lines[-1] == "null":
        return None
    return LinkSpeed(**json.loads(lines[-1]))


def main(argv: list[str]) -> int:
    found = measure(int(argv[0]) if argv else 0)
    print(json.dumps(asdict(found) if found else None))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
