"""The frozen weights of each decoder layer, kept off the GPU: in views of one pinned pool in RAM, or on
NVMe in one aligned file per layer (written once at load, read back into pinned staging buffers).

A layer's frozen parameters are laid out back to back in one byte range (each tensor at a 256-byte
boundary: the GPU's copy and vector loads want it, and any dtype's view is then aligned; the range is
padded to `pool.ALIGN` for the drive). The streamer (core/offload/stream.py) copies a whole range
into one GPU buffer and points the parameters at views of it, so one layer is one copy.

Parameters are stored as raw bytes, whatever their dtype: bf16/fp32, or bitsandbytes' packed nf4
codes (uint8; their small quantization constants stay on the parameter and on the GPU).

Each parameter's own memory is released as soon as its bytes are in the store, so the store never
holds a second copy of the model; with `materialize` (core/offload/layerwise.py) the layers are read
from the checkpoint one at a time, so the whole model is never in RAM at once.
"""

from __future__ import annotations

import shutil
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from core.errors import DiskFull
from core.offload.disk import DiskIO, padded
from core.offload.pool import PinnedPool

TENSOR_ALIGN = 256
DISK_SPARE = 1 << 30  # leave a GiB free on the drive: a full drive fails checkpoints and the OS, not just us
STAGING = 3  # disk mode: one buffer copying to the GPU, one read and waiting, one being read


@dataclass(frozen=True)
class Slice:
    """Where one frozen parameter lives in its layer's byte range."""
    param: object  # the torch Parameter (its .data is repointed by the streamer)
    offset: int
    nbytes: int
    shape: tuple
    dtype: object


def layout(params) -> tuple[list[Slice], int]:
    slices, offset = [], 0
    for p in params:
        nbytes = p.numel() * p.element_size()
        slices.append(Slice(p, offset, nbytes, tuple(p.shape), p.dtype))
        offset += (nbytes + TENSOR_ALIGN - 1) // TENSOR_ALIGN * TENSOR_ALIGN
    return slices, padded(max(1, offset))


def _pack(slices, into) -> None:
    """Copy each parameter's bytes into `into` (a uint8 host tensor) and release the parameter's memory."""
    import torch

    for s in slices:
        into[s.offset:s.offset + s.nbytes].view(s.dtype).view(s.shape).copy_(s.param.data)
        s.param.data = torch.empty(0, dtype=s.dtype, device=s.param.device)


