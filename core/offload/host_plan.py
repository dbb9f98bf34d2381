"""What the planner says about what lives off the GPU: the time the host optimizer (core.offload.host_adam)
adds to a step, from the link's bandwidth and the CPU's measured AdamW rate; what spilling LISA's state
costs on disk; what streaming weights costs per micro-batch, and whether a layer-major step
(core/offload/layer_major.py) should cut it. Torch-free, like the rest of the planner."""

from __future__ import annotations

import dataclasses

from core import memory_model as mm
from core import speed_model
from core.hardware import HardwareProfile
from core.model_shape import ModelShape

# The host AdamW (bf16 gradients in, fp32 state): measured on the project's 2-core machine, 115 M weights/s
# with 2 threads. It is memory-bound, so many cores help less than this assumes.
CPU_ADAM_WEIGHTS_PER_S_PER_CORE = 5.5e7


def optimizer_seconds(shape: ModelShape, setup: mm.Setup, hw: HardwareProfile, gpu) -> tuple[float, str]:
    """Time the host optimizer adds to a step, and the sentence that says where it comes from. Counted as not
    overlapping backward: with gradient clipping on (the default) the updates wait for the global norm."""
    trainable = mm.trainable_params(shape, setup)
    moved = 2 * trainable * setup.compute_bytes  # gradients to RAM, updated weights back
    link = speed_model.pcie_bytes_per_s(gpu) if gpu else 0.0
    copies = moved / link if link else 0.0
    cores = max(1, hw.cores_physical)
    update = trainable / (CPU_ADAM_WEIGHTS_PER_S_PER_CORE * cores)
    where = (f"{moved / 1e9:.1f} GB over PCIe each step (gradients to RAM, weights back) at about "
             f"{link / 1e9:.0f} GB/s ({speed_model.pcie_source(gpu)}), {copies:.2f} s" if link
             else "no PCIe copies (no GPU)")
    why = (f"Optimizer on the host: {where}; the CPU's AdamW over {trainable / 1e6:.0f}M weights on {cores} "
           f"cores, about {update:.2f} s. With gradient clipping on, updates start once backward has every "
           "gradient (clipping needs their global norm; the copies still overlap backward); max_grad_norm 0 lets "
           "each layer update as its gradient arrives.")
    return copies + update, why


def spill_costs(shape: ModelShape, setup: mm.Setup, options: dict, est: mm.Estimate, reasons: list) -> None:
    """LISA's spilled optimizer state: the scratch file, the checkpoints that hold it, and the drive's wear."""
    spilled = 12 * shape.decoder_params  # fp32 master and two moments of every layer, at most
    est.disk["spilled optimizer state (scratch file)"] = spilled
    est.disk["checkpoints"] = est.disk.get("checkpoints", 0) + (setup.keep_checkpoints + 1) * spilled
    per_switch = 12 * shape.largest_blocks(setup.lisa_layers)
    interval = options.get("interval", 20)
    reasons.append(f"Spilled optimizer state: each switch of layers writes {per_switch / 1e9:.1f} GB to the disk "
                   f"(about {per_switch / interval / 1e9:.2f} GB a step, as wear); the scratch file grows to "
                   f"{spilled / 1e9:.0f} GB and every checkpoint keeps the spilled state too.")


def activation_seconds(shape: ModelShape, setup: mm.Setup, gpu) -> tuple[float, str]:
    """Time `activations_on_host` adds to a micro-batch, and the sentence for the plan. The copies out run on a
    side stream beside forward (core/offload/activations.py), so only the copies back are counted: backward
    brings each one back while it works on the one before, which hides most of them, but not measurably so yet,
    and the run's measured time per step corrects the next plan."""
    moved = mm.activations_moved(shape, setup)
    link = speed_model.pcie_bytes_per_s(gpu)
    seconds = moved / link
    return seconds, (f"Activations in RAM: {moved / 1e9:.2f} GB a micro-batch goes to pinned RAM during forward "
                     f"(beside the compute) and comes back in backward at about {link / 1e9:.0f} GB/s "
                     f"({speed_model.pcie_source(gpu)}), about {seconds:.2f} s of waiting.")


def streaming_reason(shape: ModelShape, setup: mm.Setup, hw: HardwareProfile, gpu) -> str:
    """The copy time of streamed weights (offload, LISA's stream_frozen) per micro-batch, or per step when it is
    layer-major, and which bandwidth it comes from (as speed_model.micro_batch_seconds counts it)."""
    per = "step" if setup.layer_major else "micro-batch"
    moved = speed_model.streamed_bytes(shape, setup) * (setup.accumulation if setup.layer_major else 1)
    link, source = speed_model.stream_link(setup, hw, gpu)
    return (f"Streaming: each {per} brings {moved / 1e9:.1f} GB of frozen layer weights to the GPU (forward and "
            f"backward) at about {link / 1e9:.1f} GB/s ({source}), at least {moved / link:.2f} s; compute overlaps "
            f"it, so a {per} takes the longer of the two.")


def layer_major(shape: ModelShape, setup: mm.Setup, grad_accum: int, fits, auto: bool) -> tuple[mm.Setup, str]:
    """(the setup, why) with a layer-major step where weights stream, a step has several micro-batches and the
    inputs it keeps for all of them still fit (`fits(estimate)`), unless the person chose (not `auto`); else
    `setup` as it was and ''."""
    if setup.layer_major:  # asked for: it keeps the inputs of, and streams once for, all of a step's micro-batches
        return dataclasses.replace(setup, accumulation=grad_accum), ""
    if not auto or grad_accum < 2 or not speed_model.streamed_bytes(shape, setup):
        return setup, ""
    major = dataclasses.replace(setup, layer_major=True, accumulation=grad_accum)
    est = mm.estimate(shape, major)
    if not fits(est):
        return setup, ""
    kept = next(v for k, v in est.device.items() if k.startswith("activations"))
    return major, (f"Layer-major steps: the {grad_accum} micro-batches of a step pass through each layer before the "
                   f"next, so each streamed layer crosses to the GPU once per step each way instead of {grad_accum} "
                   f"times; the inputs kept for them take {kept / 2**30:.2f} GiB (--option layer_major=false turns "
                   "it off).")
