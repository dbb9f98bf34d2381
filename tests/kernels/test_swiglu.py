"""The gated MLP product against transformers' act(gate) · up (SiLU; GELU with the tanh approximation, as
Gemma's gelu_pytorch_tanh), values and gradients over odd sizes and a dtype table; in place and not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tuneforge_kernels.swiglu import GELU_TANH, SILU, gated
from tests.kernels.conftest import DEVICE, NEEDS_GPU, close

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}
ACTIVATIONS = {SILU: F.silu, GELU_TANH: lambda x: F.gelu(x, approximate="tanh")}


def reference(gate, up, activation=SILU):
    return ACTIVATIONS[activation](gate) * up


def run(fn, gate, up, dout, *args, inplace=False):
    """Output and gradients; with `inplace`, gate and up reach fn as temporaries, as in a model's MLP."""
    g, u = gate.clone().requires_grad_(), up.clone().requires_grad_()
    out = fn(g * 1, u * 1, *args, inplace=True) if inplace else fn(g, u, *args)
    out.backward(dout)
    return out.detach(), g.grad, u.grad


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("inplace", [False, True], ids=["fresh", "inplace"])
def test_values_and_gradients_match_transformers(activation, dtype, inplace):
    g = torch.Generator().manual_seed(2)
    gate, up, dout = (torch.randn(3, 13, 67, generator=g).mul(2).to(DEVICE, dtype) for _ in range(3))  # 2613 values
    ours = run(gated, gate, up, dout, activation, inplace=inplace)
    plain = run(reference, gate, up, dout, activation)
    for name, a, b in zip(("out", "dgate", "dup"), ours, plain):
        close(a, b, TOLERANCE[dtype], f"{activation} {dtype} {name}")
        assert a.dtype == dtype


def test_without_inplace_the_inputs_are_left_alone():
    gate, up = torch.randn(5, 67, device=DEVICE, requires_grad=True), torch.randn(5, 67, device=DEVICE)
    kept = gate.detach().clone(), up.clone()
    gated(gate, up).sum().backward()
    assert torch.equal(gate.detach(), kept[0]) and torch.equal(up, kept[1])


def test_inplace_on_a_tensor_something_else_saved_fails_loudly():
    """In place is only for temporaries; if anything else saved the gate, its backward refuses to run on the
    overwritten values instead of computing a wrong gradient."""
    x = torch.randn(5, 67, device=DEVICE, requires_grad=True)
    gate = x * 2
    squared = gate * gate  # saves gate for its backward
    out = gated(gate, torch.randn(5, 67, device=DEVICE), inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (out.sum() + squared.sum()).backward()


@NEEDS_GPU
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_llama_sized_mlp_on_a_gpu(activation):
    gate, up, dout = (torch.randn(2048, 14336, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    for name, a, b in zip(("out", "dgate", "dup"), run(gated, gate, up, dout, activation),
                          run(reference, gate, up, dout, activation)):
        close(a, b, TOLERANCE[torch.bfloat16], name)
