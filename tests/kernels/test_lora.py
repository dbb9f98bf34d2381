"""LoRA linears and the LoRA gated MLP against plain PyTorch math (the base weight dequantized first when it is
4-bit), values and gradients (x, every A and B) over odd sizes and a dtype table; our 4-bit dequantization against
bitsandbytes' own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tuneforge_kernels.lora import dequantize_4bit, lora_linear, lora_mlp
from tuneforge_kernels.swiglu import GELU_TANH, SILU
from tests.kernels.conftest import DEVICE, NEEDS_GPU, close

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 3e-3}
ACTIVATIONS = {SILU: F.silu, GELU_TANH: lambda x: F.gelu(x, approximate="tanh")}
TOKENS, IN, OUT, RANK, SCALING = 13, 67, 45, 8, 2.0


def reference(x, w, bias, a, b, scaling):
    """The plain LoRA linear, as peft computes it with dropout off: W already dequantized."""
    y = x @ w.t() + scaling * (x @ a.t()) @ b.t()
    return y if bias is None else y + bias


def reference_mlp(x, gate, up, down, activation=SILU):
    return reference(ACTIVATIONS[activation](reference(x, *gate)) * reference(x, *up), *down)


def quantized(w, nested):
    from bitsandbytes.functional import quantize_4bit

    return quantize_4bit(w, quant_type="nf4", blocksize=64, compress_statistics=nested)


def projection(g, n_in, n_out, dtype, base, bias=False):
    """(W as ours takes it, W as the reference takes it, bias, A, B, scaling); base "dense", "nf4" or "nf4-nested"."""
    w = torch.randn(n_out, n_in, generator=g) / n_in ** 0.5
    packed, state = None, None
    if base != "dense":
        packed, state = quantized(w.to(DEVICE), nested=base == "nf4-nested")
        from bitsandbytes.functional import dequantize_4bit as bnb_dequantize

        w = bnb_dequantize(packed, state).float().cpu()
    bias = (torch.randn(n_out, generator=g) * 0.1).to(DEVICE, dtype) if bias else None
    a = (torch.randn(RANK, n_in, generator=g) / n_in ** 0.5).to(DEVICE, dtype)
    b = (torch.randn(n_out, RANK, generator=g) / RANK ** 0.5).to(DEVICE, dtype)
    w = w.to(DEVICE, dtype)
    ours = (w, None) if packed is None else (packed, state)
    return ours, w, bias, a, b, SCALING


def grads_of(fn, x, *trained):
    x = x.clone().requires_grad_()
    trained = [t.clone().requires_grad_() for t in trained]
    out = fn(x, *trained)
    dy = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(out)
    out.backward(dy)
    return [out.detach(), x.grad] + [t.grad for t in trained]


BASES = ["dense", "nf4", "nf4-nested"]


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("base", BASES)
def test_lora_linear_matches_plain_math(base, dtype):
    g = torch.Generator().manual_seed(0)
    ours_w, w, bias, a, b, s = projection(g, IN, OUT, dtype, base, bias=base == "dense")
    x = torch.randn(3, TOKENS, IN, generator=g).to(DEVICE, dtype)
    ours = grads_of(lambda x, a, b: lora_linear(x, *ours_w, bias, a, b, s), x, a, b)
    plain = grads_of(lambda x, a, b: reference(x.float(), w.float(), None if bias is None else bias.float(),
                                               a.float(), b.float(), s), x, a, b)
    for name, mine, theirs in zip(("y", "dx", "dA", "dB"), ours, plain):
        close(mine, theirs, TOLERANCE[dtype], f"{base} {dtype} {name}")
        assert mine.dtype == dtype


def test_adapters_in_fp32_beside_a_bf16_base_get_fp32_gradients():
    """peft keeps A and B in fp32 beside a bf16 base: the LoRA path runs in bf16, its gradients come back fp32."""
    g = torch.Generator().manual_seed(1)
    (w, _), _, _, a, b, s = projection(g, IN, OUT, torch.bfloat16, "dense")
    x = torch.randn(TOKENS, IN, generator=g).to(DEVICE, torch.bfloat16)
    a, b = a.float().requires_grad_(), b.float().requires_grad_()
    y = lora_linear(x, w, None, None, a, b, s)
    assert y.dtype == torch.bfloat16
    y.sum().backward()
    assert a.grad.dtype == b.grad.dtype == torch.float32
    expected = reference(x.float(), w.float(), None, a.detach(), b.detach(), s)
    close(y, expected, TOLERANCE[torch.bfloat16], "y")


def test_without_an_input_gradient_dx_is_not_computed():
    g = torch.Generator().manual_seed(2)
    (w, _), _, _, a, b, s = projection(g, IN, OUT, torch.float32, "dense")
    a.requires_grad_()
    x = torch.randn(TOKENS, IN, generator=g).to(DEVICE)  # the generator is the CPU's: drawn there, then moved
    lora_linear(x, w, None, None, a, b, s).sum().backward()
    assert x.grad is None and a.grad is not None


@pytest.mark.parametrize("nested", [False, True], ids=["absmax", "nested-absmax"])
def test_4bit_dequantization_matches_bitsandbytes(nested):
    from bitsandbytes.functional import dequantize_4bit as bnb_dequantize

    w = torch.randn(45, 67, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    packed, state = quantized(w, nested)
    expected = bnb_dequantize(packed, state)
    assert torch.equal(dequantize_4bit(packed, state, torch.float32, scratch=False), expected)
    first = dequantize_4bit(packed, state, torch.bfloat16)
    close(first, expected, 2 ** -7, "bf16")  # one bf16 step: a GPU rounds, the interpreter truncates
    assert first.dtype == torch.bfloat16
    assert dequantize_4bit(packed, state, torch.bfloat16).data_ptr() == first.data_ptr()  # the shared scratch


@pytest.mark.parametrize("dtype", list(TOLERANCE), ids=str)
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("base", ["dense", "nf4"])
def test_lora_mlp_matches_plain_math(base, activation, dtype):
    g = torch.Generator().manual_seed(4)
    gate, up = (projection(g, IN, OUT, dtype, base) for _ in range(2))
    down = projection(g, OUT, IN, dtype, base)
    x = torch.randn(TOKENS, IN, generator=g).to(DEVICE, dtype)

    def ours(x, *ab):
        return lora_mlp(x, *((*p[0], p[2], ab[2 * i], ab[2 * i + 1], p[5]) for i, p in enumerate((gate, up, down))),
                        activation=activation)

    def plain(x, *ab):
        return reference_mlp(x.float(), *((p[1].float(), None, ab[2 * i].float(), ab[2 * i + 1].float(), p[5])
                                          for i, p in enumerate((gate, up, down))), activation=activation)

    trained = [t for p in (gate, up, down) for t in (p[3], p[4])]
    names = ["y", "dx"] + [f"{p}.{m}" for p in ("gate", "up", "down") for m in ("dA", "dB")]
    for name, mine, theirs in zip(names, grads_of(ours, x, *trained), grads_of(plain, x, *trained)):
        close(mine, theirs, TOLERANCE[dtype], f"{base} {activation} {dtype} {name}")
        assert mine.dtype == dtype


@NEEDS_GPU
def test_llama_sized_lora_linear_on_a_gpu():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2048, 4096, generator=g).to("cuda", torch.bfloat16)
    w = (torch.randn(14336, 4096, generator=g) / 64).to("cuda", torch.bfloat16)
    a = (torch.randn(16, 4096, generator=g) / 64).to("cuda", torch.bfloat16)
    b = (torch.randn(14336, 16, generator=g) / 4).to("cuda", torch.bfloat16)
    ours = grads_of(lambda x, a, b: lora_linear(x, w, None, None, a, b, 2.0), x, a, b)
    plain = grads_of(lambda x, a, b: reference(x, w, None, a, b, 2.0), x, a, b)
    for name, mine, theirs in zip(("y", "dx", "dA", "dB"), ours, plain):
        close(mine, theirs, TOLERANCE[torch.bfloat16], name)
