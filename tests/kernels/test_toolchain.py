"""What Triton needs from the machine to build its launcher: a C compiler and Python's headers; without
them a run takes the plain path with the reason instead of crashing at its first kernel launch."""

import os
import sysconfig

import pytest

from tuneforge_kernels import toolchain

HEADERS = (toolchain.python_headers() / "Python.h").is_file()


def fake_cc(folder):
    cc = folder / "my-cc"
    cc.write_text("#!/bin/sh\nexit 0\n")
    cc.chmod(0o755)
    return str(cc)


@pytest.mark.skipif(os.name == "nt", reason="Triton's Windows builds bring their own compiler")
@pytest.mark.parametrize("case,expected", [
    ("no compiler on PATH", "neither gcc nor clang is installed"),
    ("CC names nothing", "CC names 'no-such-cc', which is not there"),
    ("CC names a compiler", None if HEADERS else "has no Python.h"),
    ("headers missing", "has no Python.h"),
])
def test_the_launcher_needs_a_compiler_and_the_headers(case, expected, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv("CC", raising=False)
    if case == "no compiler on PATH":
        monkeypatch.setenv("PATH", str(empty))
    elif case == "CC names nothing":
        monkeypatch.setenv("CC", "no-such-cc")
    else:
        monkeypatch.setenv("CC", fake_cc(tmp_path))
    if case == "headers missing":  # an interpreter whose include folder is empty, as in a bundle that left it out
        real = sysconfig.get_paths
        monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**real(*a, **k), "include": str(empty)})
    why = toolchain.missing()
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why and "the plain PyTorch path runs" in why, why


@pytest.mark.parametrize("field,capability,too_old", [
    ("6.1", (6, 1), True),  # Pascal: GTX 1080 Ti
    ("7.0", (7, 0), False),  # Volta: V100
    ("7.5", (7, 5), False),  # Turing: T4
    ("12.0", (12, 0), False),
    ("", None, False),  # unknown: the kernels are tried
    ("sm_86", None, False),
])
def test_triton_needs_volta_or_newer(field, capability, too_old):
    assert toolchain.capability_of(field) == capability
    why = toolchain.gpu_too_old("NVIDIA GeForce GTX 1080 Ti", capability)
    assert (why is not None) == too_old
    assert why is None or why.startswith("NVIDIA GeForce GTX 1080 Ti has compute capability 6.1, and Triton")
