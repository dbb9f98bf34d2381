"""The gated MLP's activation product, act(gate) · up, forward and backward in one pass each.

Llama-style MLPs compute down(act(gate(x)) · up(x)); the plain path keeps act(gate) as one more tensor of
tokens × intermediate and runs three elementwise kernels each way. Here one kernel reads gate and up and
writes the product (math in fp32, one rounding), and one kernel writes both gradients:

- SwiGLU (act = silu, Llama, Mistral, Qwen): silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 − σ(g)));
- GeGLU with the tanh approximation (Gemma's gelu_pytorch_tanh): gelu(g) = ½g(1 + tanh(y)) = g·σ(2y) with
  y = √(2/π)(g + 0.044715g³), so gelu'(g) = σ(2y) + g·σ(2y)(1 − σ(2y))·2y'.

`inplace=True` lets backward write the gradients over the saved gate and up tensors instead of allocating
two more of that size. Only the caller knows that nothing else reads them afterwards (in a transformers MLP
they are the projections' temporary outputs); tensors the caller still holds must not be passed with it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SILU, GELU_TANH = "silu", "gelu_tanh"
BLOCK = 1024


@triton.jit
def _gelu_tanh_parts(g):
    """σ(2y) and d(2y)/dg for the tanh approximation of GELU."""
    k = 0.7978845608028654  # √(2/π)
    s = tl.sigmoid(2.0 * k * (g + 0.044715 * g * g * g))
    return s, 2.0 * k * (1.0 + 3.0 * 0.044715 * g * g)


@triton.jit
def _gated_forward(g_ptr, u_ptr, out_ptr, n, GELU: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    g = tl.load(g_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    if GELU:
        s, _ = _gelu_tanh_parts(g)
    else:
        s = tl.sigmoid(g)
    tl.store(out_ptr + offsets, (g * s * u).to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _gated_backward(dout_ptr, g_ptr, u_ptr, dg_ptr, du_ptr, n, GELU: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    dout = tl.load(dout_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
    if GELU:
        s, dy = _gelu_tanh_parts(g)
        d_act = s + g * s * (1.0 - s) * dy
    else:
        s = tl.sigmoid(g)
        d_act = s * (1.0 + g * (1.0 - s))
    # Every element is read above before it is written here, so dg_ptr/du_ptr may be g_ptr/u_ptr.
    tl.store(du_ptr + offsets, (dout * g * s).to(du_ptr.dtype.element_ty), mask=inside)
    tl.store(dg_ptr + offsets, (dout * u * d_act).to(dg_ptr.dtype.element_ty), mask=inside)


class GatedActivation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up, activation, inplace):
        if gate.shape != up.shape:
            raise ValueError(f"gate {tuple(gate.shape)} and up {tuple(up.shape)} differ")
        gate, up = gate.contiguous(), up.contiguous()
        out = torch.empty_like(gate, dtype=torch.promote_types(gate.dtype, up.dtype))
        n = gate.numel()
        _gated_forward[(triton.cdiv(n, BLOCK),)](gate, up, out, n, GELU=activation == GELU_TANH, BLOCK=BLOCK,
                                                 enable_fp_fusion=True)
        ctx.save_for_backward(gate, up)
        ctx.activation, ctx.inplace = activation, inplace
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        gate, up = ctx.saved_tensors
        dout = dout.contiguous()
        dg, du = (gate, up) if ctx.inplace else (torch.empty_like(gate), torch.empty_like(up))
        n = gate.numel()
        _gated_backward[(triton.cdiv(n, BLOCK),)](dout, gate, up, dg, du, n, GELU=ctx.activation == GELU_TANH,
                                                  BLOCK=BLOCK, enable_fp_fusion=True)
        if ctx.inplace:  # tell autograd: anything else that saved these tensors now fails loudly, not silently
            torch.autograd.graph.increment_version(gate)
            torch.autograd.graph.increment_version(up)
        return dg, du, None, None


def gated(gate: torch.Tensor, up: torch.Tensor, activation: str = SILU, inplace: bool = False) -> torch.Tensor:
    """act(gate) · up for act SILU or GELU_TANH; see the module's docstring for `inplace`."""
    if activation not in (SILU, GELU_TANH):
        raise ValueError(f"activation must be {SILU!r} or {GELU_TANH!r}, not {activation!r}")
    return GatedActivation.apply(gate, up, activation, inplace)


def swiglu(gate: torch.Tensor, up: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return gated(gate, up, SILU, inplace)


def geglu_tanh(gate: torch.Tensor, up: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return gated(gate, up, GELU_TANH, inplace)

