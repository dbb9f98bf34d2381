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
take no gradient (transformers computes them without one).
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
          BACKWARD: tl.constexpr, BLOCK_QH: tl.constexpr, BLOCK_KH: tl.constexpr, BLOCK_D: tl.constexpr):
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
    _rotate(k_ptr, k_out_ptr, batch * k_batch_stride + position * k_seq_stride, k_head_stride, k_heads,
            c1, c2, s1, s2, half, BLOCK_KH, BLOCK_D)


def _last_dim_dense(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _rope_call(q, k, cos, sin, backward):
    """Rotated q and k (b, heads, s, d), cos and sin (b or 1, s, d)."""
    q, k = _last_dim_dense(q), _last_dim_dense(k)
    cos, sin = _last_dim_dense(cos), _last_dim_dense(sin)
    if cos.stride() != sin.stride():
        cos, sin = cos.contiguous(), sin.contiguous()
    q_out, k_out = torch.empty_like(q), torch.empty_like(k)
    if q_out.stride() != q.stride():  # empty_like keeps a dense view's strides; anything else is copied first
        q = q.contiguous()
        q_out = torch.empty_like(q)
    if k_out.stride() != k.stride():
        k = k.contiguous()
        k_out = torch.empty_like(k)
    batch, q_heads, seq, dim = q.shape
    half = dim // 2
    cos_batch_stride = 0 if cos.shape[0] == 1 else cos.stride(0)
    _rope[(batch * seq,)](q, k, q_out, k_out, cos, sin, q.stride(0), q.stride(1), q.stride(2), k.stride(0),
                          k.stride(1), k.stride(2), cos_batch_stride, cos.stride(1), seq, q_heads, k.shape[1], half,
                          BACKWARD=backward, BLOCK_QH=triton.next_power_of_2(q_heads),
                          BLOCK_KH=triton.next_power_of_2(k.shape[1]), BLOCK_D=triton.next_power_of_2(half),
                          enable_fp_fusion=True)
    return q_out, k_out


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


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """(q·cos + rotate_half(q)·sin, k·cos + rotate_half(k)·sin) for q, k (batch, heads, seq, head_dim) and cos,
    sin (batch or 1, seq, head_dim): transformers' `apply_rotary_pos_emb` with unsqueeze_dim=1."""
    if q.dim() != 4 or k.dim() != 4 or cos.dim() != 3 or q.shape[-1] % 2:
        raise ValueError(f"expected q, k (batch, heads, seq, even head_dim) and cos (batch, seq, head_dim); got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(cos.shape)}")
    return Rope.apply(q, k, cos, sin)
