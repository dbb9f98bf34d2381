"""RMSNorm against transformers' formulas (Llama's cast-then-weight, Gemma's (1 + weight) in fp32, Gemma 4's weight
in fp32, or none), values and gradients, over odd shapes and a dtype table; a frozen weight gets no gradient."""

from __future__ import annotations

import pytest
import torch

from tuneforge_kernels.rmsnorm import GEMMA, GEMMA4, LLAMA, VARIANTS, rms_norm
from tests.kernels.conftest import DEVICE, NEEDS_GPU, close

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}
EPS = 1e-6


def reference(x, weight, eps, variant=LLAMA):
    """transformers' LlamaRMSNorm (also Mistral, Qwen2, Qwen3), Gemma2/Gemma3RMSNorm and Gemma4RMSNorm forwards."""
    if variant in (GEMMA, GEMMA4):
        out = x.float()
        mean_square = out.pow(2).mean(-1, keepdim=True) + eps
        out = out * (torch.pow(mean_square, -0.5) if variant == GEMMA4 else torch.rsqrt(mean_square))
        if weight is None:
            return out.type_as(x)
        return (out * (weight.float() + (1.0 if variant == GEMMA else 0.0))).type_as(x)
    dtype = x.dtype
    out = x.to(torch.float32)
    out = out * torch.rsqrt(out.pow(2).mean(-1, keepdim=True) + eps)
    return weight * out.to(dtype)


def run(fn, x, weight, dy, *args):
    x = x.clone().requires_grad_()
    weight = weight.clone().requires_grad_() if weight is not None else None
    y = fn(x, weight, *args)
    y.backward(dy)
    return y.detach(), x.grad, weight.grad if weight is not None else None


# (rows' shape, hidden): a batch × sequence of odd width, a single row, and q_norm's (batch, seq, heads, head_dim)
SHAPES = [((3, 13), 67), ((1,), 130), ((2, 5, 3), 16)]


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_values_and_gradients_match_transformers(shape, variant, dtype):
    rows, hidden = shape
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(*rows, hidden, generator=g) * 3).to(DEVICE, dtype)
    weight = (torch.randn(hidden, generator=g) * 0.2 + (0.0 if variant == GEMMA else 1.0)).to(DEVICE, dtype)
    weights = [weight, None] if variant == GEMMA4 else [weight]  # Gemma 4's value norms have none
    dy = torch.randn(*rows, hidden, generator=g).to(DEVICE, dtype)
    for weight in weights:
        ours, plain = run(rms_norm, x, weight, dy, EPS, variant), run(reference, x, weight, dy, EPS, variant)
        for name, a, b in zip(("y", "dx", "dweight"), ours, plain):
            if a is None:
                assert b is None and weight is None, name
                continue
            close(a, b, TOLERANCE[dtype], f"{variant} {dtype} {name}")
            assert a.dtype == b.dtype, name


def test_an_fp32_weight_on_bf16_rows_gives_fp32_as_llama_does():
    x = torch.randn(4, 67, device=DEVICE).bfloat16()
    weight = torch.randn(67, device=DEVICE)
    dy = torch.randn(4, 67, device=DEVICE)
    ours, plain = run(rms_norm, x, weight, dy, EPS), run(reference, x, weight, dy, EPS)
    assert ours[0].dtype == torch.float32
    for name, a, b in zip(("y", "dx", "dweight"), ours, plain):
        close(a, b, TOLERANCE[torch.bfloat16], name)


def test_strided_rows_and_a_frozen_weight():
    base = torch.randn(13, 2, 67, device=DEVICE)
    x = base.transpose(0, 1).requires_grad_()  # not contiguous
    weight = torch.randn(67, device=DEVICE)  # frozen, as under LoRA
    rms_norm(x, weight, EPS).sum().backward()
    expected = base.transpose(0, 1).clone().requires_grad_()
    reference(expected, weight, EPS).sum().backward()
    close(x.grad, expected.grad, TOLERANCE[torch.float32], "dx")
    assert weight.grad is None


@NEEDS_GPU
@pytest.mark.parametrize("variant", VARIANTS)
def test_llama_sized_rows_on_a_gpu(variant):
    x = torch.randn(4, 2048, 4096, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(4096, device="cuda", dtype=torch.bfloat16) * 0.1 + 1
    dy = torch.randn_like(x)
    for name, a, b in zip(("y", "dx", "dweight"), run(rms_norm, x, weight, dy, EPS, variant),
                          run(reference, x, weight, dy, EPS, variant)):
        close(a, b, TOLERANCE[torch.bfloat16], name)
