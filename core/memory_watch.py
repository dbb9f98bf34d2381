"""The trainer's view of its own memory: the true peak, a cap it holds itself to, what counts as
running out, and the calibration record that compares the peak with the plan's estimate.

Kept apart from the trainer script so each piece reads on its own; only the trainer calls these.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import KnownError

GIB = 1024**3


def current_bytes(device) -> int:
    """For the step events: torch's peak so far on CUDA, the process's resident size on the CPU."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import psutil

    return int(psutil.Process().memory_info().rss)


def peak_bytes(device) -> dict:
    """The true peak so far: torch's allocator on CUDA, the process's high-water mark on the CPU."""
    import torch

    if device.type == "cuda":
        return {"allocated": int(torch.cuda.max_memory_allocated(device)),
                "reserved": int(torch.cuda.max_memory_reserved(device))}
    return {"process": process_peak_bytes()}


def process_peak_bytes() -> int:
    """This process's resident high-water mark. On Linux VmHWM, which starts again when the trainer re-execs
    itself after a re-plan (ru_maxrss would carry the failed attempt's peak across the exec); Windows' peak
    working set; elsewhere ru_maxrss (bytes on macOS)."""
    import re

    status = Path("/proc/self/status")
    if status.is_file():
        found = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
        if found:
            return int(found.group(1)) * 1024
    import psutil

    info = psutil.Process().memory_info()
    if hasattr(info, "peak_wset"):
        return int(info.peak_wset)
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def start_training_peak(device) -> int | None:
    """On the CPU under Linux: the process's high-water mark so far (loading the model: the checkpoint's pages
    mapped while it is read, the 16-bit weights converted or quantized one by one) and a fresh start for it,
    so the calibration compares the training steps with the plan's terms, which model training, not loading.
    None where the mark cannot be reset (CUDA counts its own peak; other systems keep theirs)."""
    clear = Path("/proc/self/clear_refs")
    if device.type != "cpu" or not clear.exists():
        return None
    loading = process_peak_bytes()
    try:
        clear.write_text("5")  # Linux 4.0 on: resets VmHWM to the current resident size
    except OSError:
        return None
    return loading


def ram_short_of_plan(plan: dict, available: int, resident: int, cap: int = 0) -> bool:
    """The RAM this process may reach (what it holds and what the system has free, or the cap) is short of the
    CPU plan's peak, allocator slack included (as the planner compares them; a calibration correction counts)."""
    terms = plan.get("memory", {})
    if "allocator slack" not in terms or plan.get("device") != "cpu":
        return False
    return sum(terms.values()) > (min(cap, available + resident) if cap else available + resident)


def lean_heap_if_short(plan: dict, device, cap: int = 0) -> str | None:
    """Before loading, on the CPU: where RAM is short of the plan, freed blocks go back to the system at once
    (`return_freed_blocks`), which gives up the plan's allocator slack for slower steps (measured on the default
    model: 0.5 GiB less, steps 1.3× as long with LoRA). The sentence to show, or None."""
    import psutil

    if device.type != "cpu":
        return None
    process = psutil.Process().memory_info().rss
    if not ram_short_of_plan(plan, psutil.virtual_memory().available, process, cap):
        return None
    if not return_freed_blocks(device):
        return None
    slack = plan["memory"]["allocator slack"] / GIB
    return (f"RAM is short of the plan: freed memory goes back to the system at once ({slack:.1f} GiB less at "
            "the peak; steps take longer)")


GLIBC_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value


def return_freed_blocks(device) -> bool:
    """Training on the CPU under glibc: every block of 128 KiB or more gets its own mapping, so memory freed
    during a step (activations, logits, gradients) goes back to the system at once. True where that was set.

    Why: glibc starts that way but raises the threshold each time such a block is freed (up to 32 MiB), after
    which a step's tensors come from the heap, which keeps what is freed and fragments. Measured on the default
    model (LoRA, micro-batch 8 × 80 tokens, fp32): the resident peak rose 2.73 → 3.14 → 3.28 GiB over three
    steps, against a flat 2.16 GiB with the threshold held (the plan says 2.25). Not on a GPU: there the big
    host buffers are pinned (outside malloc) and the cost of mapping each block has not been measured."""
    import ctypes

    if device.type != "cpu" or not on_glibc():  # musl, macOS and Windows hand large blocks back themselves
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(GLIBC_M_MMAP_THRESHOLD, MMAP_THRESHOLD))  # also stops the raising
    except (OSError, AttributeError):
        return False


def on_glibc() -> bool:
    """This process's C library is glibc (Linux distributions but Alpine's)."""
    import os

    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows), or no such name (macOS)
        return False


def apply_cap(cap_bytes: int, device) -> None:
    """Hold this process to `cap_bytes` on its device, so going over is a clean out-of-memory error that
    the app re-plans from, not a frozen desktop or another program's crash."""
    if not cap_bytes:
        return
    import torch

    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total), device)
        return
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the cap is only planned for
        return
    used = _data_segment_bytes()
    if used and used >= cap_bytes:
        raise KnownError(f"The memory cap ({cap_bytes / GIB:.2f} GiB) is below what the trainer "
                         f"already uses before loading the model ({used / GIB:.2f} GiB); raise it.")
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (cap_bytes, hard))


def _data_segment_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    # On the CPU torch's allocator raises a plain RuntimeError when malloc fails.
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error))


def calibration(plan: dict, device, run_id: str, seconds_per_step: float, loading_peak: int | None = None,
                lean_heap: bool = False, others: float | None = None) -> dict:
    """Measured peak against the plan's estimate, like for like: torch-allocated bytes against the
    estimate without the CUDA context and allocator slack; on the CPU, the process against all terms
    (its peak since `start_training_peak`, whose `loading_peak` is kept beside it), less the allocator slack
    where the heap was kept lean (`lean_heap_if_short`).
    The time per step is compared too, since the speed model's rates are data-sheet guesses; not with a lean
    heap, whose slower steps would teach the next plan the wrong speed, nor when other programs took more
    than cpu_share.OTHERS_MAX of the CPU (`others`, measured over the same steps) for the same reason."""
    import torch

    from core import cpu_share

    measured = peak_bytes(device)
    terms = plan.get("memory", {})
    if device.type == "cuda":
        predicted = sum(v for k, v in terms.items() if k not in ("CUDA context", "allocator slack",
                                                                   "calibration correction"))
        got = measured["allocated"]
    else:
        left_out = ("calibration correction", "allocator slack") if lean_heap else ("calibration correction",)
        predicted = sum(v for k, v in terms.items() if k not in left_out)
        got = measured["process"]
    factor = got / predicted if predicted else None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    # Against the speed model's own figure: the plan's step time was already scaled by an earlier run's factor,
    # and measuring against that would swing the next plan the other way (×0.1, then ×10, ...).
    predicted_s = (plan.get("step_time_s") or 0) / float((plan.get("calibration") or {}).get("time_factor") or 1.0)
    if loading_peak is not None:
        measured["loading"] = loading_peak
    busy = cpu_share.pace_note(others)
    kept = predicted_s and not lean_heap and not busy
    return {"device": name, "predicted_bytes": predicted, "measured": measured,
            "factor": round(factor, 4) if factor else None, "source": f"run {run_id} on {name}",
            "seconds_per_step": round(seconds_per_step, 4), "predicted_seconds_per_step": round(predicted_s, 4),
            "time_factor": round(seconds_per_step / predicted_s, 4) if kept else None,
            **({"lean_heap": True} if lean_heap else {}),
            **({"others": round(others, 3)} if others is not None else {}), **({"pace_note": busy} if busy else {})}
