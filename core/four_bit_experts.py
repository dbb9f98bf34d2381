"""A mixture of experts' frozen experts kept in 4 bits, under QLoRA and offload (a 4-bit base).

bitsandbytes quantizes linear layers (nn.Linear → Linear4bit), and transformers 5 keeps each layer's experts as 3-D
weights (`experts.gate_up_proj` [experts, out, in]), which it leaves in 16 bits: 28.9 of Qwen3-30B-A3B's 30.5 B
weights, 58 GB where 4 bits take 15. Where the experts train no adapters (LoRA's `experts` false, which the plan
chooses where their adapters do not fit), nothing needs those 16-bit weights, so a 4-bit base keeps them as
bitsandbytes' 4-bit codes, each expert quantized as a Linear4bit's weight would be (blocks of 64, double-quantized
constants), and `expert_forward`, registered with transformers as an experts implementation, computes each expert
from its dequantized weight:

- a dequantized expert serves one matrix product and is dropped; backward dequantizes it again (`_FourBitLinear`)
  instead of autograd keeping it, so a layer's recompute holds one expert in 16 bits, not all of them;
- `quantize_experts` takes one layer at a time (QLoRA, and offload's weight store, read the checkpoint layer by
  layer: core/offload/layerwise.py), and an expert goes to the device alone, so no more than one layer's experts
  are ever in 16 bits; offload's store then streams the codes with the layer's other frozen weights.

Experts with adapters stay in 16 bits: peft adds the adapters' product into the whole stack on every forward.
"""

from __future__ import annotations

import torch

NAME = "tuneforge_4bit"  # the experts implementation's name in transformers' registry
WEIGHTS = ("gate_up_proj", "up_proj", "down_proj")  # the 3-D weights transformers' experts modules keep
BLOCK = 64  # values per absmax block, as bitsandbytes' Linear4bit


class FourBitStack(torch.nn.Module):
    """One 3-D expert weight as 4-bit codes, expert by expert; `weight(e)` is expert e's [out, in]. The codes
    are made on the device they are used on (the quantization constants do not follow `.to()`); they are a frozen
    2-D parameter, so offload's weight store streams them with the layer's others (core/offload/layerwise.py) and
    nothing takes them for an expert weight to adapt. Indexed as the 3-D weight was (`stack[e]`, in its own layout
    and precision), it serves an experts module that computes its own way, outside transformers' registry, though
    autograd then keeps each dequantized expert for backward."""

    def __init__(self, codes: torch.Tensor, states: list, shape: tuple[int, ...], transposed: bool, dtype):
        super().__init__()
        self.codes = torch.nn.Parameter(codes, requires_grad=False)  # [experts, out·in/2] uint8
        self.states, self.shape, self.transposed, self.dtype = states, shape, transposed, dtype

    def __getitem__(self, e) -> torch.Tensor:
        w = self.weight(int(e), self.dtype)
        return w.t() if self.transposed else w

    def weight(self, e: int, dtype: torch.dtype) -> torch.Tensor:
        from bitsandbytes.functional import dequantize_4bit

        return dequantize_4bit(self.codes[e].unsqueeze(1), self.states[e]).to(dtype)

    def linear(self, x: torch.Tensor, e: int) -> torch.Tensor:
        return _FourBitLinear.apply(x, self, e)

    def extra_repr(self) -> str:
        return f"experts={self.shape[0]}, out={self.shape[1]}, in={self.shape[2]}, 4-bit"


class _FourBitLinear(torch.autograd.Function):
    """x · W_eᵀ for a frozen 4-bit expert: nothing of W is saved, backward dequantizes it again."""

    @staticmethod
    def forward(ctx, x, stack, e):
        ctx.stack, ctx.e = stack, e
        return x @ stack.weight(e, x.dtype).t()

    @staticmethod
    def backward(ctx, grad):
        return grad @ ctx.stack.weight(ctx.e, grad.dtype), None, None


