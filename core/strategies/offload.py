"""Offload: LoRA over a frozen base that lives in host RAM or on NVMe and streams to the GPU one layer at a
time (core/offload/stream.py), for models larger than the GPU.

Loading (`load_model`): the model is built empty, the weights outside the decoder layers go to the GPU,
and each layer is read from the checkpoint, quantized to 4-bit on the GPU (by default, as QLoRA; or kept
in the run's precision) and put in a WeightStore: pinned RAM when it holds the layers with room to
spare, else one file per layer on NVMe (core/offload/layerwise.py; a checkpoint it cannot read that way
is loaded whole on the host first, and the run says so). Host RAM thus never holds the whole model.
Then (`prepare`) the streamer is installed and peft adds the adapters, which have exactly LoRA's names
and layout: checkpoints, `save`, `load` and export are LoRA's. The embeddings, head, final norm, the
adapters and the optimizer stay on the GPU.

On the CPU the weights are in host RAM already, so nothing streams unless `stream='always'`: that
runs the whole machinery with CPU tensors as the "GPU" buffers (tests and --smoke).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.offload import install, layer_major
from core.offload.install import WHERE, StreamSettings
from core.settings import check, option
from core.strategies import Strategy, register
from core.strategies.lisa import decoder_layers
from core.strategies.qlora import QLora, QLoraOptions

STREAM = ("auto", "always")


@dataclass(frozen=True)
class OffloadOptions(QLoraOptions):
    quantize: bool = option(True, help="Keep the frozen base in 4-bit (quant_type) as QLoRA does, which also "
                                       "quarters the bytes streamed per step; off streams it in the run's "
                                       "precision (bf16 on a GPU).")
    where: str = option("auto", help="Where the frozen weights live: 'ram' (pinned host memory), 'disk' (one "
                                     "aligned file per layer, read back every pass), or 'auto' (RAM when it "
                                     "holds them with 4 GiB to spare, otherwise disk).")
    folder: str = option("", help="Folder for the layer files when the weights live on disk; empty means an "
                                  "'offload' folder in the run's folder. Use your fastest NVMe drive.")
    ring: int = option(2, help="GPU buffers the layers stream through: 2 (one computing, the next arriving) or "
                               "more, which fetches ring - 1 layers ahead to absorb uneven copy times, for one "
                               "more layer's memory each.")
    stream: str = option("auto", help="'auto' streams when training on a GPU (on the CPU the weights are in "
                                      "host RAM already); 'always' runs the streaming on the CPU too, for "
                                      "tests and --smoke benchmarks.")
    layer_major: bool = option(False, help=layer_major.HELP)

    def __post_init__(self):
        super().__post_init__()
        check(self.where in WHERE, "where", f"must be one of {', '.join(WHERE)}.")
        check(self.stream in STREAM, "stream", f"must be one of {', '.join(STREAM)}.")
        check(self.ring >= 2, "ring", "must be at least 2 (one layer computing, the next arriving).")
        check(not (self.layer_major and self.activations_on_host), "activations_on_host",
              layer_major.NOT_WITH_HOST_ACTIVATIONS)


def no_cpu_repacking(model):
    """Turn off bitsandbytes' AVX-512 repacking of 4-bit weights at the first no-grad forward on a CPU: it
    replaces the parameter's data, which would unhook a streamed layer from its ring buffer, and it computes
    in bf16, so a model loaded for inference (`load`) would not answer exactly as the trained one did."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def stream_settings(opts: OffloadOptions) -> StreamSettings:
    return StreamSettings(opts.where, opts.folder, opts.ring, opts.quantize, opts.quant_type, opts.double_quant,
                          experts_4bit=opts.quantize and opts.experts is False)


@register
class Offload(QLora):
    name = "offload"
    summary = "LoRA over a 4-bit base kept in RAM or on NVMe and streamed to the GPU layer by layer."
    Options = OffloadOptions
    streams_weights = True

    def setup_fields(self, opts, device: str) -> dict:
        return {**super().setup_fields(opts, device), "resident_layers": opts.ring, "quantized_base": opts.quantize,
                "layer_major": opts.layer_major}

    def load_model(self, path, dtype, device, opts):
        """The base for streaming (core/offload/install.py: layer by layer where the checkpoint allows); without
        streaming (a CPU run), QLoRA's (or LoRA's) load."""
        import torch

        if torch.device(device).type != "cuda" and opts.stream != "always":
            return (QLora.load_model if opts.quantize else Strategy.load_model)(self, path, dtype, device, opts)
        whole = QLora.load_4bit if opts.quantize else Strategy.load_model  # on the host: experts stay 16-bit
        return install.load_base(path, dtype, device, stream_settings(opts), decoder_layers,
                                 lambda where: whole(self, path, dtype, where, opts))

    def prepare(self, model, opts, cfg):
        if hasattr(model, "tuneforge_stream"):
            install.install(model, decoder_layers, Path(cfg.run_dir))
        return no_cpu_repacking(super().prepare(model, opts, cfg))  # LoRA adapters

    def before_step(self, step: int, model, optimizer, opts, cfg) -> str | None:
        """Say once, at the run's first step (and again after a resume), where the weights stream from and why."""
        return model.get_base_model().__dict__.pop("tuneforge_offload_note", None)

    def placement(self, model, opts) -> dict[str, str]:
        """Where each part lives, for the run's start event: the frozen weights in RAM or on NVMe when they
        stream (the store's own text, e.g. 'RAM (pinned)', and why it was chosen are in
        `model.tuneforge_offload.store`), everything else on the training device."""
        placement = super().placement(model, opts)
        streamer = getattr(model, "tuneforge_offload", None)
        if streamer is not None:
            placement["frozen weights"] = install.placement(streamer)
        return placement

    def load(self, base, folder):
        if hasattr(base, "tuneforge_checkpoint") and not hasattr(base, "tuneforge_offload"):
            install.install(base, decoder_layers, None)  # a base loaded layer by layer is only usable streamed
        return no_cpu_repacking(super().load(base, folder))
