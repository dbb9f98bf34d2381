"""Without a CUDA GPU the kernels run in Triton's interpreter, on CPU tensors. Triton reads TRITON_INTERPRET when
a kernel is decorated, that is when its module is first imported, so it is set here, as pytest loads this folder
(before any test module in it imports a kernel), and a fixture checks that it took. Sizes in these tests are
small: the interpreter runs each program in numpy."""

from __future__ import annotations

import importlib
import os

import pytest
import torch

from tuneforge_kernels import OPS

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
NEEDS_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="session", autouse=True)
def kernels_in_the_interpreter():
    if torch.cuda.is_available():
        return
    from triton.runtime.jit import JITFunction  # the interpreter's kernels are InterpretedFunction instead

    compiled = [f"{module}.{name}" for module in OPS.values()
                for name, fn in vars(importlib.import_module(f"tuneforge_kernels.{module}")).items()
                if isinstance(fn, JITFunction)]
    if compiled:
        pytest.fail(f"{', '.join(compiled)} were decorated before TRITON_INTERPRET=1 was set: something imported a "
                    "kernel module before tests/kernels/conftest.py ran; import tuneforge_kernels lazily outside tests/kernels.")


# op → (its module in tuneforge_kernels, the function our patched forwards call): counted to prove the kernel ran
ENTRY = {"rmsnorm": ("rmsnorm", "rms_norm"), "swiglu": ("swiglu", "gated"), "rope": ("rope", "apply_rope"),
         "rope_one": ("rope", "apply_rope_one"),  # (Gemma 4: queries and keys in separate calls)
         "cross_entropy": ("fused_linear_cross_entropy", "fused_linear_cross_entropy"),
         "lora": ("lora", "lora_linear"), "lora_mlp": ("lora", "lora_mlp")}


@pytest.fixture
def calls(monkeypatch):
    """op → how many times our kernel's entry function ran."""
    counts = dict.fromkeys(ENTRY, 0)
    for op, (module_name, name) in ENTRY.items():
        module = importlib.import_module(f"tuneforge_kernels.{module_name}")
        original = getattr(module, name)

        def counted(*args, _op=op, _original=original, **kwargs):
            counts[_op] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    return counts


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str = "") -> None:
    """|actual − expected| ≤ tol × the largest |expected| (scale-free: gradients of every size, one table)."""
    actual, expected = actual.detach().float(), expected.detach().float()
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = expected.abs().max().item() if expected.numel() else 0.0
    error = (actual - expected).abs().max().item() if expected.numel() else 0.0
    assert error <= tol * scale + 1e-12, f"{what}: off by {error:.3g}, more than {tol} × {scale:.3g}"
