"""How long a training step takes, before starting: FLOPs over a sustained rate, or copy time when
weights stream from RAM or NVMe (whichever is slower, since copies overlap compute).

The figures are rough by nature (a GPU's sustained rate depends on shapes, kernels and clocks); the
trainer's measured tokens/s replaces them as soon as a run has taken a few steps.
"""

from __future__ import annotations

from core.hardware import GPU, HardwareProfile
from core.memory_model import Setup, layer_weight_bytes
from core.model_shape import ModelShape

# Dense 16-bit tensor-core TFLOP/s from the vendors' data sheets, matched on the name (first match wins).
GPU_TFLOPS = [
    ("H200", 989), ("H100 PCIe", 756), ("H100", 989), ("A100", 312), ("L40S", 362), ("L40", 181), ("L4", 121),
    ("RTX 6000 Ada", 364), ("A6000", 155), ("4090 Laptop", 160), ("4090", 330), ("4080 Laptop", 100),
    ("4080", 195), ("4070 Laptop", 64), ("4070", 117), ("4060 Laptop", 46), ("4060", 60), ("3090", 142),
    ("3080 Laptop", 60), ("3080", 119), ("3070", 81), ("3060 Laptop", 44), ("3060", 51), ("T4", 65), ("V100", 125),
]
TFLOPS_BY_COMPUTE = {"9": 700, "8.9": 100, "8.6": 50, "8.0": 300, "7": 60}  # unknown names, by architecture
MFU = 0.35  # share of the data-sheet rate HF-style training sustains (small batches, many small kernels)
CPU_FLOPS_PER_CORE = 55e9  # measured: SmolLM2-135M LoRA on the project's 2-core CI machine, fp32
PCIE_GBPS_PER_LANE = {3: 0.985, 4: 1.969, 5: 3.938}
COPY_EFFICIENCY = 0.8  # pinned host-to-device copies reach about 80% of the link
UNMEASURED_DISK_READ = 1.5e9  # bytes/s assumed for NVMe when the probe has not run
SLOWDOWN = {"qlora": 1.3, "offload": 1.3, "dora": 1.5}  # dequantizing nf4 each matmul; DoRA's weight norms
LAUNCH_SECONDS_PER_LAYER = 0.0012  # ~40 kernels per layer and pass at ~10 µs: small models are launch-bound
RIDGE = 250  # a GPU's data-sheet 16-bit FLOP/s over its memory bytes/s (4090: 330 T / 1.0 TB/s; H100: 989 T / 3.35)
DEQUANT_BYTES = 4.5  # per 4-bit expert weight dequantized: its code read (0.5), 16 bits written, read by the product


def gpu_flops(gpu: GPU) -> float:
    for key, tflops in GPU_TFLOPS:
        if key.lower() in gpu.name.lower():
            return tflops * 1e12 * MFU
    cc = gpu.compute_capability
    tflops = TFLOPS_BY_COMPUTE.get(cc) or TFLOPS_BY_COMPUTE.get(cc.split(".")[0], 20)
    return tflops * 1e12 * MFU


def pcie_bytes_per_s(gpu: GPU) -> float:
    """Host-to-GPU bytes/s: measured (core.link_probe) when the profile has it, else from PCIe generation × width."""
    if gpu.h2d_bytes_per_s:
        return gpu.h2d_bytes_per_s
    lanes = gpu.pcie_width or 16
    return PCIE_GBPS_PER_LANE.get(gpu.pcie_gen or 4, 1.969) * 1e9 * lanes * COPY_EFFICIENCY


def pcie_source(gpu: GPU) -> str:
    """Where pcie_bytes_per_s's figure comes from, for the plan's reasons."""
    if gpu.h2d_bytes_per_s:
        return f"measured {gpu.h2d_bytes_per_s / 1e9:.1f} GB/s host→device"
    gen = f"PCIe {gpu.pcie_gen or 4}.0 ×{gpu.pcie_width or 16}"
    assumed = "" if gpu.pcie_gen and gpu.pcie_width else ", assumed"
    return f"estimated from {gen}{assumed}"


