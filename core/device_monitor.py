"""What the training device is doing right now, for the live dashboard: GPU utilisation, memory and
temperature from NVML, or the CPU's load and RAM when training runs on the CPU.

Read from the app's process, not the trainer's: NVML sees the whole GPU (what other programs use
counts against the run too), and a dashboard that reattaches to a background run needs no help
from the trainer. Each call costs well under a millisecond, so the window can poll every second.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
_nvml_ready: list = []


@dataclass(frozen=True)
class Sample:
    device: str  # "GPU 0 (NVIDIA GeForce RTX 4090)" or "CPU"
    utilisation: float | None  # percent busy
    memory_used: int  # bytes
    memory_total: int
    temperature: float | None = None  # °C; None where the sensor cannot be read

    def text(self) -> str:
        """'GPU 0 · 97% busy · 21.4 / 24.0 GiB · 71 °C' for one line of the dashboard."""
        parts = [self.device]
        if self.utilisation is not None:
            parts.append(f"{self.utilisation:.0f}% busy")
        parts.append(f"{self.memory_used / GIB:.1f} / {self.memory_total / GIB:.1f} GiB")
        if self.temperature is not None:
            parts.append(f"{self.temperature:.0f} °C")
        return " · ".join(parts)


def sample(device: str = "cpu", gpu_index: int | None = None) -> Sample:
    """The device a run trains on, now; falls back to the CPU's figures when NVML cannot be read."""
    if device == "cuda":
        gpu = _gpu(gpu_index or 0)
        if gpu is not None:
            return gpu
    return _cpu()


def _gpu(index: int) -> Sample | None:
    try:
        import pynvml

        if not _nvml_ready:
            pynvml.nvmlInit()  # once per process: initialising takes far longer than a reading
            _nvml_ready.append(True)
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(h)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        util = pynvml.nvmlDeviceGetUtilizationRates(h).gpu
        try:
            temp = float(pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU))
        except pynvml.NVMLError:
            temp = None  # some laptops' GPUs hide it
    except Exception:  # no driver, no library, a lost GPU: the dashboard shows the CPU instead
        return None
    name = name.decode() if isinstance(name, bytes) else str(name)
    return Sample(f"GPU {index} ({name})", float(util), int(mem.used), int(mem.total), temp)


def _cpu() -> Sample:
    import psutil

    vm = psutil.virtual_memory()
    temp = None
    try:
        readings = [t.current for ts in (psutil.sensors_temperatures() or {}).values() for t in ts if t.current]
        temp = max(readings) if readings else None
    except (AttributeError, OSError):  # not offered on every platform
        pass
    # interval=None: the load since the previous call, so polling does not block the window
    return Sample("CPU", psutil.cpu_percent(interval=None), int(vm.total - vm.available), int(vm.total), temp)
