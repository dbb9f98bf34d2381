"""NVMe I/O for offloaded tensors: a small thread pool of positioned reads and writes, straight
between a file and a host tensor (a pinned-pool view), with every byte counted.

Reads and writes run on worker threads (os.pread/os.pwrite release the GIL), so the next layer
loads while this one computes. Offsets and lengths are multiples of `pool.ALIGN`, the unit NVMe
drives work in; `bytes_written` is what the planner and the run report as drive wear per step.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from core.offload.pool import ALIGN

WORKERS = 4  # a consumer NVMe drive reaches its bandwidth with a few requests in flight


def padded(nbytes: int) -> int:
    return (nbytes + ALIGN - 1) // ALIGN * ALIGN


def _bytes_of(tensor):
    """A writable memoryview of a contiguous CPU tensor's bytes (any dtype, bf16 included)."""
    assert tensor.device.type == "cpu" and tensor.is_contiguous(), "disk I/O needs a contiguous host tensor"
    return memoryview(tensor.view(-1).view(__import__("torch").uint8).numpy())


class DiskIO:
    """`write(path, offset, tensor)` and `read(path, offset, into)` return Futures; files stay open."""

    def __init__(self, workers: int = WORKERS):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="offload-io")
        self._files: dict[Path, int] = {}
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.bytes_written = 0

    def _fd(self, path: Path, create: bool) -> int:
        path = Path(path)
        with self._lock:
            if path not in self._files:
                flags = os.O_RDWR | (os.O_CREAT if create else 0) | getattr(os, "O_BINARY", 0)
                self._files[path] = os.open(path, flags, 0o600)
            return self._files[path]

    def write(self, path: str | os.PathLike, offset: int, tensor) -> Future:
        assert offset % ALIGN == 0, "offsets are aligned to the drive's unit"
        fd = self._fd(Path(path), create=True)

        def work() -> int:
            data = _bytes_of(tensor)
            done = 0
            while done < len(data):
                done += os.pwrite(fd, data[done:], offset + done)
            with self._lock:
                self.bytes_written += done
            return done

        return self._pool.submit(work)

    def read(self, path: str | os.PathLike, offset: int, into) -> Future:
        assert offset % ALIGN == 0, "offsets are aligned to the drive's unit"
        fd = self._fd(Path(path), create=False)

        def work() -> int:
            data = _bytes_of(into)
            done = 0
            while done < len(data):
                n = os.preadv(fd, [data[done:]], offset + done)
                if n == 0:
                    raise EOFError(f"{path}: ended at byte {offset + done}, expected {offset + len(data)}")
                done += n
            with self._lock:
                self.bytes_read += done
            return done

        return self._pool.submit(work)

    def count_written(self, nbytes: int) -> None:
        """Bytes that reached a file another way (through a memory map): wear all the same."""
        with self._lock:
            self.bytes_written += nbytes

    def sync(self, path: str | os.PathLike) -> None:
        """Flush a file to the drive (before a checkpoint that refers to it is written)."""
        os.fsync(self._fd(Path(path), create=False))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for fd in self._files.values():
                os.close(fd)
            self._files.clear()