class WeightStore:
    """`fetch(i)` → a host uint8 tensor holding layer i's bytes (waits for the drive in disk mode);
    `readahead(i)` starts that read early; `done_with(i, event)` frees its staging buffer once `event`
    (the GPU copy out of it; None when the copy was synchronous) has completed.

    `materialize(i)`, when given, returns layer i's frozen parameters just before they are stored (a
    model built layer by layer, e.g. a random 70B that never exists whole); the layers must then all
    have the first one's size, which sizes the pool."""

    def __init__(self, layer_params: list, where: str = "ram", folder: str | Path | None = None,
                 pin: bool | None = None, materialize=None):
        import torch

        if where not in ("ram", "disk"):
            raise ValueError(f"where must be 'ram' or 'disk', not {where!r}")
        count = len(layer_params)
        params = materialize or (lambda i: layer_params[i])
        first = layout(params(0))
        sizes = [first[1]] * count if materialize else [first[1]] + [layout(ps)[1] for ps in layer_params[1:]]
        self.slot_bytes, self.total_bytes = max(sizes), sum(sizes)
        self.where, self.layouts, self.io = where, [], None
        pin = torch.cuda.is_available() if pin is None else pin
        if where == "ram":
            # Pinned only once filled (cudaHostRegister): a block pinned up front is committed at once, so
            # RAM would hold the model twice while the layers move in; filled first, the pages arrive as
            # each layer's own memory is released.
            self.pool = PinnedPool(self.total_bytes, pin=False)
            self.host = []
            for i in range(count):
                slices, n = first if i == 0 else layout(params(i))
                view = self.pool.take((n,), torch.uint8)  # PoolFull here: a layer larger than the first
                _pack(slices, view)
                self.layouts.append((slices, n))
                self.host.append(view)
            self.pinned = pin and _register(self.pool.block)
            if self.pinned:
                self._unpin = weakref.finalize(self, _unregister, self.pool.block)
            self.placement = "RAM (pinned)" if self.pinned else "RAM"
            return
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.folder).free
        if free < self.total_bytes + DISK_SPARE:
            raise DiskFull(f"Streaming the weights from {self.folder} needs {self.total_bytes / 2**30:.1f} GiB there "
                           f"(plus 1 GiB spare) but only {free / 2**30:.1f} GiB is free; free some space or set the "
                           "offload strategy's 'folder' to another drive.")
        self.pool = PinnedPool(STAGING * self.slot_bytes, pin)
        self.pinned = self.pool.pinned
        self.io = DiskIO()
        self.files = [self.folder / f"layer-{i:04d}.bin" for i in range(count)]
        # The files are scratch, rebuilt from the model at every load, so they are removed with the store.
        self._cleanup = weakref.finalize(self, _remove, self.io, list(self.files))
        staging = self.pool.take((self.slot_bytes,), torch.uint8)
        for i, path in enumerate(self.files):
            slices, n = first if i == 0 else layout(params(i))
            if n > self.slot_bytes:
                raise ValueError(f"layer {i} takes {n} bytes, more than the first layer's {self.slot_bytes}")
            _pack(slices, staging[:n])
            self.io.write(path, 0, staging[:n]).result()
            self.layouts.append((slices, n))
        self.pool.give_back(staging)
        self.placement = f"NVMe ({self.folder})"
        self._staged: OrderedDict[int, tuple] = OrderedDict()  # layer → (buffer, future), oldest first
        self._draining: list[tuple] = []  # (buffer, event): a GPU copy may still read it
        self._free = [self.pool.take((self.slot_bytes,), torch.uint8) for _ in range(STAGING)]

    @property
    def bytes_read(self) -> int:
        return self.io.bytes_read if self.io else 0

    @property
    def bytes_written(self) -> int:
        return self.io.bytes_written if self.io else 0

    def nbytes(self, i: int) -> int:
        return self.layouts[i][1]

    def readahead(self, i: int) -> None:
        if self.io is None or i in self._staged or not 0 <= i < len(self.layouts):
            return
        buf = self._buffer(wait=False)
        if buf is not None:  # no buffer free without waiting: the read happens when the layer is fetched
            self._staged[i] = (buf, self.io.read(self.files[i], 0, buf[:self.nbytes(i)]))

    def fetch(self, i: int):
        if self.io is None:
            return self.host[i]
        if i not in self._staged:
            buf = self._buffer(wait=True)
            self._staged[i] = (buf, self.io.read(self.files[i], 0, buf[:self.nbytes(i)]))
        buf, future = self._staged[i]
        future.result()
        return buf[:self.nbytes(i)]

    def read(self, i: int) -> list:
        """Layer i's parameters as host tensors in layout order, views of the store itself: of the RAM pool, or
        of the layer's file mapped into memory. Writes into them land in the store either way (call `wrote(i)`
        to count them as drive wear), and on disk RAM holds only the pages in use, which the OS can drop, so
        every layer can be bound at once (a checkpoint) without the model fitting in RAM."""
        import torch

        if self.io is None:
            data = self.host[i]
        else:
            self._forget_staged(i)  # a read-ahead would hold the bytes from before any write through the map
            data = torch.from_file(str(self.files[i]), shared=True, size=self.nbytes(i), dtype=torch.uint8)
        return [data[s.offset:s.offset + s.nbytes].view(s.dtype).view(s.shape) for s in self.layouts[i][0]]

    def wrote(self, i: int) -> None:
        """Layer i was written through `read`'s views: on disk the drive takes its bytes (counted as wear)."""
        if self.io is not None:
            self.io.count_written(self.nbytes(i))

    def put(self, i: int, values: list) -> None:
        """Replace layer i's bytes with `values` (tensors on any device, in layout order): a LISA layer that
        trained, written back when it streams again, or weights restored from a checkpoint."""
        import torch

        slices, n = self.layouts[i]
        if self.io is None:
            into = self.host[i]
        else:
            self._forget_staged(i)
            into = torch.zeros(n, dtype=torch.uint8)
        for s, v in zip(slices, values, strict=True):
            into[s.offset:s.offset + s.nbytes].view(s.dtype).view(s.shape).copy_(v)
        if self.io is not None:
            self.io.write(self.files[i], 0, into).result()

    def _forget_staged(self, i: int) -> None:
        """Drop a read-ahead of layer i (its bytes are about to change, or are read another way)."""
        if i in self._staged:
            buf, future = self._staged.pop(i)
            future.result()
            self._free.append(buf)

    def done_with(self, i: int, event) -> None:
        if self.io is not None and i in self._staged:
            buf, _ = self._staged.pop(i)
            self._draining.append((buf, event))

    def _buffer(self, wait: bool):
        for k, (buf, event) in enumerate(self._draining):
            if event is None or event.query():
                del self._draining[k]
                self._free.append(buf)
                break
        if not self._free and wait:
            if self._draining:  # the oldest GPU copy out of a staging buffer
                buf, event = self._draining.pop(0)
                event.synchronize()
                return buf
            _, (buf, future) = self._staged.popitem(last=False)  # drop the oldest read-ahead
            future.result()
            return buf
        return self._free.pop() if self._free else None

    def close(self) -> None:
        if self.io is not None:
            self._cleanup()


def _register(block) -> bool:
    """Pin an already filled host block in place; False (copies then run unpinned, slower) if CUDA refuses."""
    import torch

    return int(torch.cuda.cudart().cudaHostRegister(block.data_ptr(), block.numel(), 0)) == 0


def _unregister(block) -> None:
    import torch

    torch.cuda.cudart().cudaHostUnregister(block.data_ptr())


def _remove(io: DiskIO, files: list[Path]) -> None:
    io.close()
    for path in files:
        path.unlink(missing_ok=True)
