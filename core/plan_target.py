"""The machine-side facts a plan is made against: which device and GPU, in what precision, how much
of its memory the plan may use, and the calibration measured by earlier runs.

Kept apart from the planner so the planner reads as its decisions; the re-planner makes its own
target (with the crash's correction) through the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core import memory_model as mm
from core import objectives, strategies
from core.hardware import GPU, HardwareProfile, busy_words
from tuneforge_kernels import toolchain

if TYPE_CHECKING:
    from core.planner import Wishes

GIB = 1024**3
HEADROOM = 0.95  # plan to use at most 95% of a device's free memory...
MIN_SPARE = GIB // 2  # ...and leave at least this much (or 10% of a small limit) for spikes and model error;
# calibration and the OOM re-plan catch the rest
BUSY_PCT = 20  # a GPU this busy with other programs when profiled is said to be in use (a desktop idles below)
CPU_RAM_SHARE = 0.8  # of the RAM available now, when training on the CPU


@dataclass
class Target:
    """The machine-side facts a plan is made against."""

    device: str
    gpu: GPU | None
    precision: str
    limit: int
    ram_limit: int
    disk_free: int
    factor: float  # calibration: multiply estimated device bytes by this
    factor_source: str = ""  # what measured it
    time_factor: float = 1.0  # calibration: multiply estimated step time by this
    fused_loss: bool = True  # our fused linear cross-entropy is among the kernels asked for (all are by default)
    keep_best: bool | None = None  # the wish; None: kept unless it alone would not fit the disk (core.planner)
    pairs: bool = False  # a pair objective (core/objectives): two sequences an example
    held: int = 1  # sequences an example holds for backward (objectives.sequences_held)

    def setup(self, strategy: str, micro_batch: int, seq_len: int, checkpointing: bool, options: dict,
              on_disk: bool = False) -> mm.Setup:
        s = strategies.get(strategy, need_built=False)
        opts = s.options(options)
        on_disk = on_disk or getattr(opts, "where", "auto") == "disk"  # the person asked for NVMe
        # micro_batch counts examples; the memory model counts sequences, two an example for a preference pair
        # (one for a rated answer: its mismatched row's forward pass keeps nothing for backward).
        return mm.Setup(strategy, micro_batch * self.held, seq_len,
                        compute_bytes=4 if self.precision == "fp32" else 2,
                        checkpointing=checkpointing, on_gpu=self.device == "cuda", weights_on_disk=on_disk,
                        keep_best=self.keep_best is not False,  # the kernels run on CUDA only (pairs included:
                        fused_loss=self.device == "cuda" and self.fused_loss,  # each token's loss, pairs.score)
                        **s.setup_fields(opts, self.device))

    @property
    def usable(self) -> int:
        spare = max(self.limit * (1 - HEADROOM), min(MIN_SPARE, self.limit * 0.1))
        return int(self.limit - spare)

    def fits(self, est: mm.Estimate) -> bool:
        return (est.device_total * self.factor <= self.usable and est.ram_total <= self.ram_limit
                and self.disk_needed(est) <= self.disk_free)

    def disk_needed(self, est: mm.Estimate) -> int:
        """The run folder's bytes, without the lowest validation's weights when those are ours to drop."""
        return est.disk_total - (est.disk.get(mm.BEST_ON_DISK, 0) if self.keep_best is None else 0)


def target_for(hw: HardwareProfile, w: "Wishes", calibration: dict | None, reasons: list, warnings: list) -> Target:
    gpu = _pick_gpu(hw, w, reasons, warnings)
    device = w.device or ("cuda" if gpu else "cpu")
    if device == "cuda" and not gpu:
        warnings.append("CUDA was asked for but no GPU was found; the run would fail to start.")
    ram_limit = int(hw.ram_available_bytes * CPU_RAM_SHARE) if hw.ram_available_bytes else 0
    if device == "cuda":
        precision = "bf16" if gpu and gpu.bf16 else "fp16"
        reasons.append(f"Training on {gpu.name if gpu else 'the GPU'} in {precision}"
                       + (" (it supports bf16)." if precision == "bf16" else " (no bf16 on this GPU)."))
        limit = (gpu.free_bytes or gpu.total_bytes) if gpu else 0
        if gpu and ((gpu.busy_pct or 0) >= BUSY_PCT or gpu.other_programs):
            warnings.append(f"GPU {gpu.index} was in use when profiled ({busy_words(gpu)}): steps run slower than "
                            f"planned while that goes on, and the plan counts the {limit / GIB:.1f} GiB that was "
                            "free then; close what runs there for the plan's pace, or plan again once it is done.")
    else:
        precision, limit = "fp32", ram_limit
        where = "Training on the CPU as you asked, though there is a GPU," if w.device == "cpu" and hw.gpus else \
            "No GPU: training on the CPU"
        reasons.append(f"{where} in fp32 (CPUs lack fast 16-bit math); expect it to be slow.")
    if w.memory_cap_bytes:
        limit = min(limit, w.memory_cap_bytes)
        reasons.append(f"Memory capped at {w.memory_cap_bytes / GIB:.2f} GiB as you asked.")
    factor = 1.0
    calibration = calibration or {}
    if calibration.get("factor"):
        factor = float(calibration["factor"])
        reasons.append(f"Memory estimates scaled by ×{factor:.2f}, measured on {calibration.get('source', 'a run')}.")
    time_factor = float(calibration.get("time_factor") or 1.0)
    if time_factor != 1.0:
        measured = calibration.get("time_source") or calibration.get("source", "a run")  # a median names its runs
        reasons.append(f"Time per step scaled by ×{time_factor:.2f}, measured on {measured}.")
    return Target(device, gpu if device == "cuda" else None, precision, limit, ram_limit or 1 << 62,
                   hw.disk_free_bytes or 1 << 62, factor, calibration.get("source", ""), time_factor,
                   fused_loss=(w.kernels is None or "cross_entropy" in w.kernels) and not too_old(gpu),
                   keep_best=w.keep_best, pairs=objectives.learns_pairs(w.objective or "sft"),
                   held=objectives.sequences_held(w.objective or "sft"))


def too_old(gpu: GPU | None) -> str | None:
    """Why our kernels cannot run on `gpu` at all (tuneforge_kernels.toolchain's rule), for the plan to count and say."""
    return toolchain.gpu_too_old(gpu.name, toolchain.capability_of(gpu.compute_capability)) if gpu else None


def _pick_gpu(hw: HardwareProfile, w: "Wishes", reasons: list, warnings: list) -> GPU | None:
    if not hw.gpus or w.device == "cpu":
        return None
    if w.gpu_index is not None:
        match = [g for g in hw.gpus if g.index == w.gpu_index]
        if not match:
            warnings.append(f"There is no GPU {w.gpu_index}; GPUs here: "
                            + ", ".join(str(g.index) for g in hw.gpus) + ". Planning for GPU 0.")
            return hw.gpus[0]
        if len(hw.gpus) > 1:
            reasons.append(f"GPU {w.gpu_index} ({match[0].name}) as you asked.")
        return match[0]
    best = max(hw.gpus, key=lambda g: (g.free_bytes or g.total_bytes, -g.index))
    if len(hw.gpus) > 1:
        reasons.append(f"{len(hw.gpus)} GPUs here; planning for GPU {best.index} ({best.name}), the one with the "
                       "most free memory. Training uses one GPU; --gpu N picks another.")
    return best
