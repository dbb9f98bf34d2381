"""What Triton needs from the machine, besides itself, before our kernels can run on a GPU.

A GPU new enough: Triton compiles for compute capability 7.0 (Volta) and newer, the same line torch draws
before it hands a GPU to Triton (torch.utils._triton.has_triton); a Pascal card trains on the plain path.

The first time Triton launches a kernel on a machine it compiles a small C module, its launcher, with the
system's C compiler against Python's headers, and caches it (~/.triton/cache). Without a compiler, or without
the headers (a Python built without its development files; a packaged app that left them out), that first
launch raises in the middle of the first training step. Checked here before anything is patched, so a run on
such a machine takes the plain PyTorch path and says why, instead of crashing.

On Windows, Triton's own builds bring their compiler (TinyCC) and headers, so there is nothing to check.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path


MIN_CAPABILITY = (7, 0)


def capability_of(text: str) -> tuple[int, int] | None:
    """'8.9' → (8, 9); None when unknown (an empty or odd field of a hardware profile)."""
    major, _, minor = text.partition(".")
    return (int(major), int(minor or 0)) if major.isdigit() and (minor or "0").isdigit() else None


def gpu_too_old(name: str, capability: tuple[int, int] | None) -> str | None:
    """Why Triton cannot compile for this GPU (None when it can, or when its capability is unknown)."""
    if capability is None or capability >= MIN_CAPABILITY:
        return None
    return (f"{name} has compute capability {capability[0]}.{capability[1]}, and Triton compiles for "
            f"{MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} (Volta) and newer: the plain PyTorch path runs")


def python_headers() -> Path:
    """Where Triton looks for Python.h: this interpreter's include folder, in its default install scheme
    (Debian's 'posix_local' read as 'posix_prefix', as Triton does)."""
    scheme = sysconfig.get_default_scheme()
    return Path(sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"])


def missing() -> str | None:
    """Why Triton could not build its launcher here (None when it can)."""
    if os.name == "nt":
        return None
    named = os.environ.get("CC")
    compiler = shutil.which(named) if named else shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        where = f"CC names {named!r}, which is not there" if named else "neither gcc nor clang is installed"
        return (f"Triton compiles a small launcher with a C compiler the first time, and {where}: the plain PyTorch "
                "path runs (install gcc to use our kernels)")
    headers = python_headers()
    if not (headers / "Python.h").is_file():
        return (f"Triton compiles its launcher against Python's headers, and {headers} has no Python.h: the plain "
                "PyTorch path runs (install Python's development headers, e.g. python3-dev, to use our kernels)")
    return None


# `python -m tuneforge_kernels.toolchain` (`tuneforge --run-module tuneforge_kernels.toolchain` when packaged)
if __name__ == "__main__":
    import sys

    why = missing()
    print(why or f"Triton can build its launcher here (Python's headers in {python_headers()}).")
    sys.exit(1 if why else 0)
