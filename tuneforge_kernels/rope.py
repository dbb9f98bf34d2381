"""Rotary position embedding applied to queries and keys, forward and backward, in one kernel each.

transformers' convention (`rotate_half`): a head vector x = [x1, x2] (two halves of head_dim / 2) becomes
x·cos + [−x2, x1]·sin, i.e.

    out1 = x1·cos1 − x2·sin1        out2 = x2·cos2 + x1·sin2

with cos and sin the model's rotary module's output, (batch or 1, seq, head_dim) in the model's dtype, the
same for every head. The map is linear in x, so its gradient is the transposed rotation:

    dx1 = d1·cos1 + d2·sin2         dx2 = d2·cos2 − d1·sin1

which is the forward with (sin1, sin2) replaced by (−sin2, −sin1): one kernel serves both directions. One
program per (batch, position) loads that position's cos and sin once and rotates every query and key head;
q and k may be strided views (attention's transpose(1, 2)); the outputs get the same strides. cos and sin
take no gradient (transformers computes them without one). Gemma 4 rotates queries and keys in separate calls,
a (batch, seq, heads, head_dim) tensor at a time: `apply_rope_one`, the same kernel with the keys left out.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate(x_ptr, out_ptr, base, head_stride, heads, c1, c2, s1, s2, half,
            BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    h = tl.arange(0, BLOCK_H)
    d = tl.arange(0, BLOCK_D)
    offsets = base + h[:, None] * head_stride + d[None, :]
    inside = (h[:, None] < heads) & (d[None, :] < half)
    x1 = tl.load(x_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + offsets + half, mask=inside, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, (x1 * c1 - x2 * s1).to(out_ptr.dtype.element_ty), mask=inside)
    tl.store(out_ptr + offsets + half, (x2 * c2 + x1 * s2).to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _rope(q_ptr, k_ptr, q_out_ptr, k_out_ptr, cos_ptr, sin_ptr,
          q_batch_stride, q_head_stride, q_seq_stride, k_batch_stride, k_head_stride, k_seq_stride,
          cos_batch_stride, cos_seq_stride, seq_len, q_heads, k_heads, half,
          BACKWARD: tl.constexpr, HAS_K: tl.constexpr, BLOCK_QH: tl.constexpr, BLOCK_KH: tl.constexpr,
          BLOCK_D: tl.constexpr):
    program = tl.program_id(0)
    batch = (program // seq_len).to(tl.int64)
    position = (program % seq_len).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    inside = d < half
    angle = batch * cos_batch_stride + position * cos_seq_stride + d
    c1 = tl.load(cos_ptr + angle, mask=inside, other=0.0).to(tl.float32)[None, :]
    c2 = tl.load(cos_ptr + angle + half, mask=inside, other=0.0).to(tl.float32)[None, :]
    s1 = tl.load(sin_ptr + angle, mask=inside, other=0.0).to(tl.float32)[None, :]
    s2 = tl.load(sin_ptr + angle + half, mask=inside, other=0.0).to(tl.float32)[None, :]
    if BACKWARD:
        s1, s2 = -s2, -s1
    _rotate(q_ptr, q_out_ptr, batch * q_batch_stride + position * q_seq_stride, q_head_stride, q_heads,
            c1, c2, s1, s2, half, BLOCK_QH, BLOCK_D)
    if HAS_K:
        _rotate(k_ptr, k_out_ptr, batch * k_batch_stride + position * k_seq_stride, k_head_stride, k_heads,
                c1, c2, s1, s2, half, BLOCK_KH, BLOCK_D)


def _last_dim_dense(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _rope_call(q, k, cos, sin, backward):
    """Rotated q and k (b, heads, s, d), cos and sin (b or 1, s, d); k None: q alone (None in its place)."""
    has_k = k is not None
    q, k = _last_dim_dense(q), _last_dim_dense(k if has_k else q)
    cos, sin = _last_dim_dense(cos), _last_dim_dense(sin)
    if cos.stride() != sin.stride():
        cos, sin = cos.contiguous(), sin.contiguous()
    q_out = torch.empty_like(q)
    if q_out.stride() != q.stride():  # empty_like keeps a dense view's strides; anything else is copied first
        q = q.contiguous()
        q_out = torch.empty_like(q)
    k = k if has_k else q  # (the kernel leaves it alone)
    k_out = torch.empty_like(k) if has_k else q_out
    if k_out.stride() != k.stride():
        k = k.contiguous()
        k_out = torch.empty_like(k)
    batch, q_heads, seq, dim = q.shape
    half = dim // 2
    cos_batch_stride = 0 if cos.shape[0] == 1 else cos.stride(0)
    _rope[(batch * seq,)](q, k, q_out, k_out, cos, sin, q.stride(0), q.stride(1), q.stride(2), k.stride(0),
                          k.stride(1), k.stride(2), cos_batch_stride, cos.stride(1), seq, q_heads, k.shape[1], half,
                          BACKWARD=backward, HAS_K=has_k, BLOCK_QH=triton.next_power_of_2(q_heads),
                          BLOCK_KH=triton.next_power_of_2(k.shape[1]), BLOCK_D=triton.next_power_of_2(half),
                          enable_fp_fusion=True)
    return q_out, k_out if has_k else None


class Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rope_call(q, k, cos, sin, backward=False)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dq, dk):
        cos, sin = ctx.saved_tensors
        dq, dk = _rope_call(dq, dk, cos, sin, backward=True)
        return dq, dk, None, None


class RopeOne(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _rope_call(x, None, cos, sin, backward=False)[0]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dx):
        cos, sin = ctx.saved_tensors
        return _rope_call(dx, None, cos, sin, backward=True)[0], None, None


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """(q·cos + rotate_half(q)·sin, k·cos + rotate_half(k)·sin) for q, k (batch, heads, seq, head_dim) and cos,
    sin (batch or 1, seq, head_dim): transformers' `apply_rotary_pos_emb` with unsqueeze_dim=1."""
    if q.dim() != 4 or k.dim() != 4 or cos.dim() != 3 or q.shape[-1] % 2:
        raise ValueError(f"expected q, k (batch, heads, seq, even head_dim) and cos (batch, seq, head_dim); got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(cos.shape)}")
    return Rope.apply(q, k, cos, sin)


def apply_rope_one(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1) -> torch.Tensor:
    """x·cos + rotate_half(x)·sin for one tensor, as Gemma 4's `apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim)`:
    x (batch, heads, seq, head_dim) with unsqueeze_dim=1, (batch, seq, heads, head_dim) with 2; cos, sin (batch or
    1, seq, head_dim)."""
    if unsqueeze_dim not in (1, 2) or x.dim() != 4 or cos.dim() != 3 or x.shape[-1] % 2:
        raise ValueError(f"expected x with 4 dimensions (an even head_dim last), cos with 3 and unsqueeze_dim 1 or 2; "
                         f"got {tuple(x.shape)}, {tuple(cos.shape)}, {unsqueeze_dim}")
    if unsqueeze_dim == 1:
        return RopeOne.apply(x, cos, sin)
    return RopeOne.apply(x.transpose(1, 2), cos, sin).transpose(1, 2)
