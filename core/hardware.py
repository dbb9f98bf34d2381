"""What this machine has: GPUs (NVML and torch), CPU, RAM and the data folder's disk.

A machine without a GPU gets a valid profile too; training then runs on the CPU. The profile is a
plain dict-like dataclass so `profile --json` can write it and `plan --hardware FILE` can read it
back (what-if planning for another machine).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from core import disk_probe, link_probe
from core.errors import BadArgument
from core.settings import read_json_object

_probing = threading.Lock()  # see _disk_speed


@dataclass
class GPU:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: str = ""
    bf16: bool = False
    driver: str = ""
    pcie_gen: int | None = None
    pcie_width: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    # Measured pinned copies over this GPU's link (core.link_probe), bytes/s; None when not measured (no CUDA,
    # a what-if profile, an older profile). core.speed_model uses it over the PCIe generation × width estimate.
    h2d_bytes_per_s: float | None = None
    d2h_bytes_per_s: float | None = None
    # Other programs on this GPU when it was profiled (NVML; None where it cannot say): how busy its cores were (%)
    # and how many other processes computed on it. The plan warns of them: they slow the steps it times.
    busy_pct: int | None = None
    other_programs: int | None = None


@dataclass
class HardwareProfile:
    gpus: list[GPU] = field(default_factory=list)
    cpu_name: str = ""
    cores_physical: int = 1
    cores_logical: int = 1
    cpu_flags: list[str] = field(default_factory=list)
    ram_total_bytes: int = 0
    ram_available_bytes: int = 0
    disk_path: str = ""
    disk_free_bytes: int = 0
    disk_write_bytes_per_s: float | None = None  # measured sequential speed (core.disk_probe), None if unknown
    disk_read_bytes_per_s: float | None = None
    os: str = ""
    torch: str = ""
    cuda: str = ""
    source: str = "this machine"  # or the file a what-if profile came from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "profile") -> "HardwareProfile":
        if not isinstance(data, dict):
            raise BadArgument(f"{source}: a hardware profile must be a JSON object like `tuneforge profile --json` prints.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadArgument(f"{source}: unknown field(s) {', '.join(unknown)} in the hardware profile.")
        data = dict(data)
        try:
            data["gpus"] = [GPU(**g) for g in data.get("gpus", [])]
            profile = cls(**data)
        except TypeError as e:
            raise BadArgument(f"{source}: a GPU entry is not valid ({e}).") from None
        profile.source = data.get("source") or source
        return profile

    @property
    def gpu(self) -> GPU | None:
        return self.gpus[0] if self.gpus else None


def load(path: str | Path) -> HardwareProfile:
    data = read_json_object(path, "`tuneforge profile --json > FILE` makes a hardware profile")
    return HardwareProfile.from_dict(data, source=str(path))


def profile_machine(data_dir: str | Path, history=None, reprobe: bool = False) -> HardwareProfile:
    """This machine's profile. With a History, the disk speed and each GPU's link are measured once per device
    and cached; `reprobe` measures both again."""
    import psutil
    import torch

    vm = psutil.virtual_memory()
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    gpus = _gpus()
    _link_speeds(gpus, history, reprobe)
    return HardwareProfile(
        gpus=gpus,
        cpu_name=_cpu_name(),
        cores_physical=psutil.cpu_count(logical=False) or 1,
        cores_logical=psutil.cpu_count(logical=True) or 1,
        cpu_flags=_cpu_flags(),
        ram_total_bytes=vm.total,
        ram_available_bytes=vm.available,
        disk_path=str(data_dir),
        disk_free_bytes=shutil.disk_usage(data_dir).free,
        **_disk_speed(data_dir, history, reprobe),
        os=f"{platform.system()} {platform.release()}",
        torch=torch.__version__,
        cuda=torch.version.cuda or "",
    )


def _disk_speed(data_dir: Path, history, reprobe: bool) -> dict:
    if history is None:
        return {}
    # One probe at a time: two windows' tasks (the model list's fit answers and a plan) profiling at once
    # would measure the same disk twice, each slowing the other; the second finds the first's result.
    with _probing:
        cached = None if reprobe else history.disk_probe(disk_probe.device_id(data_dir))
        if cached is None:
            cached = dataclasses.asdict(disk_probe.measure(data_dir))
            history.save_disk_probe({**cached, "path": str(data_dir)})
    return {"disk_write_bytes_per_s": cached["write_bytes_per_s"], "disk_read_bytes_per_s": cached["read_bytes_per_s"]}


def _link_speeds(gpus: list[GPU], history, reprobe: bool) -> None:
    """Set each GPU's measured copy speeds from the history's cache, measuring those it lacks."""
    if history is None:
        return
    with _probing:  # as for the disk: one probe at a time, the second finds the first's result
        for gpu in gpus:
            key = link_probe.device_id(gpu)
            cached = None if reprobe else history.link_probe(key)
            if cached is None:
                speed = link_probe.measure_in_child(gpu.index)
                if speed is None:  # no CUDA in a child (a driver without torch's CUDA): nothing to cache
                    continue
                cached = {"device": key, **dataclasses.asdict(speed)}
                history.save_link_probe(cached)
            gpu.h2d_bytes_per_s, gpu.d2h_bytes_per_s = cached["h2d_bytes_per_s"], cached["d2h_bytes_per_s"]


def _gpus() -> list[GPU]:
    gpus = _nvml_gpus()
    if gpus:
        return gpus
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out.append(GPU(i, p.name, total, free, f"{p.major}.{p.minor}", p.major >= 8))
    return out


def _nvml_gpus() -> list[GPU]:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no NVIDIA driver: a normal situation, not an error
        return []
    out = []
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            out.append(GPU(
                index=i, name=_text(pynvml.nvmlDeviceGetName(h)), total_bytes=mem.total, free_bytes=mem.free,
                compute_capability=f"{major}.{minor}", bf16=major >= 8, driver=driver,
                pcie_gen=_maybe(pynvml.nvmlDeviceGetCurrPcieLinkGeneration, h),
                pcie_width=_maybe(pynvml.nvmlDeviceGetCurrPcieLinkWidth, h),
                temperature_c=_maybe(pynvml.nvmlDeviceGetTemperature, h, 0),
                power_w=(lambda mw: mw / 1000 if mw is not None else None)(_maybe(pynvml.nvmlDeviceGetPowerUsage, h)),
                busy_pct=_maybe(lambda: int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)),
                other_programs=_maybe(lambda: sum(1 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                                                  if p.pid != os.getpid())),  # (this process may hold a context)
            ))
    finally:
        pynvml.nvmlShutdown()
    return out


def _maybe(fn, *args):
    try:
        return fn(*args)
    except Exception:  # NVML leaves many fields unsupported on some boards
        return None


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    wanted = {"avx", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma", "f16c"}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return sorted(wanted & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def busy_words(gpu: GPU) -> str:
    """'busy 85%, 2 other programs on it' where other programs were using the GPU when profiled, else ''."""
    parts = ([f"busy {gpu.busy_pct}%"] if gpu.busy_pct else []) + (
        [f"{gpu.other_programs} other program{'s' if gpu.other_programs > 1 else ''} on it"]
        if gpu.other_programs else [])
    return ", ".join(parts)


def describe(profile: HardwareProfile) -> list[str]:
    """Human lines for `tuneforge profile`."""
    gib = 1024**3
    lines = []
    if profile.gpus:
        for g in profile.gpus:
            lines.append(f"GPU {g.index}: {g.name}, {g.total_bytes / gib:.1f} GiB ({g.free_bytes / gib:.1f} free), "
                         f"compute {g.compute_capability}, bf16 {'yes' if g.bf16 else 'no'}"
                         + (f", host→GPU {g.h2d_bytes_per_s / 1e9:.1f} GB/s, "
                            f"GPU→host {g.d2h_bytes_per_s / 1e9:.1f} GB/s" if g.h2d_bytes_per_s and g.d2h_bytes_per_s
                            else "") + (f", {busy}" if (busy := busy_words(g)) else ""))
    else:
        lines.append("GPU: none found; training runs on the CPU (slow, but it works).")
    lines.append(f"CPU: {profile.cpu_name}, {profile.cores_physical} cores / {profile.cores_logical} threads"
                 + (f", {' '.join(profile.cpu_flags)}" if profile.cpu_flags else ""))
    lines.append(f"RAM: {profile.ram_total_bytes / gib:.1f} GiB ({profile.ram_available_bytes / gib:.1f} available)")
    speed = ""
    if profile.disk_write_bytes_per_s:
        mib = 1024**2
        speed = (f", writes {profile.disk_write_bytes_per_s / mib:.0f} MiB/s, "
                 f"reads {profile.disk_read_bytes_per_s / mib:.0f} MiB/s")
    lines.append(f"Disk: {profile.disk_free_bytes / gib:.1f} GiB free at {profile.disk_path}{speed}")
    lines.append(f"Software: {profile.os}, torch {profile.torch}" + (f", CUDA {profile.cuda}" if profile.cuda else ""))
    return lines


