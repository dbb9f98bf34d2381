"""Rotary embedding against transformers' rotate_half formula, values and gradients, over odd head sizes, more
query heads than key heads, strided q/k (attention's transpose) and per-row cos/sin (packed rows)."""

from __future__ import annotations

import pytest
import torch

from tuneforge_kernels.rope import apply_rope, apply_rope_one
from tests.kernels.conftest import DEVICE, NEEDS_GPU, close

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def reference(q, k, cos, sin):
    """transformers' apply_rotary_pos_emb with unsqueeze_dim=1."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin


def test_the_reference_is_transformers_own():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    q, k, cos, sin = torch.randn(2, 3, 5, 8), torch.randn(2, 1, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    for a, b in zip(reference(q, k, cos, sin), apply_rotary_pos_emb(q, k, cos, sin)):
        assert torch.equal(a, b)


def run(fn, qkv_shape, cos, sin, dq, dk, strided):
    """Outputs and gradients of fn on q, k of (batch, heads, seq, dim), made the way attention makes them
    (a projection's (batch, seq, heads·dim) viewed and transposed) when `strided`."""
    (batch, q_heads, k_heads, seq, dim), g = qkv_shape, torch.Generator().manual_seed(3)
    q_flat = torch.randn(batch, seq, q_heads * dim, generator=g).to(DEVICE, cos.dtype).requires_grad_()
    k_flat = torch.randn(batch, seq, k_heads * dim, generator=g).to(DEVICE, cos.dtype).requires_grad_()
    q = q_flat.view(batch, seq, q_heads, dim).transpose(1, 2)
    k = k_flat.view(batch, seq, k_heads, dim).transpose(1, 2)
    if not strided:
        q, k = q.contiguous(), k.contiguous()
    q_out, k_out = fn(q, k, cos, sin)
    ((q_out.float() * dq).sum() + (k_out.float() * dk).sum()).backward()
    return q_out.detach(), k_out.detach(), q_flat.grad, k_flat.grad


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("strided", [True, False], ids=["strided", "contiguous"])
@pytest.mark.parametrize("per_row", [False, True], ids=["shared-positions", "per-row-positions"])
def test_values_and_gradients_match_transformers(dtype, strided, per_row):
    batch, q_heads, k_heads, seq, dim = 2, 5, 3, 13, 18  # half of 18 is 9: no power of two anywhere
    g = torch.Generator().manual_seed(4)
    cos, sin = (torch.randn(batch if per_row else 1, seq, dim, generator=g).to(DEVICE, dtype) for _ in range(2))
    dq = torch.randn(batch, q_heads, seq, dim, generator=g).to(DEVICE)
    dk = torch.randn(batch, k_heads, seq, dim, generator=g).to(DEVICE)
    shape = (batch, q_heads, k_heads, seq, dim)
    ours, plain = run(apply_rope, shape, cos, sin, dq, dk, strided), run(reference, shape, cos, sin, dq, dk, strided)
    for name, a, b in zip(("q", "k", "dq", "dk"), ours, plain):
        close(a, b, TOLERANCE[dtype], f"{dtype} {name}")
    assert ours[0].stride() == plain[0].stride() or not strided


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
def test_one_tensor_at_a_time_as_gemma_4_rotates(dtype, unsqueeze_dim):
    """Gemma 4's apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim): queries or keys alone, (batch, seq, heads, dim)
    straight from the projection's view with unsqueeze_dim=2; values and the gradient as its own function gives."""
    from transformers.models.gemma4.modeling_gemma4 import apply_rotary_pos_emb

    batch, heads, seq, dim = 2, 3, 7, 18
    g = torch.Generator().manual_seed(6)
    cos, sin = (torch.randn(batch, seq, dim, generator=g).to(DEVICE, dtype) for _ in range(2))
    flat = torch.randn(batch, seq, heads * dim, generator=g).to(DEVICE, dtype)
    dy = torch.randn(batch, seq, heads, dim, generator=g).to(DEVICE)
    results = []
    for fn in (apply_rope_one, apply_rotary_pos_emb):
        leaf = flat.clone().requires_grad_()
        x = leaf.view(batch, seq, heads, dim)
        x = x if unsqueeze_dim == 2 else x.transpose(1, 2)
        out = fn(x, cos, sin, unsqueeze_dim=unsqueeze_dim)
        out = out if unsqueeze_dim == 2 else out.transpose(1, 2)
        (out.float() * dy).sum().backward()
        results.append((out.detach(), leaf.grad))
    for name, a, b in zip(("x", "dx"), *results):
        close(a, b, TOLERANCE[dtype], f"{dtype} {name}")
        assert a.shape == b.shape and a.dtype == b.dtype


@NEEDS_GPU
def test_llama_sized_heads_on_a_gpu():
    batch, q_heads, k_heads, seq, dim = 2, 32, 8, 2048, 128
    positions = torch.arange(seq, device="cuda", dtype=torch.float32)
    freqs = positions[:, None] / 500000 ** (torch.arange(0, dim, 2, device="cuda") / dim)
    emb = torch.cat((freqs, freqs), -1)[None]
    cos, sin = emb.cos().bfloat16(), emb.sin().bfloat16()
    dq = torch.randn(batch, q_heads, seq, dim, device="cuda")
    dk = torch.randn(batch, k_heads, seq, dim, device="cuda")
    shape = (batch, q_heads, k_heads, seq, dim)
    for name, a, b in zip(("q", "k", "dq", "dk"), run(apply_rope, shape, cos, sin, dq, dk, True),
                          run(reference, shape, cos, sin, dq, dk, True)):
        close(a, b, TOLERANCE[torch.bfloat16], name)


@NEEDS_GPU
def test_gemma_4_sized_heads_one_tensor_at_a_time_on_a_gpu():
    """Gemma 4 31B's full layers: 32 query heads of 512, straight from the projection's view (unsqueeze_dim=2)."""
    from transformers.models.gemma4.modeling_gemma4 import apply_rotary_pos_emb

    batch, heads, seq, dim = 1, 32, 2048, 512
    positions = torch.arange(seq, device="cuda", dtype=torch.float32)
    freqs = positions[:, None] / 1e6 ** (torch.arange(0, dim, 2, device="cuda") / dim)
    emb = torch.cat((freqs, freqs), -1)[None]
    cos, sin = emb.cos().bfloat16(), emb.sin().bfloat16()
    flat = torch.randn(batch, seq, heads * dim, device="cuda", dtype=torch.bfloat16)
    dy = torch.randn(batch, seq, heads, dim, device="cuda")
    results = []
    for fn in (apply_rope_one, apply_rotary_pos_emb):
        leaf = flat.clone().requires_grad_()
        out = fn(leaf.view(batch, seq, heads, dim), cos, sin, unsqueeze_dim=2)
        (out.float() * dy).sum().backward()
        results.append((out.detach(), leaf.grad))
    for name, a, b in zip(("x", "dx"), *results):
        close(a, b, TOLERANCE[torch.bfloat16], name)