def quantize(weight: torch.Tensor, transposed: bool, device, quant_type: str, double_quant: bool) -> FourBitStack:
    """A 3-D expert weight ([experts, out, in], or [experts, in, out] where `transposed`) as a FourBitStack on
    `device`, one expert on the device at a time."""
    from bitsandbytes.functional import quantize_4bit

    codes, states = [], []
    for e in range(weight.shape[0]):
        w = weight[e].t() if transposed else weight[e]
        packed, state = quantize_4bit(w.to(device).contiguous(), blocksize=BLOCK, compress_statistics=double_quant,
                                      quant_type=quant_type)
        codes.append(packed)
        states.append(state)
    out, inp = (weight.shape[2], weight.shape[1]) if transposed else weight.shape[1:]
    return FourBitStack(torch.stack(codes).flatten(1), states, (weight.shape[0], out, inp), transposed, weight.dtype)


def rounded(weight: torch.Tensor, transposed: bool, quant_type: str, double_quant: bool) -> torch.Tensor:
    """A 3-D expert weight as its 4-bit codes give it back: what a run that kept it in 4 bits trained against."""
    stack = quantize(weight, transposed, weight.device, quant_type, double_quant)
    return torch.stack([stack[e] for e in range(weight.shape[0])])


def experts_modules(model) -> list:
    """The modules of `model` that keep 3-D expert weights (none in a dense model)."""
    return [m for m in model.modules()
            if any(isinstance(getattr(m, n, None), torch.nn.Parameter) and getattr(m, n).dim() == 3 for n in WEIGHTS)]


def quantize_experts(module, device, quant_type: str, double_quant: bool) -> None:
    """Replace `module`'s (a model's, a layer's) 3-D expert weights by FourBitStacks on `device`."""
    for experts in experts_modules(module):
        for name in WEIGHTS:
            param = getattr(experts, name, None)
            if isinstance(param, torch.nn.Parameter) and param.dim() == 3:
                with torch.no_grad():
                    stack = quantize(param.data, getattr(experts, "is_transposed", False), device, quant_type,
                                     double_quant)
                del experts._parameters[name]
                setattr(experts, name, stack)


def use_four_bit_experts(model) -> None:
    """Route the model's experts modules through `expert_forward` (transformers' registry of implementations, which
    the modules it decorates follow: those have `has_gate`)."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    if any(hasattr(m, "has_gate") for m in model.modules()):
        ALL_EXPERTS_FUNCTIONS.register(NAME, expert_forward)
        model.set_experts_implementation(NAME)


def expert_forward(self, hidden_states, top_k_index, top_k_weights):
    """transformers' experts forward (integrations/moe.py's contract and flags), each expert from its 4-bit codes.
    The (token, expert) pairs are sorted by expert once, so each expert takes a contiguous run of rows and the GPU
    waits once a layer for the counts (transformers' eager loop finds each expert's tokens apart, a wait each);
    the outputs, weighted by the router, are summed per token."""
    top_k = top_k_index.shape[-1]
    flat = top_k_index.reshape(-1)
    order = flat.argsort(stable=True)
    counts = torch.bincount(flat, minlength=self.num_experts + 1).tolist()  # the last: expert parallelism's sentinel
    token = order // top_k
    x = hidden_states[token]
    first = self.gate_up_proj if self.has_gate else self.up_proj
    first_bias = (self.gate_up_proj_bias if self.has_gate else self.up_proj_bias) if self.has_bias else None
    outs, start = [], 0
    for e, n in enumerate(counts[:self.num_experts]):
        if not n:
            continue
        h = first.linear(x[start:start + n], e)
        if first_bias is not None:
            h = h + first_bias[e]
        h = self._apply_gate(h) if self.has_gate else self.act_fn(h)
        y = self.down_proj.linear(h, e)
        if self.has_bias:
            y = y + self.down_proj_bias[e]
        outs.append(self.post_expert_norm(y) if self.has_post_expert_norm else y)
        start += n
    out = torch.zeros_like(hidden_states)
    if outs:
        used = order[:start]  # the sentinel's pairs, sorted last, are left out
        weights = top_k_weights.reshape(-1)[used, None]
        out.index_add_(0, token[:start], (torch.cat(outs) * weights).to(out.dtype))
    return out

