"""Activations saved for backward kept in pinned host memory (the `activations_on_host` setting).

Why not torch.autograd.graph.save_on_cpu: it moves every tensor autograd saves, and a matmul saves its
weight (measured: a Linear saves its weight's transposed view), so every forward would copy the whole
model to the host and back. Here a tensor sharing a parameter's storage stays where it is, and the
rest go to views of one pinned pool (core.offload.pool) sized by what the first micro-batch saved
(until then, and when a longer batch overflows it, plain pinned tensors). A tensor two ops save (a
norm's input, the log-softmax output) crosses once each way.

Where layers stream (core/offload/stream.py), the streamer's own saved-tensor hooks are the innermost while
the decoder runs, so it hands on to these every saved tensor that is not a streamed weight (`chain`).

With gradient checkpointing this is what Unsloth calls offloaded checkpointing: torch's (non-reentrant)
checkpoint saves each layer's input as any op saves its inputs, outside its own hooks, so the inputs go
to RAM too; the layer's recomputation in backward saves under checkpoint's hooks and stays on the GPU.
So the device keeps about one layer's worth, and only the inputs (hidden × 2 bytes a token a layer)
cross PCIe.

Overlap on a GPU, both ways, on one side stream:
- out: before each copy the side stream waits for the compute stream (the tensor is ready, and a pool
  view given back is no longer read by a copy in), and `record_stream` keeps the tensor's memory from
  being reused until its copy is done; forward goes on meanwhile.
- back: backward asks for saved tensors about in the reverse order forward saved them (with
  checkpointing exactly: layer by layer down), so bringing one back also starts bringing back the one
  saved just before it (one at a time), into memory allocated on the side stream, with an event the
  compute stream waits for when backward asks for it; a tensor asked for before its prefetch, the first
  one included, is copied on the compute stream after it waits for the side stream. `prefetched` counts
  the tensors that were there in time. On the CPU the same code copies at once, so tests run its logic.
"""

from __future__ import annotations

import weakref

import torch

from core.offload.pool import PinnedPool, PoolFull

SMALL = 4096  # elements: tensors below this stay put (copying them costs more than they take)
POOL_MARGIN = 1.25  # the pool holds this many times the first micro-batch's saved bytes (packs vary in length)


class _Saved:
    """A saved tensor's host copy; its pool view goes back when autograd lets go of it."""

    __slots__ = ("host", "device", "pool", "index", "back", "early", "ready", "__weakref__")

    def __init__(self, host, device, pool, index: int):
        self.host, self.device, self.pool, self.index = host, device, pool, index
        self.back = None  # the tensor brought back: kept while autograd holds this, as it would keep the original
        self.early = None  # the device copy a prefetch made before backward asked for it
        self.ready = None  # CUDA event: that copy is done

    def __del__(self):
        if self.pool is not None:
            self.pool.give_back(self.host)


class HostActivations:
    """`with acts():` around a forward sends what it saves for backward to host RAM; `acts.moved` counts
    the bytes of the last forward."""

    def __init__(self, model, device):
        self.model = model
        self.weights: set[int] = set()  # the parameters' storages, read again at each forward (LISA swaps some)
        self.pin = torch.device(device).type == "cuda"
        self.side = torch.cuda.Stream(torch.device(device)) if self.pin else None  # the copies, beside compute
        self.pool: PinnedPool | None = None
        self.moved = 0
        self.overflows = 0  # tensors that did not fit the pool (plain pinned tensors instead)
        self.prefetched = 0  # tensors backward found already brought back
        self.seen: dict = {}  # this forward's copies by tensor, so a tensor two ops save crosses once
        self.order: list = []  # this forward's copies in the order it saved them (weak references)
        self.pending = None  # the copy a prefetch is bringing back (a weak reference)

    def __call__(self):
        if self.pool is None and self.moved:  # the first forward measured what one saves
            self.pool = PinnedPool(int(self.moved * POOL_MARGIN), pin=self.pin)
        self.moved, self.seen, self.order, self.pending = 0, {}, [], None
        self.weights = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        streamer = getattr(self.model, "tuneforge_offload", None)  # streamed layers: its hooks are innermost there
        if streamer is not None:
            streamer.chain(self._pack, self._unpack)
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    # --- out ----------------------------------------------------------------------------------------
    def _pack(self, t):
        if t.numel() < SMALL or t.untyped_storage().data_ptr() in self.weights:
            return t
        # Saved twice (a norm's input by two of its ops; the log-softmax output by itself and the loss): one copy.
        # The same object, still alive, so its memory cannot have been handed to another tensor meanwhile, and at
        # the same version, so nothing wrote to it in between.
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype, t._version)
        tensor, copy = self.seen.get(key, (None, None))
        if tensor is not None and tensor() is t and (saved := copy()) is not None:
            return saved
        saved = self._copy_out(t)
        self.seen[key] = (weakref.ref(t), weakref.ref(saved))
        self.order.append(weakref.ref(saved))
        return saved

    def _copy_out(self, t):
        host, pool = None, self.pool
        if pool is not None:
            try:
                host = pool.take(t.shape, t.dtype)
            except PoolFull:
                self.overflows += 1
                pool = None
        if host is None:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=self.pin)
        if self.side is None:
            host.copy_(t)
        else:
            self.side.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(self.side):
                host.copy_(t, non_blocking=True)
            t.record_stream(self.side)
        self.moved += t.numel() * t.element_size()
        return _Saved(host, t.device, pool, len(self.order))

    # --- back ---------------------------------------------------------------------------------------
    def _unpack(self, saved):
        if isinstance(saved, torch.Tensor):
            return saved
        if saved.back is not None:  # saved twice: brought back once, for both
            return saved.back
        if saved.early is not None:  # a prefetch brought it
            back, saved.early = saved.early, None
            if self.side is not None:
                torch.cuda.current_stream(saved.device).wait_event(saved.ready)
                back.record_stream(torch.cuda.current_stream(saved.device))  # its memory came from the side stream
            self.prefetched += 1
        elif self.side is None:  # a CPU run (tests): a copy, so the view can go back while it is used
            back = saved.host.clone()
        else:
            torch.cuda.current_stream(saved.device).wait_stream(self.side)  # its copy out has finished
            back = saved.host.to(saved.device, non_blocking=True)
        saved.back = back
        self._prefetch_before(saved.index)
        return back

    def _prefetch_before(self, index: int) -> None:
        """Start bringing back the copy saved last before `index` that is still held and not back yet, unless
        another prefetch is still waiting to be used (one at a time: one more tensor on the device at most)."""
        pending = self.pending() if self.pending is not None else None
        if pending is not None and pending.early is not None:
            return
        for ref in reversed(self.order[:index]):
            saved = ref()
            if saved is None or saved.early is not None or saved.back is not None:  # let go, coming, or back
                continue
            if self.side is None:
                saved.early = saved.host.clone()
            else:
                with torch.cuda.stream(self.side):  # after its copy out, which this stream ran earlier
                    saved.early = saved.host.to(saved.device, non_blocking=True)
                    saved.ready = torch.cuda.Event()
                    saved.ready.record(self.side)
            self.pending = weakref.ref(saved)
            return
