"""Cross-entropy of a linear head without the batch × sequence × vocabulary logits.

A causal LM's loss is usually `cross_entropy(hidden @ weightᵀ, targets)`: for 16k tokens and Llama 3's
128,256-word vocabulary the logits alone are 4 GiB in bf16, and the loss's fp32 copy and their gradient
add more. Here the tokens go through in chunks. Per chunk: the logits of its rows (a torch matmul), then
one Triton program per row reads them twice: an online softmax (running maximum and sum) gives the
log-sum-exp and the loss, and a second pass writes the gradient of the logits over the logits themselves,
(softmax − one-hot) scaled. The same chunk then adds its share to the gradients of the hidden states
(dlogits · W) and of the head's weight (dlogitsᵀ · h). So all of the work happens in the forward pass;
backward only scales the two gradients by the incoming one, and no chunk outlives its turn.

Tokens whose target is `ignore_index` are dropped before the matmul: with assistant-only training half the
tokens or more are prompts, and they cost nothing here. `reduction="mean"` divides by the tokens that count
(and gives 0 when none do, where torch gives NaN); `"sum"` does not divide (transformers' loss passes
`num_items_in_batch` and divides the sum itself). `"none"` gives each token's loss, for losses built from
sums over parts of a row (a preference objective's answer log-probabilities); its gradient waits for backward
(see FusedLinearTokenLosses). Label smoothing follows torch's definition: with ε,
loss = (1 − ε)·nll + ε·mean over the vocabulary of −log p. Logit soft-capping (Gemma 2 and 3's
`final_logit_softcapping`, z = c·tanh(x / c)) is applied to every logit before the softmax, with its
derivative in the gradient.

Precision: logits are computed in the inputs' dtype (as the plain head does), the softmax and the loss in
fp32 inside the kernel; the head's gradient is summed over chunks in fp32 and cast to the weight's dtype at
the end. On CUDA each chunk's 16-bit product is added into that fp32 sum by the matmul itself (cuBLAS with
C in fp32, torch's `out_dtype`), with no V × H temporary; elsewhere the product is made, then added.

When the head trains, its fp32 gradient (V × H × 4 bytes) is held for the whole step anyway, and every
chunk reads and writes all of it: chunks of at least H rows (logits half that gradient's size) keep that
traffic to a few passes (at Llama-3-8B sizes, 2 chunks of 4096 rows instead of 32 of 261; on an H200 the
thin chunks made the trained-head case 2.2× slower than plain PyTorch).

A tied head (the weight is the embedding matrix) needs nothing special: the weight is an ordinary input of
the autograd Function, so its gradient lands on the same parameter.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

IGNORE_INDEX = -100
MIN_CHUNK_ROWS = 256  # fewer rows than this make the chunk's matmuls too thin to use the GPU well


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _cross_entropy_rows(logits_ptr, row_stride, targets_ptr, loss_ptr, scale_ptr, n_cols, smoothing, softcap,
                        SOFTCAP: tl.constexpr, GRAD: tl.constexpr, SCALE: tl.constexpr, BLOCK: tl.constexpr):
    """Loss of one row of logits; with GRAD, the row is overwritten with d(loss)/d(logits), times the row's entry
    of `scale_ptr` with SCALE (the incoming gradient of each token's own loss)."""
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + row * row_stride
    target = tl.load(targets_ptr + row).to(tl.int64)
    offsets = tl.arange(0, BLOCK)

    # Pass 1: running maximum `m` and sum of exp(z − m) over the row, and the sum of z for smoothing.
    m = tl.full((), float("-inf"), tl.float32)
    total = tl.full((), 0.0, tl.float32)
    z_sum = tl.full((), 0.0, tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + offsets
        inside = cols < n_cols
        z = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
        if SOFTCAP:
            z = softcap * _tanh(z / softcap)
        z_sum += tl.sum(tl.where(inside, z, 0.0), axis=0)
        z = tl.where(inside, z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, axis=0))
        total = total * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
        m = m_new
    lse = m + tl.log(total)

    z_target = tl.load(base + target).to(tl.float32)
    if SOFTCAP:
        z_target = softcap * _tanh(z_target / softcap)
    loss = lse - (1.0 - smoothing) * z_target - smoothing * z_sum / n_cols
    tl.store(loss_ptr + row, loss)

    # Pass 2: d loss / d z = softmax − (1 − ε)·one-hot − ε / V, through the soft-cap's tanh when there is one.
    if GRAD:
        row_scale = tl.load(scale_ptr + row).to(tl.float32) if SCALE else 1.0
        for start in range(0, n_cols, BLOCK):
            cols = start + offsets
            inside = cols < n_cols
            z = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
            if SOFTCAP:
                z = softcap * _tanh(z / softcap)
            grad = tl.exp(z - lse) - smoothing / n_cols - tl.where(cols == target, 1.0 - smoothing, 0.0)
            if SOFTCAP:
                capped = z / softcap
                grad = grad * (1.0 - capped * capped)
            if SCALE:
                grad = grad * row_scale
            tl.store(base + cols, grad.to(logits_ptr.dtype.element_ty), mask=inside)


def chunk_rows(n_rows: int, hidden: int, vocab: int, head_trains: bool = False) -> int:
    """Rows per chunk: a chunk's logits about as large as the hidden states (rows·V ≈ N·H), so the fused loss
    never holds more than roughly twice the hidden states' memory, but at least MIN_CHUNK_ROWS; at least H
    rows when the head trains (see the module's docstring)."""
    least = max(MIN_CHUNK_ROWS, hidden if head_trains else 0)
    return max(1, min(n_rows, max(least, -(-n_rows * hidden // vocab))))


def _add_head_gradient(grad_w: torch.Tensor, dlogits: torch.Tensor, h: torch.Tensor) -> None:
    """grad_w (fp32) += dlogitsᵀ · h, in place."""
    if dlogits.dtype == torch.float32:
        grad_w.addmm_(dlogits.t(), h)
        return
    if grad_w.is_cuda:
        try:  # cuBLAS accumulates the 16-bit product straight into the fp32 sum (torch >= 2.8)
            torch.addmm(grad_w, dlogits.t(), h, out_dtype=torch.float32, out=grad_w)
            return
        except (TypeError, RuntimeError, NotImplementedError):  # an older torch: the product, then the sum
            pass
    grad_w += dlogits.t() @ h


def _loss_and_grads(hidden, weight, targets, ignore_index, smoothing, softcap, rows, need_h, need_w,
                    token_scale=None, token_losses=None):
    """Summed loss over the rows that count, their count, and the unscaled gradients of that sum. With
    `token_scale` (one factor per row of `hidden`) each row's gradient is its loss's times its factor: the gradient
    of Σ factor·loss; `token_losses` (a zeroed fp32 buffer, one per row) gets each counted row's loss."""
    n, h_dim = hidden.shape
    vocab = weight.shape[0]
    kept = (targets != ignore_index).nonzero().squeeze(1)  # one host sync: the chunks depend on it
    n_kept = kept.numel()
    picked = targets.index_select(0, kept)
    scales = token_scale.index_select(0, kept).float().contiguous() if token_scale is not None else None
    if n_kept:
        low, high = torch.stack(picked.aminmax()).tolist()
        if low < 0 or high >= vocab:
            raise ValueError(f"target {low if low < 0 else high} is outside the head's vocabulary of {vocab}")
    rows = rows or chunk_rows(n_kept, h_dim, vocab, head_trains=need_w)
    loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad_h = torch.zeros_like(hidden) if need_h else None
    # The head's gradient is summed over chunks in fp32; each chunk's matmul accumulates in fp32 inside.
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
    row_loss = torch.empty(min(rows, n_kept), dtype=torch.float32, device=hidden.device)
    block = min(4096, triton.next_power_of_2(vocab))
    warps = min(16, max(4, block // 256))
    for start in range(0, n_kept, rows):
        idx = kept[start:start + rows]
        h = hidden.index_select(0, idx)
        logits = h @ weight.t()  # (rows, V) in the inputs' dtype, then overwritten with its own gradient
        out = row_loss[:idx.numel()]
        scale = scales[start:start + rows] if scales is not None else out  # (out: any pointer; SCALE off reads none)
        _cross_entropy_rows[(idx.numel(),)](
            logits, logits.stride(0), picked[start:start + rows], out, scale, vocab, smoothing, softcap or 1.0,
            SOFTCAP=bool(softcap), GRAD=need_h or need_w, SCALE=scales is not None, BLOCK=block, num_warps=warps,
            enable_fp_fusion=True)
        loss += out.sum()
        if token_losses is not None:
            token_losses.index_copy_(0, idx, out)
        if need_h:
            grad_h.index_copy_(0, idx, logits @ weight)
        if need_w:
            _add_head_gradient(grad_w, logits, h)
        del logits
    return loss, n_kept, grad_h, grad_w


class FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, reduction, smoothing, softcap, rows):
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        shape = hidden.shape
        loss, n_kept, grad_h, grad_w = _loss_and_grads(hidden.reshape(-1, shape[-1]), weight, targets.reshape(-1),
                                                       ignore_index, smoothing, softcap, rows, need_h, need_w)
        scale = 1.0 / n_kept if (reduction == "mean" and n_kept) else 1.0
        if grad_w is not None:  # scaled before the cast: an fp16 head's summed gradient could overflow
            grad_w = grad_w.mul_(scale).to(weight.dtype)
        ctx.scale = scale
        ctx.grads = (grad_h.view(shape) if grad_h is not None else None, grad_w)
        return loss * scale

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss):
        grad_h, grad_w = ctx.grads
        ctx.grads = None
        # In place: these buffers belong to this call alone, and one scaling is all backward has left to do.
        if grad_h is not None:
            grad_h.mul_((grad_loss * ctx.scale).to(grad_h.dtype))
        if grad_w is not None:
            grad_w.mul_(grad_loss.to(grad_w.dtype))
        return grad_h, grad_w, None, None, None, None, None, None


class FusedLinearTokenLosses(torch.autograd.Function):
    """reduction="none": each token's loss. Its gradient needs each token's incoming gradient, which only backward
    has (a preference objective weighs each answer by its pair's margin), so forward writes no gradient and keeps
    the hidden states instead: backward makes each chunk's logits again (one more matmul than "mean" and "sum"
    cost) and writes their gradient scaled token by token."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, smoothing, softcap, rows):
        ctx.save_for_backward(hidden, weight, targets)
        ctx.args = (ignore_index, smoothing, softcap, rows)
        return _token_losses(hidden, weight, targets, *ctx.args)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_losses):
        hidden, weight, targets = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        _, _, grad_h, grad_w = _loss_and_grads(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1),
                                               *ctx.args, need_h, need_w, token_scale=grad_losses.reshape(-1))
        return (grad_h.view(hidden.shape) if need_h else None, grad_w.to(weight.dtype) if need_w else None,
                None, None, None, None, None)


def _token_losses(hidden, weight, targets, ignore_index, smoothing, softcap, rows) -> torch.Tensor:
    """Each token's loss (fp32, shaped like `targets`; 0 where the target is ignored), no gradient."""
    losses = torch.zeros(targets.numel(), dtype=torch.float32, device=hidden.device)
    _loss_and_grads(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1), ignore_index, smoothing,
                    softcap, rows, False, False, token_losses=losses)
    return losses.view(targets.shape)


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                               ignore_index: int = IGNORE_INDEX, reduction: str = "mean",
                               label_smoothing: float = 0.0, softcap: float | None = None,
                               chunk: int | None = None) -> torch.Tensor:
    """cross_entropy(hidden @ weightᵀ, targets) without the full logits (fp32).

    hidden (..., H) and targets (...) already aligned (shift causal labels first); weight (V, H), no bias.
    `reduction` "mean" (over tokens that count; 0 when none do) or "sum" give a scalar, "none" each token's loss
    shaped like `targets` (0 where ignored); `softcap` c applies c·tanh(x/c) to the logits first; `chunk` rows
    per chunk (default: `chunk_rows`)."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if targets.shape != hidden.shape[:-1]:
        raise ValueError(f"targets {tuple(targets.shape)} do not match hidden states {tuple(hidden.shape)}")
    smoothing = float(label_smoothing)
    wants_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    if reduction == "none":
        if wants_grad:
            return FusedLinearTokenLosses.apply(hidden, weight, targets, ignore_index, smoothing, softcap, chunk)
        return _token_losses(hidden, weight, targets, ignore_index, smoothing, softcap, chunk)
    if wants_grad:
        return FusedLinearCrossEntropy.apply(hidden, weight, targets, ignore_index, reduction, smoothing, softcap,
                                             chunk)
    # No gradient wanted (evaluation): the same kernel, without writing one.
    loss, n_kept, _, _ = _loss_and_grads(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1),
                                         ignore_index, smoothing, softcap, chunk, False, False)
    return loss / n_kept if (reduction == "mean" and n_kept) else loss


def causal_targets(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Position t predicts token t + 1: labels moved left by one, the last position ignored (as transformers
    shifts them), so the hidden states need no slicing."""
    out = torch.full_like(labels, ignore_index)
    out[..., :-1] = labels[..., 1:]
    return out
