"""Optimizer state of switched-off layers kept on NVMe instead of dropped (LISA with host state).

One scratch file under the run folder holds a fixed slot per parameter (its fp32 master and two
Adam moments, each padded to the drive's 4 KiB unit), allocated the first time that parameter
spills and reused by every later spill of it, so the file grows to at most the trained weights'
state and never fragments. Reads and writes go through `core.offload.disk.DiskIO` (a few worker
threads, positioned I/O), so a spill overlaps the next step's compute.

The file is scratch: a checkpoint keeps a finished copy of it (streamed file to file, so the spilled
state never has to fit in RAM) with the table of slots in `optimizer.pt`, and a resumed run copies
it back. So a run killed in the middle of a spill loses only the scratch file, and its last
checkpoint is whole.
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import Future
from pathlib import Path

from core.errors import DiskFull
from core.offload.disk import DiskIO, padded

FILE = "optimizer-state.spill"
SPARE = 1 << 30  # a spill never takes the drive's last GiB: the checkpoints after it need room too


class StateSpill:
    """`put(key, tensors)` writes a parameter's state to its slot; `get(key, into)` reads it back."""

    def __init__(self, folder: str | os.PathLike, io: DiskIO | None = None):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FILE
        self.path.write_bytes(b"")  # a fresh scratch file: whatever a killed run left is not ours
        self.io = io or DiskIO()
        self._slots: dict[object, dict[str, int]] = {}  # key → tensor name → offset
        self._held: set = set()  # keys whose latest state is in the file
        self._end = 0
        self.writes = 0  # bytes written, for wear per step (also counted by DiskIO, shared with others)
        self.reads = 0

    def holds(self, key) -> bool:
        return key in self._held

    def _slot(self, key, tensors: dict) -> dict[str, int]:
        slot = self._slots.get(key)
        if slot is None:
            grow = sum(padded(t.numel() * t.element_size()) for t in tensors.values())
            free = shutil.disk_usage(self.path.parent).free
            if grow + SPARE > free:  # a clean stop with a sentence, not a write failing halfway
                raise DiskFull(f"{self.path.parent}: spilling optimizer state needs {grow / 2**20:.0f} MiB more "
                               f"there but only {free / 2**30:.1f} GiB is free (1 GiB is kept for checkpoints); "
                               "free some space, or turn spill_state off to drop switched-off layers' state.")
            slot = {}
            for name, t in tensors.items():
                slot[name] = self._end
                self._end += padded(t.numel() * t.element_size())
            self._slots[key] = slot
        elif set(slot) != set(tensors):
            raise ValueError(f"spill slot {key!r} holds {sorted(slot)}, not {sorted(tensors)}")
        return slot

    def put(self, key, tensors: dict) -> list[Future]:
        """Write each tensor (contiguous, on the host; keep them alive until the futures finish)."""
        slot = self._slot(key, tensors)
        self._held.add(key)
        self.writes += sum(t.numel() * t.element_size() for t in tensors.values())
        return [self.io.write(self.path, slot[name], t) for name, t in tensors.items()]

    def get(self, key, into: dict) -> list[Future]:
        """Read the spilled tensors into `into` (same names, shapes and dtypes as were put)."""
        if key not in self._held:
            raise KeyError(f"no spilled state for {key!r}")
        slot = self._slot(key, into)
        self.reads += sum(t.numel() * t.element_size() for t in into.values())
        return [self.io.read(self.path, slot[name], t) for name, t in into.items()]

    def discard(self, key) -> None:
        """Forget the spilled state of `key` (its slot stays for the next spill)."""
        self._held.discard(key)

    def table(self) -> dict:
        """Where each held key's tensors lie in the file (name → offset), for a checkpoint's index."""
        return {key: dict(self._slots[key]) for key in self._held}

    def save_copy(self, target: str | os.PathLike) -> None:
        """A durable copy of the file, streamed by the kernel (into a checkpoint being assembled; every
        write must have finished). The run's RAM never holds the spilled state to checkpoint it."""
        shutil.copyfile(self.path, target)
        with open(target, "rb+") as f:
            os.fsync(f.fileno())

    def adopt(self, source: str | os.PathLike, table: dict) -> None:
        """Go on from a checkpoint's copy: its bytes become the scratch file (same inode, so open
        descriptors stay valid) and `table` (key → name → offset) the slots it holds."""
        shutil.copyfile(source, self.path)
        self._slots = {key: dict(slot) for key, slot in table.items()}
        self._held = set(table)
        self._end = padded(self.path.stat().st_size)

    @property
    def file_bytes(self) -> int:
        return self._end

    def close(self) -> None:
        self.io.close()
        self.path.unlink(missing_ok=True)
