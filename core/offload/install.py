"""Putting a model's decoder layers into a WeightStore and streaming them: shared by the offload strategy
(LoRA over a streamed frozen base) and LISA's `stream_frozen` (the layers not training stream, the
sampled ones are owned by the GPU).

`load_base` loads the base for streaming: one layer at a time from the checkpoint where it can
(core/offload/layerwise.py), so RAM never holds the whole model; otherwise whole, on the host, with
the reason kept. `install` then chooses RAM or NVMe, fills the store, moves the rest of the model to
the device and hooks up the LayerStreamer; the model carries it as `tuneforge_offload`, and a
sentence for the run's log as `tuneforge_offload_note`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from core import four_bit_experts
from core.offload import layerwise
from core.offload.stream import LayerStreamer
from core.offload.weight_store import WeightStore

RAM_SPARE = 4 << 30  # 'auto' keeps the weights in RAM only with this much left for the OS, data and Python
WHERE = ("auto", "ram", "disk")


@dataclass(frozen=True)
class StreamSettings:
    """How the layers stream; the offload strategy's settings, or LISA's fixed choice."""
    where: str = "auto"  # 'ram', 'disk' or 'auto' (RAM when it holds the layers with RAM_SPARE to spare)
    folder: str = ""  # the layer files' folder; '' → an 'offload' folder in the run's folder
    ring: int = 2  # GPU buffers the layers stream through
    quantize: bool = False  # the layers' linear weights in 4-bit (bitsandbytes) as QLoRA
    quant_type: str = "nf4"
    double_quant: bool = True
    experts_4bit: bool = False  # a mixture of experts' frozen experts in 4 bits too (core/four_bit_experts.py)


def choose_where(where: str, nbytes: int) -> tuple[str, str]:
    """('ram' or 'disk', the reason)."""
    if where != "auto":
        return where, f"chosen by the setting where={where}"
    import psutil

    free = psutil.virtual_memory().available
    if nbytes + RAM_SPARE <= free:
        return "ram", f"{nbytes / 2**30:.1f} GiB of layer weights fit the {free / 2**30:.1f} GiB of free RAM"
    return "disk", (f"{nbytes / 2**30:.1f} GiB of layer weights do not fit the {free / 2**30:.1f} GiB of free RAM "
                    "with 4 GiB to spare")


def load_base(path, dtype, device, settings: StreamSettings, layers_of, load_whole):
    """The base with empty decoder layers and the rest on `device`, read layer by layer later; or, where the
    checkpoint does not allow that, `load_whole(device)` on the host (its layers then go to the store, not the
    GPU). Either way `install` streams it."""
    import torch

    device = torch.device(device)
    model, why = layerwise.skeleton(path, dtype, device, settings, layers_of)
    if model is None:
        model = load_whole("cpu")
    model.tuneforge_stream = (device, settings, why)
    return model


def install(model, layers_of, run_dir: Path | None, writes_back: bool = False) -> LayerStreamer:
    """Move the model's decoder layers into a WeightStore and stream them (before peft: adapters are then made
    on the device, beside the layers' placeholders). `writes_back`: trained layers go back to the store (LISA)."""
    device, settings, why = model.tuneforge_stream
    layers = layers_of(model)
    skeleton = hasattr(model, "tuneforge_checkpoint")
    if skeleton:
        nbytes = layerwise.expected_bytes(layers, settings.quantize, settings.experts_4bit)
        frozen, read = [None] * len(layers), layerwise.layer_reader(model, layers, device, model.dtype, settings)
    else:
        frozen, read = [list(layer.parameters()) for layer in layers], None
        nbytes = sum(p.numel() * p.element_size() for ps in frozen for p in ps)
    where, reason = choose_where(settings.where, nbytes)
    folder = None  # the layer files' folder, only when they go to disk (a scratch one without a run folder)
    if where == "disk":
        folder = Path(settings.folder) if settings.folder else (run_dir / "offload" if run_dir else
                                                                 Path(tempfile.mkdtemp(prefix="tuneforge-offload-")))
    store = WeightStore(frozen, where, folder, materialize=read)
    if settings.experts_4bit:
        four_bit_experts.use_four_bit_experts(model)
    model.to(device)  # what is outside the layers; the layers' weights are empty placeholders now
    streamer = LayerStreamer(layers, store, device, settings.ring)
    streamer.attach(next(m for m in model.modules() if any(c is layers for c in m.children())))
    model.tuneforge_offload = streamer
    loading = "loaded one layer at a time" if skeleton else f"loaded whole first ({why})"
    if not skeleton and settings.experts_4bit and four_bit_experts.experts_modules(model):
        loading += ", so its experts stay in 16 bits"
    after = "a layer LISA lets go is written back" if writes_back else "steps only read"
    wear = f" The drive took {store.bytes_written / 2**30:.2f} GiB once, at load; {after}." if where == "disk" else ""
    coded = any(isinstance(m, four_bit_experts.FourBitStack) for m in model.modules())
    what = "Frozen layer weights (the experts as 4-bit codes)" if coded else "Frozen layer weights"
    model.tuneforge_offload_note = (f"{what} stream from {store.placement} through {settings.ring} "
                                    f"buffers on the {device.type.upper()}: {reason}; {loading}.{wear}")
    return streamer


def placement(streamer) -> str:
    """Where the streamed layers live, in the words of a run's placement record."""
    return "NVMe" if streamer.store.where == "disk" else "RAM"
