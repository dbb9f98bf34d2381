"""Activations saved for backward kept in pinned host memory (the `activations_on_host` setting).

Why not torch.autograd.graph.save_on_cpu: it moves every tensor autograd saves, and a matmul saves its
weight (measured: a Linear saves its weight's transposed view), so every forward would copy the whole
model to the host and back. Here a tensor sharing a parameter's storage stays where it is, and the
rest go to views of one pinned pool (core.offload.pool) sized by what the first micro-batch saved
(until then, and when a longer batch overflows it, plain pinned tensors).

Copies in both directions run on the compute stream, so a view given back to the pool (when autograd
frees the saved tensor) is only reused by copies ordered after the ones that used it. With gradient
checkpointing the checkpointed layers keep only their inputs, which checkpointing holds itself; only
what lies outside them (final norm, head input, logits) moves.
"""

from __future__ import annotations

import torch

from core.offload.pool import PinnedPool, PoolFull

SMALL = 4096  # elements: tensors below this stay put (copying them costs more than they take)
POOL_MARGIN = 1.25  # the pool holds this many times the first micro-batch's saved bytes (packs vary in length)


class _Saved:
    """A saved tensor's host copy; its pool view goes back when autograd lets go of it."""

    __slots__ = ("host", "device", "pool")

    def __init__(self, host, device, pool):
        self.host, self.device, self.pool = host, device, pool

    def __del__(self):
        if self.pool is not None:
            self.pool.give_back(self.host)


class HostActivations:
    """`with acts():` around a forward sends what it saves for backward to host RAM; `acts.moved` counts
    the bytes of the last forward."""

    def __init__(self, model, device):
        self.weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.pin = torch.device(device).type == "cuda"
        self.pool: PinnedPool | None = None
        self.moved = 0
        self.overflows = 0  # tensors that did not fit the pool (plain pinned tensors instead)

    def __call__(self):
        if self.pool is None and self.moved:  # the first forward measured what one saves
            self.pool = PinnedPool(int(self.moved * POOL_MARGIN), pin=self.pin)
        self.moved = 0
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def _pack(self, t):
        if t.numel() < SMALL or t.untyped_storage().data_ptr() in self.weights:
            return t
        host, pool = None, self.pool
        if pool is not None:
            try:
                host = pool.take(t.shape, t.dtype)
            except PoolFull:
                self.overflows += 1
                pool = None
        if host is None:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=self.pin)
        host.copy_(t, non_blocking=self.pin)
        self.moved += t.numel() * t.element_size()
        return _Saved(host, t.device, pool)

    @staticmethod
    def _unpack(saved):
        if isinstance(saved, torch.Tensor):
            return saved
        if saved.device.type == "cpu":  # a CPU run (tests): a copy, so the view can go back while it is used
            return saved.host.clone()
        return saved.host.to(saved.device, non_blocking=saved.host.is_pinned())