def step_flops(shape: ModelShape, s: Setup, tokens: int) -> float:
    """FLOPs of one micro-batch: forward 2P, backward 2P for input grads, +2P for weight grads of
    trained weights, +2P when checkpointing (or a layer-major step) recomputes the forward; plus attention's
    quadratic part. P is the weights a token goes through (a mixture of experts': the experts it is routed to)."""
    trains_weights = s.strategy in ("full", "lisa")
    passes = 2 + 2 + (2 if trains_weights else 0) + (2 if s.checkpointing or s.layer_major else 0)
    attending = shape.layers - shape.linear_layers  # Gated DeltaNet layers' cost is linear: in params
    attention = 2 * 2 * attending * s.seq_len * shape.heads * shape.head_dim  # QK and AV, causal half, ×2 bwd
    flops = tokens * (passes * shape.active_params + attention * (passes / 2))
    return flops * SLOWDOWN.get(s.strategy, 1.0)


def micro_batch_seconds(shape: ModelShape, s: Setup, hw: HardwareProfile, gpu: GPU | None, mean_len: float) -> float:
    tokens = s.micro_batch * mean_len
    rate = gpu_flops(gpu) if (gpu and s.on_gpu) else CPU_FLOPS_PER_CORE * max(1, hw.cores_physical)
    compute = step_flops(shape, s, tokens) / rate
    if gpu and s.on_gpu:
        compute += shape.layers * LAUNCH_SECONDS_PER_LAYER + expert_dequant_seconds(shape, s, gpu)
    moved = streamed_bytes(shape, s)
    if not moved or gpu is None:
        return compute
    return max(compute, moved / stream_link(s, hw, gpu)[0])


def expert_dequant_seconds(shape: ModelShape, s: Setup, gpu: GPU) -> float:
    """QLoRA's 4-bit experts (core/four_bit_experts.py) are dequantized in every pass that uses them (forward, the
    recompute, backward), each expert for the few tokens routed to it: unlike a dense layer's, that is no small
    share of the compute but memory traffic of its own (Qwen3-30B-A3B on a 4090: ~0.4 s a micro-batch), taken at
    the card's bandwidth (its data-sheet rate over RIDGE), every expert counted as used."""
    if not (s.experts_4bit and shape.experts):
        return 0.0
    passes = 3 if s.checkpointing else 2
    bandwidth = gpu_flops(gpu) / MFU / RIDGE * COPY_EFFICIENCY
    return passes * shape.layers_unmodelled * DEQUANT_BYTES / bandwidth


def streamed_bytes(shape: ModelShape, s: Setup) -> float:
    """Weights one micro-batch brings to the GPU when they stream, on average (0 when they do not). Each pass
    brings every streamed layer once, forward and backward (with checkpointing a layer is recomputed just before
    its backward, while it is resident anyway: core/offload/stream.py); a layer-major step makes those two passes
    once for all its micro-batches. Embeddings and head stay on the GPU, and so do the layers LISA trains."""
    offload = s.offload or ("weights" if s.strategy == "offload" else "")
    if offload != "weights" and not s.frozen_streamed:
        return 0
    streamed = shape.layers - (min(s.lisa_layers, shape.layers) if s.frozen_streamed else 0)
    per_pass = 2 * layer_weight_bytes(shape, s.weight_storage, s.experts_4bit) * streamed / shape.layers
    return per_pass / (s.accumulation if s.layer_major else 1)


def stream_link(s: Setup, hw: HardwareProfile, gpu: GPU) -> tuple[float, str]:
    """(bytes/s, where the figure comes from) of the path streamed weights take: PCIe, or the disk when they
    stream from NVMe and it is the slower."""
    link, source = pcie_bytes_per_s(gpu), pcie_source(gpu)
    if s.weights_on_disk:
        disk = hw.disk_read_bytes_per_s or UNMEASURED_DISK_READ
        if disk < link:
            link, source = disk, (f"the disk's measured {disk / 1e9:.1f} GB/s reads" if hw.disk_read_bytes_per_s
                                  else f"an assumed {disk / 1e9:.1f} GB/s from the unmeasured disk")
    return link, source
