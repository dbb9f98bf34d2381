"""Our own Triton kernels for training, and the switch that puts them into a transformers model (STYLE §8).

Each op is one file with its Triton kernel(s) and autograd Function; tests/kernels/ checks it against a plain
PyTorch reference, values and gradients, over odd shapes and a dtype/tolerance table (on the CPU under
Triton's interpreter, and on a GPU when there is one), and benchmarks/kernels_gpu.py times it against that
same reference:

- `cross_entropy` (fused_linear_cross_entropy.py): a linear head's cross-entropy chunked over tokens, so the
  batch × sequence × vocabulary logits never exist; gradients computed in the forward pass;
- `rmsnorm` (rmsnorm.py): RMSNorm in Llama's, Gemma's and Gemma 4's casting orders;
- `swiglu` (swiglu.py): the gated MLP's act(gate) · up, SiLU or Gemma's tanh-approximated GELU;
- `rope` (rope.py): rotary embedding of queries and keys (together, or one at a time as Gemma 4 calls it),
  transformers' rotate_half convention;
- `lora` (lora.py): peft's LoRA linears (float or bitsandbytes 4-bit bases) as one autograd node each, the base
  GEMM and the low-rank path together, saving x and the rank-sized x·Aᵀ only; the gated MLP of three LoRA
  projections as one node that recomputes act(gate)·up in backward; our Triton kernel dequantizes 4-bit weights.

patch.py is the switch: `patch(model, ops, device)` puts them into one transformers model instance of a
supported architecture (`ARCHITECTURES`: the Llama family with SmolLM, Mistral, Qwen2, Qwen3, Qwen 3.5, Gemma 2-4,
Phi-3, SmolLM3, Granite, OLMo 2 and 3, LFM2, and mixtures of experts, their experts' gated activation too; `NOT_FOR`
the ops an architecture does not take, and why; a vision-language model loaded whole, in its language model's
layers), peft-wrapped or not, and says per op where it did and, where it did not, why. The kernels run on CUDA,
and on the CPU only in Triton's interpreter (TRITON_INTERPRET=1 set before triton is imported), which is what the
tests use.

Importing this package imports neither torch nor triton (core.run_config reads `OPS` from it). It depends on
nothing in core/, app/ or ui/.
"""

# op name (as a run's `kernels` setting lists it) → the module in this package that holds it
OPS = {
    "rmsnorm": "rmsnorm",
    "swiglu": "swiglu",
    "rope": "rope",
    "cross_entropy": "fused_linear_cross_entropy",
    "lora": "lora",
}
