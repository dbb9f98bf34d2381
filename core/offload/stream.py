"""Streams each decoder layer's frozen weights into a small ring of GPU buffers as the layer runs: layer
i+1 is copied on a separate CUDA stream while layer i computes, and backward walks the layers in
reverse the same way. The ring holds at most `ring` layers; the rest live in a WeightStore.

How the weights get to the layers:
- forward: a forward pre-hook on each layer makes it resident, then prefetches the next layer;
- backward: a hook on each layer's output fires when that output's gradient is complete, before any
  of the layer's backward nodes run (and so before gradient checkpointing recomputes the layer's
  forward from its parameters); it makes the layer resident and prefetches the one below;
- without checkpointing, autograd also saved the layer's weights during forward. A saved tensor
  that lies in a ring buffer is packed as a token (layer, dtype, geometry), never as the tensor, since
  by then that buffer may hold another layer; unpacking the token makes the layer resident again
  and prefetches the layer below. Swapping `param.data` alone would not do: autograd keeps views of a
  weight such as `weight.t()`, which point at the buffer, not at the parameter.
- a streamed layer always lives in the same buffer (its place among the streamed layers, mod ring), so a
  view kept outside autograd's saved tensors (bitsandbytes keeps the packed 4-bit weight on its autograd
  context) is right again whenever its layer is resident.

Owned layers (`own`): LISA trains a few layers at a time in full (core/strategies/lisa.py). Those get
their own device tensors, stay resident and are skipped by the ring; when LISA lets one go, its trained
weights are written back to the store and it streams again. The rest stream as above. `on_host` binds
every streamed layer to its host copy for a while (checkpoints, saving the model).

Ordering on a GPU: a copy into a buffer first waits for all compute queued so far (the buffer's last
readers), and compute waits for the copy's event before its layer runs. On the CPU the "GPU" buffers
are ordinary tensors and copies are synchronous, so tests run exactly this code.

Layer-major order (core/offload/layer_major.py) runs every micro-batch of a step through a layer before
the next one, forward and then again (recomputing, outside autograd's engine) on the way down: `going_down`
tells the streamer that direction, so each layer comes in once per step each way.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class _Token:
    layer: int
    dtype: object
    size: tuple
    stride: tuple
    offset: int  # in elements of dtype, from the start of the buffer


class LayerStreamer:
    """Keep `layers` (a decoder's ModuleList) running with their frozen weights in `store`.

    Counters: `loads` (layer copies into the ring), `stalls` (loads a layer had to wait for, not
    prefetched), `bytes_copied`, `peak_resident` (most layers bound at once; never above `ring`)."""

    def __init__(self, layers, store, device, ring: int = 2):
        import torch

        if ring < 2:
            raise ValueError("the ring needs at least 2 buffers: one computing, one arriving")
        self.layers, self.store, self.ring = list(layers), store, ring
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.slots = [torch.empty(store.slot_bytes, dtype=torch.uint8, device=self.device) for _ in range(ring)]
        self._slot_by_ptr = {s.untyped_storage().data_ptr(): k for k, s in enumerate(self.slots)}
        self.holder: list[int | None] = [None] * ring  # the layer in each buffer
        self.slot_of: dict[int, int] = {}
        self.owned: set[int] = set()  # layers with their own device tensors (trained by LISA), not streamed
        self.order = list(range(len(self.layers)))  # the streamed layers, in model order
        self.place = {i: k for k, i in enumerate(self.order)}  # layer → its index in `order`
        self.ready: list = [None] * ring  # CUDA event: the copy into this buffer is done
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self._empty = {}
        self.loads = self.stalls = self.bytes_copied = self.peak_resident = 0
        self._down = False  # layers run forward while the step walks down the layers (`going_down`)
        # What happens to a saved tensor that is not a streamed weight: kept as it is, or handed on to the hooks
        # these hide (`chain`: activations kept in RAM), since the innermost saved-tensor hooks alone see a save.
        self.outer_pack, self.outer_unpack = (lambda t: t), (lambda saved: saved)
        for i in range(len(store.layouts)):  # the store emptied them on the host; now empty on the device
            self._unbind(i)
        self.handles = [layer.register_forward_pre_hook(functools.partial(self._before_layer, i))
                        for i, layer in enumerate(self.layers)]
        self.handles += [layer.register_forward_hook(functools.partial(self._after_layer, i))
                         for i, layer in enumerate(self.layers)]
        self._prime()

    # --- hooks ----------------------------------------------------------------------------------------
    def attach(self, module) -> None:
        """Pack saved weights as tokens while `module` (the decoder that runs the layers) runs forward."""
        import torch

        state = {}

        def enter(_module, _args):
            state["hooks"] = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
            state["hooks"].__enter__()

        def leave(_module, _args, _output):
            hooks = state.pop("hooks", None)
            if hooks is not None:
                hooks.__exit__(None, None, None)

        self.handles.append(module.register_forward_pre_hook(enter))
        self.handles.append(module.register_forward_hook(leave, always_call=True))

    def chain(self, pack, unpack) -> None:
        """Saved tensors that are not streamed weights go through `pack`/`unpack` (core/offload/activations.py's),
        which this streamer's own hooks would otherwise hide while the decoder runs."""
        self.outer_pack, self.outer_unpack = pack, unpack

    @contextlib.contextmanager
    def going_down(self):
        """While inside, a layer running forward is a recompute on the way down (layer-major's backward sweep,
        which autograd's engine does not run): keep it and prefetch the layer below, not the one above."""
        self._down = True
        try:
            yield
        finally:
            self._down = False

    def _before_layer(self, i: int, _module, _args) -> None:
        import torch

        # a checkpoint's recompute runs inside backward; layer-major's says so itself
        backward = self._down or torch._C._current_graph_task_id() != -1
        self.make_resident(i)
        self.prefetch(i - 1 if backward else i + 1, keep=i)

    def _after_layer(self, i: int, _module, _args, output) -> None:
        """Backward reaches layer i when the gradient of its output is complete: bring it in then, before
        its nodes run (transformers' checkpointing recomputes the layer's forward inside them, reading the
        parameters and not calling this module's hooks), and start on the layer below."""
        import torch

        out = output[0] if isinstance(output, tuple) else output
        if isinstance(out, torch.Tensor) and out.requires_grad and torch._C._current_graph_task_id() == -1:
            out.register_hook(functools.partial(self._backward_reaches, i))

    def _backward_reaches(self, i: int, _grad) -> None:
        self.make_resident(i)
        self.prefetch(i - 1, keep=i)

    def _pack(self, tensor):
        slot = self._slot_by_ptr.get(tensor.untyped_storage().data_ptr())
        if slot is None:
            return self.outer_pack(tensor)
        return _Token(self.holder[slot], tensor.dtype, tuple(tensor.size()), tuple(tensor.stride()),
                      tensor.storage_offset())

    def _unpack(self, saved):
        if not isinstance(saved, _Token):
            return self.outer_unpack(saved)
        slot = self.make_resident(saved.layer)
        self.prefetch(saved.layer - 1, keep=saved.layer)
        return self.slots[slot].view(saved.dtype).as_strided(saved.size, saved.stride, saved.offset)

    # --- the ring -------------------------------------------------------------------------------------
    def make_resident(self, i: int) -> int | None:
        """Layer i's weights bound and ready for compute queued from now on; its buffer's index (None for an
        owned layer, which is always resident)."""
        import torch

        if i in self.owned:
            return None
        if i not in self.slot_of:
            self.stalls += 1
            self._load(i)
        slot = self.slot_of[i]
        if self.cuda and self.ready[slot] is not None:
            torch.cuda.current_stream(self.device).wait_event(self.ready[slot])
        return slot

    def prefetch(self, i: int, keep: int) -> None:
        """Start bringing in the streamed layers from layer i on in the same direction (owned ones are skipped),
        as far as the ring allows without touching the buffer of layer `keep` (the one computing)."""
        step = 1 if i > keep else -1
        ahead = [j for j in range(i, len(self.layers) if step > 0 else -1, step) if j not in self.owned]
        for j in ahead[:self.ring - 1]:
            if keep in self.slot_of and self._slot(j) == self.slot_of[keep]:
                return
            if j not in self.slot_of:
                self._load(j)
        if len(ahead) >= self.ring:
            self.store.readahead(ahead[self.ring - 1])  # disk: the next one is read while these copy

    def _slot(self, i: int) -> int:
        return self.place[i] % self.ring

    def _prime(self) -> None:
        """The first pass starts with its first streamed layers in place."""
        for i in self.order[:self.ring]:
            self._load(i)

    def _load(self, i: int) -> None:
        """Copy layer i into its buffer. Always the same buffer (while the owned layers stay the same):
        bitsandbytes keeps a view of the packed weight for backward outside autograd's saved tensors, which
        only stays right if the layer comes back to the buffer it ran in."""
        import torch

        slot = self._slot(i)
        if self.holder[slot] is not None:
            self._unbind(self.holder[slot])
            del self.slot_of[self.holder[slot]]
        host = self.store.fetch(i)
        n = host.numel()
        if self.cuda:
            # The buffer's last readers are in the compute queue: the copy waits for them, compute goes on.
            self.copy_stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.copy_stream):
                self.slots[slot][:n].copy_(host, non_blocking=True)
                event = torch.cuda.Event()
                event.record(self.copy_stream)
            self.ready[slot] = event
        else:
            self.slots[slot][:n].copy_(host)
            event = None
        self.store.done_with(i, event)
        self.holder[slot], self.slot_of[i] = i, slot
        self._bind(i, slot)
        self.loads += 1
        self.bytes_copied += n
        self.peak_resident = max(self.peak_resident, len(self.slot_of))

    def _bind(self, i: int, slot: int) -> None:
        buf = self.slots[slot]
        for s in self.store.layouts[i][0]:
            s.param.data = buf[s.offset:s.offset + s.nbytes].view(s.dtype).view(s.shape)

    def _unbind(self, i: int) -> None:
        """Point layer i's parameters at an empty tensor, so nothing can read a buffer that moved on."""
        import torch

        for s in self.store.layouts[i][0]:
            if s.dtype not in self._empty:
                self._empty[s.dtype] = torch.empty(0, dtype=s.dtype, device=self.device)
            s.param.data = self._empty[s.dtype]

    def resident_layers(self) -> list[int]:
        return sorted(set(self.slot_of) | self.owned)

    # --- owned layers (LISA) ----------------------------------------------------------------------------
    def own(self, layers) -> None:
        """Make exactly `layers` owned: each gets its own device tensors, filled from the store, and leaves the
        ring; a layer owned before and not now has its (trained) weights written back to the store first and
        streams again. Called between optimizer steps, when nothing is in flight."""
        import torch

        layers = set(layers)
        if layers == self.owned:
            return
        self._evict_ring()
        if self.cuda:
            torch.cuda.synchronize(self.device)  # the optimizer's last writes into the weights are done
        for i in sorted(self.owned - layers):
            self.store.put(i, [s.param.data for s in self.store.layouts[i][0]])
            self._unbind(i)
        for i in sorted(layers - self.owned):
            host = self.store.fetch(i)
            for s in self.store.layouts[i][0]:
                s.param.data = host[s.offset:s.offset + s.nbytes].view(s.dtype).view(s.shape).to(self.device,
                                                                                                 copy=True)
            self.store.done_with(i, None)
            self.bytes_copied += self.store.nbytes(i)
        self.owned = layers
        self.order = [i for i in range(len(self.layers)) if i not in layers]
        self.place = {i: k for k, i in enumerate(self.order)}
        self._prime()

    def _evict_ring(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.current_stream(self.device).wait_stream(self.copy_stream)
        for i in list(self.slot_of):
            self._unbind(i)
        self.slot_of.clear()
        self.holder = [None] * self.ring
        self.ready = [None] * self.ring

    @contextlib.contextmanager
    def on_host(self, write: bool = False):
        """Every streamed layer's parameters bound to host tensors for a while (a checkpoint, saving the model):
        views of the store (the RAM pool, or the layer files mapped into memory), so writes land in it directly
        and on disk RAM never holds the layers at once; `write` says writes happen (counted as drive wear).
        Owned layers keep their device tensors."""
        self._evict_ring()
        for i in self.order:
            for s, v in zip(self.store.layouts[i][0], self.store.read(i)):
                s.param.data = v
        try:
            yield
        finally:
            for i in self.order:
                if write:
                    self.store.wrote(i)
                self._unbind(i)
            self._prime()

    def sized(self, params) -> list:
        """`params` with each streamed parameter (empty while its layer is away) replaced by a meta tensor of its
        real shape and dtype: what sizes state and counts weights."""
        import torch

        real = {id(s.param): s for i in self.order for s in self.store.layouts[i][0]}
        return [torch.empty(real[id(p)].shape, dtype=real[id(p)].dtype, device="meta") if id(p) in real else p
                for p in params]

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.store.close()
