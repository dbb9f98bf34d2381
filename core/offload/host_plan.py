"""What the planner says about trainable state kept off the GPU (core.offload.host_adam, spill): the
time the host optimizer adds to a step, from the link's bandwidth and the CPU's measured AdamW rate,
and what spilling LISA's state costs on disk. Torch-free, like the rest of the planner."""

from __future__ import annotations

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
    spilled = 12 * shape.layers * shape.block_params  # fp32 master and two moments of every layer, at most
    est.disk["spilled optimizer state (scratch file)"] = spilled
    est.disk["checkpoints"] = est.disk.get("checkpoints", 0) + setup.keep_checkpoints * spilled
    per_switch = 12 * min(setup.lisa_layers, shape.layers) * shape.block_params
    interval = options.get("interval", 20)
    reasons.append(f"Spilled optimizer state: each switch of layers writes {per_switch / 1e9:.1f} GB to the disk "
                   f"(about {per_switch / interval / 1e9:.2f} GB a step, as wear); the scratch file grows to "
                   f"{spilled / 1e9:.0f} GB and every checkpoint keeps the spilled state too.")


def activation_seconds(shape: ModelShape, setup: mm.Setup, gpu) -> tuple[float, str]:
    """Time `activations_on_host` adds to a micro-batch (copies out in forward, back in backward; counted in
    full, though compute hides part of it), and the sentence for the plan."""
    moved = mm.activations_moved(shape, setup)
    link = speed_model.pcie_bytes_per_s(gpu)
    seconds = 2 * moved / link
    return seconds, (f"Activations in RAM as you asked: {moved / 1e9:.2f} GB a micro-batch goes to pinned RAM in "
                     f"forward and back in backward at about {link / 1e9:.0f} GB/s ({speed_model.pcie_source(gpu)}), "
                     f"about {seconds:.2f} s.")


def streaming_reason(shape: ModelShape, setup: mm.Setup, hw: HardwareProfile, gpu) -> str:
    """The copy time per micro-batch of streamed weights (offload, LISA's stream_frozen), and which bandwidth it
    comes from (as speed_model.micro_batch_seconds counts it)."""
    moved = speed_model.streamed_bytes(shape, setup)
    link, source = speed_model.stream_link(setup, hw, gpu)
    return (f"Streaming: each micro-batch brings {moved / 1e9:.1f} GB of frozen layer weights to the GPU (forward "
            f"and backward) at about {link / 1e9:.1f} GB/s ({source}), at least {moved / link:.2f} s; compute "
            "overlaps it, so a micro-batch takes the longer of the two.")
