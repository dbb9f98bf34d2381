"""LoRA linears and the LoRA gated MLP: the frozen base projection and the low-rank path in one autograd node each.

A LoRA linear computes y = x·Wᵀ (+ bias) + s·(x·Aᵀ)·Bᵀ with W frozen (a float tensor, or bitsandbytes' 4-bit
nf4/fp4 weight dequantized on the fly) and dropout off. peft runs it as four modules, each an autograd node that
keeps its own input; here it is one node:

- forward: xa = x·Aᵀ, then y = x·Wᵀ with s·xa·Bᵀ added into it by the same GEMM's epilogue (`addmm_`, beta 1,
  alpha s), so the low-rank product never exists as a tokens × out tensor of its own;
- saved for backward: x and xa (tokens × rank, rank/in of x's size), A and B; not x·W, not the dequantized W;
- backward: g = dY·B (tokens × rank), dB = s·dYᵀ·xa, dA = s·gᵀ·x, dX = dY·W + s·g·A (one GEMM plus an `addmm_`
  epilogue again; skipped when x needs no gradient, as in the first layer of a LoRA model). W gets no gradient.

The matmuls are torch's (cuBLAS); the LoRA path runs in x's dtype (A and B, which peft keeps in fp32 beside a
bf16 base, are cast to it, their gradients cast back), as the base GEMM does, with fp32 accumulation.

4-bit bases: `_dequantize_4bit` is our Triton kernel, one pass from bitsandbytes' packed weight (two 4-bit codes a
byte, the high nibble first) and per-block absmax (double-quantized absmax is first expanded with bitsandbytes'
`dequantize_blockwise`, a blocks-sized tensor) to the compute dtype, in forward and again in backward. It writes
into one scratch buffer per (shape, dtype, device), shared by every layer of that shape: the layers run one after
another, each use of the buffer (one GEMM) ends before the next dequantization is queued on the same stream, so
a QLoRA model holds one dequantized weight per projection shape, not one per layer. What this is not yet: the
dequantization inside the GEMM's tiles (W never materialised), which is where a GPU would gain most.

The gated MLP, down(act(gate(x)) · up(x)) with all three projections LoRA linears, is one node too: forward saves
x, gate(x), up(x) and the three small xa's, not act(gate)·up (the down projection's input, tokens ×
intermediate), which backward recomputes with swiglu.py's kernel; swiglu.py's backward kernel then writes
d gate and d up over the saved gate and up, which nobody else holds. Against peft's modules (which keep gate, act
(gate), up and the product) that is two tensors of tokens × intermediate less per layer.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tuneforge_kernels.swiglu import BLOCK as GATED_BLOCK
from tuneforge_kernels.swiglu import GELU_TANH, SILU, _gated_backward, _gated_forward

BLOCK = 1024


@triton.jit
def _dequantize_4bit(packed_ptr, absmax_ptr, code_ptr, out_ptr, n, QBLOCK: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = offsets < n
    byte = tl.load(packed_ptr + offsets // 2, mask=inside, other=0).to(tl.int32)
    nibble = tl.where(offsets % 2 == 0, byte >> 4, byte & 15)
    value = tl.load(code_ptr + nibble, mask=inside, other=0.0) * tl.load(absmax_ptr + offsets // QBLOCK, mask=inside,
                                                                           other=0.0)
    tl.store(out_ptr + offsets, value.to(out_ptr.dtype.element_ty), mask=inside)


_SCRATCH: dict[tuple, torch.Tensor] = {}


def dequantize_4bit(packed: torch.Tensor, quant_state, dtype: torch.dtype, scratch: bool = True) -> torch.Tensor:
    """bitsandbytes' 4-bit weight (packed codes and its QuantState) as a `quant_state.shape` tensor of `dtype`; with
    `scratch`, in the buffer shared by all weights of that shape (valid until the next call for that shape)."""
    absmax = quant_state.absmax
    if quant_state.nested:
        from bitsandbytes.functional import dequantize_blockwise

        absmax = dequantize_blockwise(absmax, quant_state.state2) + quant_state.offset
    absmax = absmax.float().contiguous()
    code = quant_state.code.to(device=packed.device, dtype=torch.float32)
    shape = tuple(quant_state.shape)
    key = (shape, dtype, packed.device)
    out = _SCRATCH.get(key) if scratch else None
    if out is None:
        out = torch.empty(shape, dtype=dtype, device=packed.device)
        if scratch:
            _SCRATCH[key] = out
    n = out.numel()
    _dequantize_4bit[(triton.cdiv(n, BLOCK),)](packed.contiguous(), absmax, code, out, n,
                                               QBLOCK=quant_state.blocksize, BLOCK=BLOCK)
    return out


def _weight(weight, quant_state, dtype):
    return weight.to(dtype) if quant_state is None else dequantize_4bit(weight, quant_state, dtype)


def _forward(x, weight, quant_state, bias, a, b, scaling):
    """y = x·Wᵀ + bias + s·(x·Aᵀ)·Bᵀ for 2-D x, A and B already in x's dtype: (y, x·Aᵀ)."""
    xa = x @ a.t()
    w = _weight(weight, quant_state, x.dtype)
    y = x @ w.t() if bias is None else torch.addmm(bias.to(x.dtype), x, w.t())
    return y.addmm_(xa, b.t(), alpha=scaling), xa


