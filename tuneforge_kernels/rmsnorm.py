"""RMSNorm, forward and backward, in the casting orders transformers' models use.

y = x / sqrt(mean(x²) + eps), times a weight, with the statistics in fp32. The families differ in when they
leave fp32 (transformers PR 29402 explains why Gemma's order matters):

- Llama, Mistral, Qwen2, Qwen3 (their q_norm/k_norm too): normalize in fp32, cast back to the input's dtype,
  then multiply by `weight` (so the output has the promoted dtype of the two);
- Gemma 2 and 3 (also their q_norm/k_norm): multiply by (1 + weight) in fp32, then cast to the input's dtype;
  the weight is stored as an offset from 1 (initialised to zeros);
- Gemma 4: Gemma's order with the weight itself (initialised to ones); its value norms have no weight at all,
  which `rms_norm` takes as `weight=None`.

One program per row; the forward keeps 1/rms per row for backward, which recomputes the normalized row rather
than keeping it. dx = rstd · (g − n · mean(g · n)) with g = dy · w and n = x · rstd; each backward program
sums dy · n for the weight over its own rows in fp32, and torch adds those partial sums.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

LLAMA, GEMMA, GEMMA4 = "llama", "gemma", "gemma4"
VARIANTS = (LLAMA, GEMMA, GEMMA4)


@triton.jit
def _rms_norm_forward(x_ptr, w_ptr, y_ptr, rstd_ptr, x_stride, y_stride, n_cols, eps,
                      FP32_WEIGHT: tl.constexpr, OFFSET: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    inside = cols < n_cols
    x = tl.load(x_ptr + row * x_stride + cols, mask=inside, other=0.0).to(tl.float32)
    rstd = tl.rsqrt(tl.sum(x * x, axis=0) / n_cols + eps)
    normed = x * rstd
    w = tl.load(w_ptr + cols, mask=inside, other=0.0).to(tl.float32)
    if FP32_WEIGHT:
        y = normed * (w + OFFSET)
    else:
        y = normed.to(x_ptr.dtype.element_ty).to(tl.float32) * w
    tl.store(y_ptr + row * y_stride + cols, y.to(y_ptr.dtype.element_ty), mask=inside)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _rms_norm_backward(dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_ptr, dy_stride, x_stride, dx_stride,
                       n_rows, n_cols, rows_per_program,
                       FP32_WEIGHT: tl.constexpr, OFFSET: tl.constexpr, WEIGHT_GRAD: tl.constexpr,
                       BLOCK: tl.constexpr):
    program = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    inside = cols < n_cols
    w = tl.load(w_ptr + cols, mask=inside, other=0.0).to(tl.float32) + OFFSET
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    first = program.to(tl.int64) * rows_per_program
    last = tl.minimum(first + rows_per_program, n_rows)
    x_row, dy_row, dx_row = x_ptr + first * x_stride, dy_ptr + first * dy_stride, dx_ptr + first * dx_stride
    for row in range(first, last):
        x = tl.load(x_row + cols, mask=inside, other=0.0).to(tl.float32)
        dy = tl.load(dy_row + cols, mask=inside, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + row)
        normed = x * rstd
        g = dy * w
        dx = rstd * (g - normed * (tl.sum(g * normed, axis=0) / n_cols))
        tl.store(dx_row + cols, dx.to(dx_ptr.dtype.element_ty), mask=inside)
        if WEIGHT_GRAD:
            if FP32_WEIGHT:
                dw += dy * normed
            else:
                dw += dy * normed.to(x_ptr.dtype.element_ty).to(tl.float32)
        x_row += x_stride
        dy_row += dy_stride
        dx_row += dx_stride
    if WEIGHT_GRAD:
        tl.store(dw_ptr + program * n_cols + cols, dw, mask=inside)


def _rows(t: torch.Tensor) -> torch.Tensor:
    t = t.reshape(-1, t.shape[-1])
    return t if t.stride(-1) == 1 else t.contiguous()


def _programs(rows: int, device: torch.device) -> int:
    if device.type == "cuda":
        return min(rows, 4 * torch.cuda.get_device_properties(device).multi_processor_count)
    return min(rows, 4)  # Triton's interpreter: few programs, each looping over its rows


def _warps(block: int) -> int:
    return min(16, max(1, block // 256))


class RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, variant):
        shape = x.shape
        rows = _rows(x)
        fp32_weight, offset = variant != LLAMA, 1.0 if variant == GEMMA else 0.0
        out_dtype = x.dtype if fp32_weight else torch.promote_types(x.dtype, weight.dtype)
        y = torch.empty(rows.shape, dtype=out_dtype, device=x.device)
        rstd = torch.empty(rows.shape[0], dtype=torch.float32, device=x.device)
        block = triton.next_power_of_2(rows.shape[1])
        _rms_norm_forward[(rows.shape[0],)](rows, weight, y, rstd, rows.stride(0), y.stride(0), rows.shape[1], eps,
                                            FP32_WEIGHT=fp32_weight, OFFSET=offset, BLOCK=block,
                                            num_warps=_warps(block), enable_fp_fusion=True)
        ctx.save_for_backward(rows, weight, rstd)
        ctx.fp32_weight, ctx.offset, ctx.shape = fp32_weight, offset, shape
        return y.view(shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        rows, weight, rstd = ctx.saved_tensors
        dy = _rows(dy)
        n_rows, n_cols = rows.shape
        dx = torch.empty(rows.shape, dtype=rows.dtype, device=rows.device)
        weight_grad = ctx.needs_input_grad[1]
        programs = max(1, _programs(n_rows, rows.device))
        partial = torch.empty((programs, n_cols) if weight_grad else (1,), dtype=torch.float32, device=rows.device)
        block = triton.next_power_of_2(n_cols)
        _rms_norm_backward[(programs,)](dy, rows, weight, rstd, dx, partial, dy.stride(0), rows.stride(0),
                                        dx.stride(0), n_rows, n_cols, triton.cdiv(n_rows, programs),
                                        FP32_WEIGHT=ctx.fp32_weight, OFFSET=ctx.offset, WEIGHT_GRAD=weight_grad,
                                        BLOCK=block, num_warps=_warps(block), enable_fp_fusion=True)
        dw = partial.sum(0).to(weight.dtype) if weight_grad else None
        return dx.view(ctx.shape), dw, None, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None, eps: float, variant: str = LLAMA) -> torch.Tensor:
    """RMSNorm of x over its last dimension; `variant` one of VARIANTS (see the module's docstring); `weight`
    None for Gemma 4's norms without one (x normalized, nothing more)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(map(repr, VARIANTS))}, not {variant!r}")
    if weight is None:
        if variant != GEMMA4:
            raise ValueError("only Gemma 4's norms come without a weight")
        weight = torch.ones(x.shape[-1], dtype=torch.float32, device=x.device)  # (no gradient asked of it)
    return RMSNorm.apply(x, weight, float(eps), variant)
