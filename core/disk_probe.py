"""Measure the sequential write and read speed of the disk that holds the data folder.

Offloading weights and optimizer state to NVMe (and the planner's time estimates for it) depend on
this figure, and spec sheets are far from what a laptop's disk does under a filesystem. The probe
writes one bounded file in chunks, fsyncs it (so the write reached the device), asks the kernel to
drop it from the page cache, reads it back, and deletes it. Results are cached in the history by
device id, so a start of the app does not repeat them.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

CHUNK = 4 << 20  # 4 MiB writes: large enough to be sequential, small enough to bound memory


@dataclass
class DiskSpeed:
    device: str  # st_dev of the folder, the cache key
    write_bytes_per_s: float
    read_bytes_per_s: float
    probe_bytes: int
    cache_dropped: bool  # False where the OS offers no way to drop the page cache: the read is optimistic


def device_id(folder: str | Path) -> str:
    return str(os.stat(folder).st_dev)


def measure(folder: str | Path, size: int = 64 << 20) -> DiskSpeed:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".tuneforge-disk-probe-{os.getpid()}-{threading.get_ident()}"  # unique per thread too
    block = os.urandom(CHUNK)  # random bytes: a compressing filesystem cannot flatter the figure
    chunks = max(1, size // CHUNK)
    try:
        start = time.perf_counter()
        with open(path, "wb", buffering=0) as f:
            for _ in range(chunks):
                f.write(block)
            os.fsync(f.fileno())
        write_s = time.perf_counter() - start
        dropped = _drop_cache(path)
        start = time.perf_counter()
        with open(path, "rb", buffering=0) as f:
            while f.read(CHUNK):
                pass
        read_s = time.perf_counter() - start
    finally:
        path.unlink(missing_ok=True)
    total = chunks * CHUNK
    return DiskSpeed(device_id(folder), total / max(write_s, 1e-9), total / max(read_s, 1e-9), total, dropped)


def _drop_cache(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