def _backward(dy, x, xa, weight, quant_state, a, b, scaling, input_grad: bool):
    """(dX or None, dA, dB) of `_forward`, all in dy's dtype."""
    g = (dy @ b).mul_(scaling)
    db = (dy.t() @ xa).mul_(scaling)
    da = g.t() @ x
    dx = None
    if input_grad:
        dx = (dy @ _weight(weight, quant_state, dy.dtype)).addmm_(g, a)
    return dx, da, db


class LoRALinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, quant_state, bias, lora_a, lora_b, scaling):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        a, b = lora_a.to(x.dtype), lora_b.to(x.dtype)
        y, xa = _forward(x2, weight, quant_state, bias, a, b, scaling)
        ctx.save_for_backward(x2, xa, a, b)
        ctx.weight, ctx.quant_state, ctx.scaling = weight, quant_state, scaling
        ctx.dtypes = lora_a.dtype, lora_b.dtype
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x2, xa, a, b = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1]).to(x2.dtype)
        dx, da, db = _backward(dy2, x2, xa, ctx.weight, ctx.quant_state, a, b, ctx.scaling, ctx.needs_input_grad[0])
        if dx is not None:
            dx = dx.view(*dy.shape[:-1], dx.shape[-1])
        return dx, None, None, None, da.to(ctx.dtypes[0]), db.to(ctx.dtypes[1]), None


def lora_linear(x, weight, quant_state, bias, lora_a, lora_b, scaling: float) -> torch.Tensor:
    """x·Wᵀ + bias + scaling·(x·Aᵀ)·Bᵀ: W (out × in) frozen, a float tensor (quant_state None) or bitsandbytes'
    packed 4-bit weight with its QuantState; bias None or frozen; A (rank × in), B (out × rank) trained."""
    return LoRALinear.apply(x, weight, quant_state, bias, lora_a, lora_b, scaling)


def _gated(gate, up, activation):
    out = torch.empty_like(gate)
    n = gate.numel()
    _gated_forward[(triton.cdiv(n, GATED_BLOCK),)](gate, up, out, n, GELU=activation == GELU_TANH, BLOCK=GATED_BLOCK,
                                                   enable_fp_fusion=True)
    return out


class LoRAMLP(torch.autograd.Function):
    """down(act(gate(x)) · up(x)), each projection a LoRA linear given as (W, quant_state, bias, A, B, s)."""

    @staticmethod
    def forward(ctx, x, activation, *parts):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        projections = [list(parts[i:i + 6]) for i in (0, 6, 12)]
        for p in projections:
            p[3], p[4] = p[3].to(x.dtype), p[4].to(x.dtype)
        (gate, xa_gate), (up, xa_up) = (_forward(x2, *p) for p in projections[:2])
        hidden = _gated(gate, up, activation)
        y, xa_down = _forward(hidden, *projections[2])
        del hidden  # recomputed in backward
        ctx.save_for_backward(x2, gate, up, xa_gate, xa_up, xa_down, *(t for p in projections for t in p[3:5]))
        ctx.frozen = [(p[0], p[1], p[5]) for p in projections]
        ctx.activation = activation
        ctx.dtypes = [parts[i].dtype for i in (3, 4, 9, 10, 15, 16)]
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x2, gate, up, xa_gate, xa_up, xa_down, *ab = ctx.saved_tensors
        (w_g, q_g, s_g), (w_u, q_u, s_u), (w_d, q_d, s_d) = ctx.frozen
        dy2 = dy.reshape(-1, dy.shape[-1]).to(x2.dtype)
        hidden = _gated(gate, up, ctx.activation)
        dhidden, da_d, db_d = _backward(dy2, hidden, xa_down, w_d, q_d, ab[4], ab[5], s_d, True)
        del hidden
        n = gate.numel()
        # d gate and d up over gate and up: this node made them and is their only reader
        _gated_backward[(triton.cdiv(n, GATED_BLOCK),)](dhidden, gate, up, gate, up, n,
                                                        GELU=ctx.activation == GELU_TANH, BLOCK=GATED_BLOCK,
                                                        enable_fp_fusion=True)
        torch.autograd.graph.increment_version(gate)  # a second backward (retain_graph) now fails loudly
        torch.autograd.graph.increment_version(up)
        del dhidden
        wants_dx = ctx.needs_input_grad[0]
        dx, da_u, db_u = _backward(up, x2, xa_up, w_u, q_u, ab[2], ab[3], s_u, wants_dx)
        dx_g, da_g, db_g = _backward(gate, x2, xa_gate, w_g, q_g, ab[0], ab[1], s_g, wants_dx)
        if wants_dx:
            dx = dx.add_(dx_g).view(*dy.shape[:-1], dx.shape[-1])
        grads = [g.to(dtype) for g, dtype in zip((da_g, db_g, da_u, db_u, da_d, db_d), ctx.dtypes)]
        out = [dx, None]
        for i in range(3):
            out += [None, None, None, grads[2 * i], grads[2 * i + 1], None]
        return tuple(out)


def lora_mlp(x, gate: tuple, up: tuple, down: tuple, activation: str = SILU) -> torch.Tensor:
    """down(act(gate(x)) · up(x)) for act SILU or GELU_TANH, each projection the arguments of `lora_linear` after x:
    (W, quant_state, bias, A, B, scaling)."""
    if activation not in (SILU, GELU_TANH):
        raise ValueError(f"activation must be {SILU!r} or {GELU_TANH!r}, not {activation!r}")
    return LoRAMLP.apply(x, activation, *gate, *up, *down)
