"""The fused linear cross-entropy against plain PyTorch (logits, then torch's cross_entropy): loss and both
gradients over odd shapes, per dtype; ignored rows, a batch with nothing to train, label smoothing,
soft-capping, a tied head, transformers' causal shift; and a check that no torch op ever makes the full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tuneforge_kernels.fused_linear_cross_entropy import causal_targets, chunk_rows, fused_linear_cross_entropy
from tests.kernels.conftest import DEVICE, NEEDS_GPU, close

# dtype → tolerance (relative to the largest reference value) for the loss and the gradients
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 5e-3}
# At Llama sizes each gradient sums 128k words or 2k tokens: in fp32 our chunked order and cuBLAS's split sums
# differ by a few parts in 10^5 of the largest value (seen on an H200: 2.8e-5), more than the small shapes' 1e-5.
LARGE_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: TOLERANCE[torch.bfloat16]}
HIDDEN, VOCAB = 67, 1009  # odd on purpose: no dimension is a multiple of a block


def reference(hidden, weight, targets, ignore_index=-100, reduction="mean", label_smoothing=0.0, softcap=None):
    """What a model does without our kernel: all logits, in fp32 for the loss (as transformers' loss does)."""
    logits = (hidden @ weight.t()).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(logits.reshape(-1, weight.shape[0]), targets.reshape(-1), ignore_index=ignore_index,
                           reduction=reduction, label_smoothing=label_smoothing)


def inputs(dtype, batch=2, seq=13, vocab=VOCAB, seed=0, ignored=0.3):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, seq, HIDDEN, generator=g).to(DEVICE, dtype)
    weight = (torch.randn(vocab, HIDDEN, generator=g) / HIDDEN ** 0.5 * 3).to(DEVICE, dtype)
    targets = torch.randint(0, vocab, (batch, seq), generator=g)
    targets[torch.rand(batch, seq, generator=g) < ignored] = -100
    return hidden, weight, targets.to(DEVICE)


def both(fn, hidden, weight, *args, **kwargs):
    """Loss and gradients (hidden, weight) of fn(hidden, weight, ...) on fresh leaves."""
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(h, w, *args, **kwargs)
    loss.backward()
    return loss.detach(), h.grad, w.grad


# case → keyword arguments for both functions (and for ours only: `chunk`)
CASES = {
    "plain": {},
    "smoothing": {"label_smoothing": 0.1},
    "softcap": {"softcap": 3.0},  # small, so that tanh bends the logits well away from identity
    "softcap-smoothing": {"softcap": 30.0, "label_smoothing": 0.2},
    "sum": {"reduction": "sum"},
}


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_gradients_match_plain_pytorch(case, dtype):
    hidden, weight, targets = inputs(dtype)
    kwargs = CASES[case]
    ours = both(fused_linear_cross_entropy, hidden, weight, targets, chunk=7, **kwargs)  # 7: chunks end mid-batch
    plain = both(reference, hidden, weight, targets, **kwargs)
    for name, a, b in zip(("loss", "grad hidden", "grad weight"), ours, plain):
        close(a, b, TOLERANCE[dtype], f"{case} {dtype} {name}")
    assert ours[1].dtype == dtype and ours[2].dtype == dtype


@pytest.mark.parametrize("case, dtype, head_trains", [
    ("plain", torch.float32, True), ("softcap-smoothing", torch.bfloat16, True),
    ("plain", torch.bfloat16, False), ("softcap-smoothing", torch.float16, False),
], ids=str)
def test_each_tokens_loss_and_gradients_under_any_weighting(case, dtype, head_trains):
    """reduction="none", as a preference loss uses it: each token's loss, then a function of them that weighs
    each token differently (here random factors, zero and negative ones included); its gradients match."""
    hidden, weight, targets = inputs(dtype, seed=3)
    kwargs = CASES[case]
    factors = torch.randn(targets.shape, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    factors[0, :3] = 0.0
    results = []
    for fn, extra in ((fused_linear_cross_entropy, {"chunk": 5}), (reference, {})):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_(head_trains)
        losses = fn(h, w, targets, reduction="none", **kwargs, **extra).view(targets.shape)
        (losses * factors).sum().backward()
        results.append((losses.detach(), h.grad, w.grad))
    ours, plain = results
    assert ours[0].dtype == torch.float32 and (ours[0][targets == -100] == 0).all()
    close(ours[0], plain[0], TOLERANCE[dtype], f"{case} {dtype} losses")
    close(ours[1], plain[1], TOLERANCE[dtype], f"{case} {dtype} grad hidden")
    if head_trains:
        close(ours[2], plain[2], TOLERANCE[dtype], f"{case} {dtype} grad weight")
        assert ours[2].dtype == dtype
    else:
        assert ours[2] is None
    with torch.no_grad():  # evaluation, a reference pass: the same losses, nothing kept
        close(fused_linear_cross_entropy(hidden, weight, targets, reduction="none", **kwargs), plain[0],
              TOLERANCE[dtype], "no grad")


def test_a_batch_with_nothing_to_train_gives_zero_not_nan():
    hidden, weight, targets = inputs(torch.float32)
    loss, grad_h, grad_w = both(fused_linear_cross_entropy, hidden, weight, torch.full_like(targets, -100))
    assert loss.item() == 0.0 and not grad_h.any() and not grad_w.any()
    assert torch.isnan(reference(hidden, weight, torch.full_like(targets, -100)))  # where torch gives NaN


def test_a_tied_head_gets_the_gradient_of_both_uses():
    """The head's weight is the embedding matrix: its gradient is the embedding's plus the head's."""
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (2, 13), device=DEVICE)
    table = torch.randn(VOCAB, HIDDEN, device=DEVICE) / HIDDEN ** 0.5
    mix = torch.randn(HIDDEN, HIDDEN, device=DEVICE) / HIDDEN ** 0.5
    grads = []
    for loss_fn in (fused_linear_cross_entropy, reference):
        emb = table.clone().requires_grad_()
        hidden = torch.tanh(F.embedding(ids, emb) @ mix)
        loss_fn(hidden, emb, causal_targets(ids)).backward()
        grads.append(emb.grad)
    close(grads[0], grads[1], TOLERANCE[torch.float32], "tied weight")


