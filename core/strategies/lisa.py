"""LISA: layerwise importance-sampled training. The embeddings and head (optionally) and γ decoder
layers train at a time, full-parameter; every K steps a new set of γ layers is sampled.

Sampling is uniform (LISA) or weighted by each layer's share of outlier weights (OwLore: layers with
more outliers are better trained and gain more from tuning; computed once from the weights, an
outlier being |w| above `outlier_threshold` × its matrix's mean |w|).

What we do differently from the public implementations, whose memory creeps up to full
fine-tuning's because every layer that was ever active keeps its optimizer state:
- the fp32 masters and Adam moments live in the optimizer state (core.optimizers.MasterAdamW) and
  are dropped the moment a layer is switched off, so the live state stays at γ layers' worth;
  with `optimizer_on_host` they live in RAM (core.offload.host_adam) and, with `spill_state`,
  a switched-off layer's state goes to disk and comes back when the layer is sampled again; with
  `stochastic_rounding` there are no masters (core/stochastic_rounding.py);
- with the embeddings frozen, nothing below the lowest active layer requires grad, so backward
  stops there (we also drop transformers' hook that makes the embedding output require grad for
  checkpointing, which would otherwise drag backward down to the bottom);
- with `stream_frozen`, the layers not training live in host RAM (or on NVMe) and stream through the
  GPU as they run (core/offload/stream.py); the sampled ones get their own GPU tensors and go back to
  the store, trained, when they are let go. The GPU then holds γ layers, a ring of two, and the
  embeddings and head: full-parameter training of a model whose weights alone exceed the GPU.

The sampled layers are a pure function of (seed, step // K), so a resumed run trains the same
layers as one that never stopped.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from core import optimizers
from core.offload import install, layer_major
from core.offload.install import StreamSettings
from core.settings import check, option
from core.strategies import ACTIVATIONS_HELP, Strategy, register
from core.strategies.full import (HOST_HELP, ROUNDING_CHECK, ROUNDING_HELP, host_optimizer, host_placement,
                                  host_variants, load_full_model, rounding_problem)

SAMPLING = ("uniform", "owlore")
STREAM_WHY = ("The weights alone leave no room to train on the GPU, so the layers not training live in RAM (or on "
              "NVMe) and stream to the GPU as they run; only the sampled layers, the embeddings and the head stay "
              "(--option stream_frozen=false keeps every layer on the GPU).")


@dataclass(frozen=True)
class LisaOptions:
    layers: int = option(2, help="γ: decoder layers that train at a time.")
    interval: int = option(20, help="K: optimizer steps between two samplings of the active layers.")
    sampling: str = option("uniform", help="'uniform' (LISA) or 'owlore' (layers with more outlier weights are "
                                           "sampled more often).")
    embeddings: bool = option(True, help="Also train the embeddings, output head and final norm all the time "
                                         "(LISA's default; costly with a large vocabulary, so the planner may "
                                         "turn it off).")
    outlier_threshold: float = option(5.0, help="OwLore: a weight is an outlier when |w| is above this many times "
                                                "its matrix's mean |w|.")
    optimizer_on_host: bool = option(False, help=HOST_HELP)
    spill_state: bool = option(False, help="With optimizer_on_host: write a switched-off layer's optimizer state to "
                                           "a scratch file on disk (NVMe) and bring it back when the layer is "
                                           "sampled again, instead of dropping it. Changes the run's trajectory "
                                           "(Adam resumes its moments) and writes 12 bytes per weight of each "
                                           "switched-off layer to the drive.")
    activations_on_host: bool = option(False, help=ACTIVATIONS_HELP)
    stream_frozen: bool = option(False, help="Keep the layers that are not training in host RAM (or on NVMe when RAM "
                                             "is short) and stream them to the GPU as they run; only the sampled "
                                             "layers, the embeddings and the head stay there. For models whose "
                                             "weights alone do not fit the GPU; every step copies the frozen layers "
                                             "over PCIe. The planner turns it on when nothing else fits.")
    layer_major: bool = option(False, help=layer_major.HELP)
    stochastic_rounding: bool = option(False, help=ROUNDING_HELP)

    def __post_init__(self):
        check(self.layers >= 1, "layers", "must be at least 1.")
        check(self.interval >= 1, "interval", "must be at least 1 step.")
        check(self.sampling in SAMPLING, "sampling", f"must be one of {', '.join(SAMPLING)}.")
        check(self.outlier_threshold > 1, "outlier_threshold", "must be above 1.")
        check(self.optimizer_on_host or not self.spill_state, "spill_state",
              "needs optimizer_on_host=true (only host-side state can be spilled to disk).")
        check(not (self.layer_major and self.activations_on_host), "activations_on_host",
              layer_major.NOT_WITH_HOST_ACTIVATIONS)
        check(not (self.stochastic_rounding and self.optimizer_on_host), "stochastic_rounding", ROUNDING_CHECK)


class LayerSampler:
    """Which decoder layers train now; kept on the model as `tuneforge_lisa`."""

    def __init__(self, layers, always: list, weights: list[float], opts: LisaOptions, seed: int, streamer=None):
        self.layers = layers  # the decoder's ModuleList
        self.streamer = streamer  # stream_frozen: the LayerStreamer that owns the active layers
        self.always = always  # parameters that train all the time (embeddings, head, final norm) or []
        self.weights = weights  # sampling weight of each layer
        self.opts = opts
        self.seed = seed
        self.window: int | None = None
        self.active: list[int] = []

    def pick(self, window: int) -> list[int]:
        """γ distinct layers for this window, drawn without replacement in proportion to the weights."""
        rng = random.Random(self.seed * 7919 + window)
        left = list(range(len(self.layers)))
        chosen = []
        for _ in range(min(self.opts.layers, len(left))):
            i = rng.choices(left, weights=[self.weights[j] for j in left])[0]
            chosen.append(i)
            left.remove(i)
        return sorted(chosen)

    def switch(self, step: int, optimizer) -> str | None:
        window = step // self.opts.interval
        if window == self.window:
            return None
        new = self.pick(window)
        # Every layer outside the new set, not only the last active ones: after a resume at a window's
        # boundary the loaded state belongs to layers that a run which never stopped has just let go.
        for i in sorted(set(range(len(self.layers))) - set(new)):
            params = list(self.layers[i].parameters())
            for p in params:
                p.requires_grad_(False)
            optimizers.forget(optimizer, params)
        if self.streamer is not None:  # the old layers go back to the store, trained; the new ones come to stay
            self.streamer.own(new)
        for i in new:
            for p in self.layers[i].parameters():
                p.requires_grad_(True)
        self.window, self.active = window, new
        last = (window + 1) * self.opts.interval
        return f"Training layers {', '.join(map(str, new))} for steps {step + 1}–{last}"


def decoder_layers(model):
    """The decoder's list of blocks (the ModuleList as long as the config's layer count); in a vision-language model
    that loads whole (Gemma 3 from 4B), its language model's, counted by its text config, before a tower's."""
    import torch

    count = model.config.get_text_config().num_hidden_layers
    lists = [(name, module) for name, module in model.named_modules()
             if isinstance(module, torch.nn.ModuleList) and len(module) == count]
    lists.sort(key=lambda found: ".language_model." not in f".{found[0]}.")
    if lists:
        return lists[0][1]
    raise ValueError(f"{type(model).__name__}: no list of {count} decoder layers found")


def outlier_ratios(layers, threshold: float) -> list[float]:
    """Share of each layer's matrix weights above threshold × the matrix's mean |w|. (Streamed layers: call it
    inside the streamer's `on_host`, their weights are away otherwise.)"""
    import torch

    ratios = []
    with torch.no_grad():
        for layer in layers:
            outliers, total = 0, 0
            for p in layer.parameters():
                if p.dim() == 2:
                    a = p.detach().abs().float()
                    outliers += int((a > threshold * a.mean()).sum())
                    total += a.numel()
            ratios.append(outliers / max(1, total))
    return ratios


@register
class Lisa(Strategy):
    name = "lisa"
    summary = "Layerwise sampling: a few full layers train at a time, the rest stay frozen."
    Options = LisaOptions
    result = "model"
    activations = "full"
    trains_base = True

    def setup_fields(self, opts, device: str) -> dict:
        return {**super().setup_fields(opts, device), "lisa_layers": opts.layers, "lisa_embeddings": opts.embeddings,
                "offload": "optimizer" if opts.optimizer_on_host else "",
                "frozen_streamed": opts.stream_frozen,
                "layer_major": opts.layer_major, "stochastic_rounding": opts.stochastic_rounding}

    def precision_problem(self, opts, precision: str) -> str | None:
        return rounding_problem(opts, precision)

    def plan_variants(self, options: dict) -> list[tuple[dict, str]]:
        """Embeddings trained, then frozen; each with the optimizer state on the GPU, then on the host
        (frozen embeddings cost less quality than a host optimizer costs time, so they come first); then all
        of those again with the frozen layers streamed (every micro-batch then copies them over PCIe)."""
        if "embeddings" in options:
            variants = [(dict(options), "")]
        else:
            variants = [({**options, "embeddings": True}, "LISA also trains the embeddings and output head all "
                         "the time (its default): they fit."),
                        ({**options, "embeddings": False}, "The embeddings and output head stay frozen: with their "
                         "gradients and optimizer state LISA would not fit (a large vocabulary makes them big); "
                         "backward then stops below the lowest sampled layer.")]
        variants = host_variants(variants, options)
        if "stream_frozen" in options:
            return variants
        return ([({**v, "stream_frozen": False}, why) for v, why in variants]
                + [({**v, "stream_frozen": True}, " ".join(filter(None, (why, STREAM_WHY)))) for v, why in variants])

    def trainable_params(self, shape, setup) -> int:
        always = shape.head_params + shape.hidden if setup.lisa_embeddings else 0
        return shape.largest_blocks(setup.lisa_layers) + always

    def load_model(self, path, dtype, device, opts):
        """With stream_frozen, the base for streaming (core/offload/install.py): its layers go to a store in RAM or
        on NVMe as they are read, never all to the GPU."""
        if not opts.stream_frozen:
            return super().load_model(path, dtype, device, opts)
        return install.load_base(path, dtype, device, StreamSettings(), decoder_layers,
                                 lambda where: Strategy.load_model(self, path, dtype, where, opts))

    def prepare(self, model, opts, cfg):
        import contextlib
        from pathlib import Path

        streamer = None
        if hasattr(model, "tuneforge_stream"):
            streamer = install.install(model, decoder_layers, Path(cfg.run_dir), writes_back=True)
        for p in model.parameters():
            p.requires_grad_(False)
        layers = decoder_layers(model)
        always = []
        if opts.embeddings:
            inner = [m for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None]
            norm = getattr(getattr(model, "model", None), "norm", None)
            always = list({id(p): p for m in inner + ([norm] if norm is not None else []) for p in m.parameters()}
                          .values())
            for p in always:
                p.requires_grad_(True)
        elif hasattr(model, "_require_grads_hook"):  # let backward stop below the lowest active layer
            model.disable_input_require_grads()
        weights = [1.0] * len(layers)
        if opts.sampling == "owlore":
            with streamer.on_host() if streamer else contextlib.nullcontext():
                weights = outlier_ratios(layers, opts.outlier_threshold)
        if not any(weights):
            weights = [1.0] * len(layers)
        model.tuneforge_lisa = LayerSampler(layers, always, weights, opts, cfg.seed, streamer)
        return model

    def trained_parameters(self, model) -> list:
        sampler = model.tuneforge_lisa
        candidates = sampler.always + [p for layer in sampler.layers for p in layer.parameters()]
        return list({id(p): p for p in candidates}.values())

    def make_optimizer(self, model, opts, cfg, device: str):
        # Every layer is in the one parameter group (so the LR schedule sees one optimizer), but only
        # parameters with a gradient get state, and switching a layer off drops its state (or, with
        # spill_state, writes it to disk). Drop is the default: the live state stays flat at γ layers
        # with no disk traffic, and moments from many steps ago describe weights that have moved since.
        params = self.trained_parameters(model)
        if not opts.optimizer_on_host:
            return optimizers.build("adamw", params, cfg.lr, cfg.weight_decay, masters=True,
                                    stochastic=opts.stochastic_rounding)
        sampler = model.tuneforge_lisa
        # The host pool holds γ layers' state (and gradients) at a time, plus one layer: room for a
        # switched-off layer's spill still being written while the next one loads, and for the holes
        # that views of different sizes leave between them. (Sized by the layers' real shapes: streamed
        # ones are empty while away.)
        sized = sampler.streamer.sized if sampler.streamer else list
        layers = [sized(m.parameters()) for m in sampler.layers]
        biggest = sorted(layers, key=lambda ps: -sum(p.numel() for p in ps))
        live = sampler.always + [p for ps in biggest[:opts.layers + 1] for p in ps]
        return host_optimizer(params, live, cfg, spill=opts.spill_state, sized=sized(params))

    def before_step(self, step: int, model, optimizer, opts, cfg) -> str | None:
        """Sample the layers of this window; at the run's first step (and after a resume), also say where the
        streamed layers live and why."""
        notes = [model.__dict__.pop("tuneforge_offload_note", None), model.tuneforge_lisa.switch(step, optimizer)]
        return " ".join(n for n in notes if n) or None

    def weights_on_host(self, model, write: bool = False):
        streamer = model.tuneforge_lisa.streamer
        return streamer.on_host(write) if streamer else super().weights_on_host(model, write)

    def placement(self, model, opts) -> dict[str, str]:
        placement = host_placement(super().placement(model, opts), opts)
        streamer = model.tuneforge_lisa.streamer
        if streamer is not None:
            placement["frozen weights"] = install.placement(streamer)
        return placement

    def load(self, base, folder):
        return load_full_model(base, folder)
