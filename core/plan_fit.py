"""Which settings fit: the planner's search, one strategy at a time (core.planner walks its ladder with it;
core.replanner walks down from a crashed run's settings with it).

A strategy offers setting variants best first (core.strategies' `plan_variants`; LISA: embeddings trained,
then frozen, ...); on a GPU each is tried again, after all of them, with the activations in RAM. For each
variant, without checkpointing first, then with it, the largest micro-batch whose estimate
(core.memory_model) fits the target (core.plan_target) is taken; the first variant where one does wins. Where
weights stream (offload), the variants are first tried with the weights in RAM, then on the disk: a drive read
every step is many times slower (Qwen3-30B-A3B on a 16 GB card: its experts adapted, 16-bit, from the disk, 88
minutes; frozen, 4-bit, from RAM, 3).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from core import memory_model as mm
from core import strategies
from core.plan_target import Target

if TYPE_CHECKING:
    from core.planner import Wishes

EFFECTIVE_BATCH = 8  # sequences per optimizer step unless the data has fewer rows
MICRO_BATCHES = (16, 8, 4, 2, 1)


def settings_of(strategy: str) -> set[str]:
    """The names of a strategy's own settings."""
    return {f.name for f in dataclasses.fields(strategies.get(strategy, need_built=False).Options)}


def options_for(strategy: str, w: Wishes, warnings: list | None = None) -> dict:
    """The wished settings that belong to this strategy; the others are left out (and said so)."""
    fields = settings_of(strategy)
    left_out = sorted(set(w.options) - fields)
    if left_out and warnings is not None:
        warnings.append(f"Setting(s) {', '.join(left_out)} do not apply to {strategy}; left out.")
    return {k: v for k, v in w.options.items() if k in fields}


def fit(shape, target: Target, strategy: str, seq_len: int, options: dict, rows: int,
        checkpointing: bool | None = None, micro_batch: int | None = None) -> tuple[bool, int, dict, str]:
    """(checkpointing, micro-batch, settings, why) for a strategy: the first of its setting variants
    (core.strategies' plan_variants, best first) that fits, without checkpointing where possible.
    When nothing fits, the cheapest variant comes back with the wished micro-batch (or 0); activations in RAM
    only where they make a plan fit (they cost every step time)."""
    found = first_fit(shape, target, strategy, seq_len, options, rows, checkpointing, micro_batch)
    if found:
        return found
    opts, why = variants_for(strategy, options, target.device, host_activations=False)[-1]  # RAM only where it fits
    return checkpointing is not False, micro_batch or 0, opts, why


def first_fit(shape, target: Target, strategy: str, seq_len: int, options: dict, rows: int,
              checkpointing: bool | None = None, micro_batch: int | None = None) -> tuple[bool, int, dict, str] | None:
    """`fit`'s answer when something fits, else None. Activations in RAM (a variant the person did not ask for)
    only go with checkpointing: then only each layer's input crosses PCIe, where without it every saved tensor
    would (about 20 times the bytes at 8B sizes, slower than recomputing)."""
    ckpts = [checkpointing] if checkpointing is not None else [False, True]
    variants = variants_for(strategy, options, target.device)
    for disk in ([False, True] if streams(strategy, options) and len(variants) > 1 else [True]):
        for opts, why in variants:
            for ckpt in ckpts:
                if opts.get("activations_on_host") and not ckpt and "activations_on_host" not in options:
                    continue
                if micro_batch:
                    fits = target.fits(mm.estimate(shape, target.setup(strategy, micro_batch, seq_len, ckpt, opts)))
                    mb = micro_batch if fits else 0
                else:
                    mb = largest_micro_batch(shape, target, strategy, seq_len, ckpt, opts, rows, disk)
                if mb:
                    return ckpt, mb, opts, why
    return None


def variants_for(strategy: str, options: dict, device: str, host_activations: bool = True) -> list[tuple[dict, str]]:
    """The strategy's setting variants, best first, less those that move state or weights to the host when
    there is no GPU to move them from (on the CPU they are in RAM already), unless they were asked for. On a
    GPU (and with `host_activations`) each variant is tried again, after all of them, with the activations in
    RAM."""
    variants = strategies.get(strategy, need_built=False).plan_variants(dict(options))
    if device == "cuda":
        asked_or_none = "activations_on_host" in options or "activations_on_host" not in settings_of(strategy)
        if not host_activations or asked_or_none:
            return variants
        # The last resort: what forward saves waits in RAM (each micro-batch pays its copies both ways).
        return ([({**v, "activations_on_host": False}, why) for v, why in variants]
                + [({**v, "activations_on_host": True}, " ".join(filter(None, (why, strategies.ACTIVATIONS_WHY))))
                   for v, why in variants])
    moved = [k for k in ("optimizer_on_host", "stream_frozen") if not options.get(k)]
    return [v for v in variants if not any(v[0].get(k) for k in moved)] or variants


def largest_micro_batch(shape, target: Target, strategy, seq_len, ckpt, options, rows, disk: bool = True) -> int:
    """The largest micro-batch (at most the effective batch) that fits; 0 if not even one example does. `disk`
    False: only with streamed weights in RAM."""
    cap = max(1, min(EFFECTIVE_BATCH, rows))
    for mb in MICRO_BATCHES:
        if mb <= cap and _fits_somewhere(shape, target, strategy, mb, seq_len, ckpt, options, disk):
            return mb
    return 0


def _fits_somewhere(shape, target: Target, strategy, mb, seq_len, ckpt, options, disk: bool = True) -> bool:
    if target.fits(mm.estimate(shape, target.setup(strategy, mb, seq_len, ckpt, options))):
        return True
    return disk and streams(strategy, options) and target.fits(mm.estimate(shape, target.setup(
        strategy, mb, seq_len, ckpt, options, on_disk=True)))


def streams(strategy: str, options: dict) -> bool:
    """Weights stream from RAM, or from NVMe when RAM is short: the offload strategy, LISA's stream_frozen."""
    return strategy == "offload" or bool(options.get("stream_frozen"))