def test_a_frozen_head_gets_no_gradient_and_evaluation_none_at_all():
    hidden, weight, targets = inputs(torch.float32)
    h = hidden.clone().requires_grad_()
    fused_linear_cross_entropy(h, weight, targets).backward()  # LoRA: the head does not train
    assert h.grad is not None and weight.grad is None
    with torch.no_grad():
        close(fused_linear_cross_entropy(hidden, weight, targets), reference(hidden, weight, targets), 1e-5, "eval")


def test_causal_targets_are_transformers_shift():
    """Our aligned targets give exactly transformers' causal-LM loss, num_items_in_batch included."""
    from transformers.loss.loss_utils import ForCausalLMLoss

    hidden, weight, labels = inputs(torch.float32)
    logits = hidden @ weight.t()
    for items in (None, torch.tensor(11)):
        expected = ForCausalLMLoss(logits, labels, VOCAB, num_items_in_batch=items)
        ours = fused_linear_cross_entropy(hidden, weight, causal_targets(labels),
                                          reduction="mean" if items is None else "sum")
        close(ours if items is None else ours / items, expected, 1e-5, f"num_items_in_batch={items}")


def test_a_target_outside_the_vocabulary_is_refused():
    hidden, weight, targets = inputs(torch.float32)
    targets[0, 0] = VOCAB
    with pytest.raises(ValueError, match="outside the head's vocabulary"):
        fused_linear_cross_entropy(hidden, weight, targets)


class LogitsSeen(TorchDispatchMode):
    """The most elements of any torch op's output that has a vocabulary-sized dimension, other than the head's
    weight and its gradient: logits, or something made from them."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and VOCAB in t.shape and sorted(t.shape) != sorted((VOCAB, HIDDEN)):
                self.largest = max(self.largest, t.numel())
        return out


def test_the_full_logits_never_exist():
    """4 × 64 tokens × 1009 words would be 258k logits; no torch op, forward or backward, makes more than one
    chunk's worth (the chunk's logits, then its gradient written over them)."""
    hidden, weight, targets = inputs(torch.float32, batch=4, seq=64, ignored=0.0)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    tokens, rows = 4 * 64, 24
    with LogitsSeen() as seen:
        fused_linear_cross_entropy(h, w, targets, chunk=rows).backward()
    assert seen.largest == rows * VOCAB, (seen.largest, rows * VOCAB)
    with LogitsSeen() as plain:
        reference(hidden.clone().requires_grad_(), weight, targets).backward()
    assert plain.largest >= tokens * VOCAB  # the check does see logits when they are made
    with LogitsSeen() as each:  # each token's loss: the chunks again in backward, no more
        h = hidden.clone().requires_grad_()
        (fused_linear_cross_entropy(h, w, targets, reduction="none", chunk=rows) * 2).sum().backward()
    assert each.largest == rows * VOCAB, (each.largest, rows * VOCAB)


def test_the_default_chunk_keeps_logits_about_the_size_of_the_hidden_states():
    # Llama-3-8B shapes: 16k tokens × 4096 hidden, 128k words → 524 rows (≈ the hidden states' 67M elements)
    rows = chunk_rows(16384, 4096, 128256)
    assert rows * 128256 <= 16384 * 4096 * 1.01 and rows >= 256
    assert chunk_rows(10, 4096, 128256) == 10 and chunk_rows(0, 64, 1000) == 1
    # a trained head's fp32 gradient is read and written by every chunk: H rows at least, so only a few chunks
    assert chunk_rows(16384, 4096, 128256, head_trains=True) == 4096
    assert chunk_rows(1000, 4096, 128256, head_trains=True) == 1000


@NEEDS_GPU
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_llama_sized_vocabulary_on_a_gpu(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(2048, 4096, device="cuda", generator=g).to(dtype)
    weight = (torch.randn(128256, 4096, device="cuda", generator=g) / 64).to(dtype)
    targets = torch.randint(0, 128256, (2048,), device="cuda", generator=g)
    ours = both(fused_linear_cross_entropy, hidden, weight, targets)
    plain = both(reference, hidden, weight, targets)
    for name, a, b in zip(("loss", "grad hidden", "grad weight"), ours, plain):
        close(a, b, LARGE_TOLERANCE[dtype], name)
