"""The switch: our kernels into one transformers model instance, with the reason for anything left as it was.

`patch(model, ops, device)` finds the causal LM inside `model` (peft's wrappers included: LoRA wraps the
projections, which only the lora op touches) and, per op:

- rmsnorm: every `<Arch>RMSNorm` module (layer norms, the final norm, Qwen3's and Gemma 3's q_norm/k_norm)
  gets our forward, in its family's casting order (Gemma 4's value norms, without a weight, too);
- swiglu: every `<Arch>MLP` (the layers' prefix, `LAYER_PREFIX`, where it is not the model's) computes
  down(act(gate(x)) · up(x)) with our fused act · up (SiLU, or GELU-tanh for Gemma); backward reuses the gate and up
  buffers, which in that forward are nobody else's;
- rope: every `<Arch>Attention` runs our rotary kernel. The attention forward calls its modeling module's
  `apply_rotary_pos_emb` by global name, so that name becomes a dispatcher that runs ours only while a patched
  attention module's forward is running (a context variable) and transformers' own everywhere else: other
  models in the same process are untouched, and gradient checkpointing's recompute, which re-enters the
  patched forward, takes the same path. Gemma 4's form rotates queries and keys in separate calls
  (`apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim)`), told apart by its parameters' names;
- lora: every peft LoRA linear (`lora.Linear` on a float nn.Linear, `lora.Linear4bit` on bitsandbytes' 4-bit
  Linear4bit) with one adapter, dropout 0, no DoRA or other variant, no LoRA bias and a frozen base runs
  tuneforge_kernels/lora.py's one-node forward; every `<Arch>MLP` whose gate, up and down projections all do (and whose
  activation is SiLU or GELU-tanh) runs the fused LoRA MLP instead, which replaces swiglu's MLP forward. At call
  time anything peft's forward would do differently (adapters disabled or merged, another adapter active,
  `adapter_names`, extra arguments, autocast) runs peft's forward;
- cross_entropy: the `<Arch>ForCausalLM` forward (Gemma 3's and 4's `ForConditionalGeneration` one where they load
  whole: `WHOLE_MODELS`), when given labels, runs the decoder (`self.model`), then our fused loss on its last
  hidden states and the head's weight, and returns the loss with `logits=None`. Why this route: in transformers
  5.23 the causal LM's forward builds all logits (`self.lm_head(hidden_states)`) before `self.loss_function` sees
  them, so a custom `loss_function` comes too late, and `logits_to_keep` only slices positions; the model's
  forward is the one place where the logits can be skipped. Without labels, or with `logits_to_keep` or
  `return_dict=False`, the model's own forward runs, logits and all. Transformers' loss arguments are honoured:
  `num_items_in_batch` (sum, divided by it), `shift_labels`, `ignore_index`, and Gemma's
  `final_logit_softcapping`. Ours: `token_losses=True` returns each token's loss ([batch, seq], 0 where ignored)
  as `loss`, which the preference objectives sum over each answer (`gives_token_losses` tells whether a model
  takes it).

Patches are per instance: each module's `forward` attribute is a method bound to that module, calling the
class's own forward where it needs the original, so `copy.deepcopy` of a patched model stays consistent and
nothing is changed on the classes (rope's dispatcher is the one shared change). A module whose forward another
library already replaced (accelerate's hooks) is left alone, with the reason. Patching twice is harmless.

Transformers' own hub kernels are turned off in the model first. Since 5.25, with Hugging Face's `kernels`
package installed (transformers depends on it), `from_pretrained` kernelizes by default and every `train()` or
`eval()` kernelizes again, which sets each decorated layer's forward back and so silently undid our patch (our
RMSNorm stood aside from the trainer's first `model.train()` on). core.runtime_env also sets USE_HUB_KERNELS=0
for every process of ours; this keeps a model loaded elsewhere safe too.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import sys
import types
from dataclasses import dataclass

from tuneforge_kernels import OPS, toolchain

# The kernel modules import triton, which decides at their import whether to interpret them: this module, which
# core imports with the trainer, imports them only inside the patched forwards.

# model_type → (the prefix of its modeling classes, its RMSNorm's casting order: rmsnorm.LLAMA or GEMMA)
ARCHITECTURES = {
    "llama": ("Llama", "llama"),  # SmolLM too
    "mistral": ("Mistral", "llama"),
    "qwen2": ("Qwen2", "llama"),
    "qwen3": ("Qwen3", "llama"),
    "gemma2": ("Gemma2", "gemma"),
    "gemma3_text": ("Gemma3", "gemma"),
    "smollm3": ("SmolLM3", "llama"),  # its layers without rope never call apply_rotary_pos_emb, patched or not
    "phi3": ("Phi3", "llama"),  # its MLP fuses gate and up: no SwiGLU kernel there
    "olmo2": ("Olmo2", "llama"),  # (OLMo 3's sliding layers too)
    "olmo3": ("Olmo3", "llama"),
    "granite": ("Granite", "llama"),
    "lfm2": ("Lfm2", "llama"),  # its MLP is w1, w2, w3: no SwiGLU kernel there
    "qwen3_5_text": ("Qwen3_5", "gemma"),  # (1 + weight) norms, as Gemma's
    "gemma4_text": ("Gemma4", "gemma4"),  # its weight in fp32, no offset; value norms without one
    # Mixtures of experts: their experts keep transformers' own implementation (or core/four_bit_experts.py's);
    # a dense MLP beside them (Qwen2-MoE's shared expert) takes the SwiGLU kernel
    "qwen3_moe": ("Qwen3Moe", "llama"),
    "qwen2_moe": ("Qwen2Moe", "llama"),
    "mixtral": ("Mixtral", "llama"),
    "olmoe": ("Olmoe", "llama"),
    "gpt_oss": ("GptOss", "llama"),  # its MLP is the router and experts; its rotary embedding is its own (below)
    "qwen3_5_moe_text": ("Qwen3_5Moe", "gemma"),  # a shared expert beside the routed ones takes the SwiGLU kernel
}
# Ops an architecture above does not take, and why (the others go in)
MROPE = "Qwen 3.5 rotates part of each head in interleaved sections (mrope), which our RoPE kernel does not take"
NOT_FOR = {
    "gpt_oss": {"rope": "gpt-oss rotates by half-width cos and sin tables, which our RoPE kernel does not take"},
    "granite": {"cross_entropy": "Granite divides its logits by logits_scaling, which our fused loss does not"},
    "qwen3_5_text": {"rope": MROPE},
    "qwen3_5_moe_text": {"rope": MROPE},
}
# The MLP and attention classes' prefix where it is not the model's: Gemma 4's layers are Gemma4Text*, its norms
# Gemma4RMSNorm and its causal LM Gemma4ForCausalLM
LAYER_PREFIX = {"gemma4_text": "Gemma4Text"}
# A vision-language model loaded whole (its config's model_type) whose own forward our fused loss replaces → whether
# that forward caps the logits as its language model's config says (Gemma 4's does; Gemma 3's does not, though its
# text config carries the setting). Elsewhere such a model computes its loss in its own forward.
WHOLE_MODELS = {"gemma3": False, "gemma4": True}


@dataclass(frozen=True)
class Patched:
    """What one op did: the module names it now runs in, and why it runs nowhere (or not in some modules)."""

    places: tuple[str, ...] = ()
    reason: str = ""

    @property
    def active(self) -> bool:
        return bool(self.places)


def unavailable(device) -> str | None:
    """Why our kernels cannot run on `device` (None when they can)."""
    import torch

    device = torch.device(device)
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        return ("no CUDA GPU: the plain PyTorch path runs (on a CPU the kernels run only in Triton's interpreter, "
                "TRITON_INTERPRET=1, which the tests use)")
    if device.type not in ("cpu", "cuda"):
        return f"the model is on {device.type}; the kernels are written for CUDA GPUs"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "Triton is not installed (it comes with torch's CUDA builds on Linux)"
    if device.type != "cuda":
        return None  # the interpreter compiles nothing
    return (toolchain.gpu_too_old(torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device))
            or toolchain.missing())


def patch(model, ops=tuple(OPS), device=None) -> dict[str, Patched]:
    """Our kernels for `ops` (names in tuneforge_kernels.OPS) into `model` on `device` (default: where its weights are):
    op → Patched, for every op asked for."""
    ops = list(ops)
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ValueError(f"unknown kernel(s) {', '.join(unknown)}; known ones are {', '.join(OPS)}")
    if not ops:
        return {}
    why = unavailable(device if device is not None else next(model.parameters()).device)
    if why:
        return {op: Patched(reason=why) for op in ops}
    lm, model_type = _causal_lm(model), _language_model_type(model)
    if lm is None and model_type is None:
        config = getattr(model, "config", None)
        kind = getattr(config, "model_type", None) or type(model).__name__
        why = f"{kind} is not a causal LM of a supported architecture ({', '.join(ARCHITECTURES)})"
        return {op: Patched(reason=why) for op in ops}
    _hub_kernels_off(model)
    model_type = lm.config.model_type if lm is not None else model_type
    prefix, norm = ARCHITECTURES[model_type]
    layers = LAYER_PREFIX.get(model_type, prefix)
    skipped = dict(NOT_FOR.get(model_type, {}))
    if _loss_owner(model) is None:  # a vision-language model loaded whole: its language model's layers take them
        skipped.setdefault("cross_entropy", f"{model.config.model_type} is a vision-language model loaded whole "
                                            "that computes its loss in its own forward, which the fused loss does "
                                            "not replace")
    from tuneforge_kernels.patch_lora import patch_lora  # (it builds on this module's helpers)

    # op → its patcher and the prefix of the classes it patches
    patchers = {"rmsnorm": (_patch_norms, prefix), "swiglu": (_patch_mlps, layers), "rope": (_patch_rope, layers),
                "cross_entropy": (_patch_loss, prefix), "lora": (patch_lora, layers)}
    # in OPS's order whatever the order asked: lora's fused MLP replaces swiglu's MLP forward, not the other way
    done = {op: Patched(reason=skipped[op]) if op in skipped else patchers[op][0](model, patchers[op][1], norm)
            for op in sorted(ops, key=list(OPS).index)}
    return {op: done[op] for op in ops}


def _language_model_type(model) -> str | None:
    """A vision-language model's language model's type where it is a supported architecture (None otherwise)."""
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else None
    kind = getattr(text, "model_type", None)
    return kind if text is not config and kind in ARCHITECTURES else None


def _hub_kernels_off(model) -> None:
    """Undo transformers' hub kernelization of `model` and keep train()/eval() from redoing it (see the module's
    docstring): reset_kernels() restores the torch forwards and clears the mode that a later train() compares."""
    for module in model.modules():
        if getattr(module, "use_kernels", False) and hasattr(module, "reset_kernels"):
            module.reset_kernels()


def _causal_lm(model):
    classes = {f"{prefix}ForCausalLM": model_type for model_type, (prefix, _) in ARCHITECTURES.items()}
    for module in model.modules():
        model_type = classes.get(type(module).__name__)
        if model_type is not None and model_type == getattr(getattr(module, "config", None), "model_type", None):
            return module
    return None


def _loss_owner(model):
    """The module whose forward computes the loss: the causal LM, or a vision-language model of WHOLE_MODELS."""
    lm = _causal_lm(model)
    if lm is not None:
        return lm
    return next((m for m in model.modules() if type(m).__name__.endswith("ForConditionalGeneration")
                 and getattr(getattr(m, "config", None), "model_type", None) in WHOLE_MODELS), None)


def _patch_each(model, class_name: str, forward_for) -> Patched:
    """Our forward (`forward_for(module)`: a function, or the sentence why this module has no kernel here) into
    every module of `class_name`; modules whose forward another library replaced (accelerate's hooks) are left
    alone."""
    places, why_not = [], []
    for name, module in model.named_modules():
        if type(module).__name__ != class_name:
            continue
        if "forward" in vars(module) and not getattr(module, "tuneforge_kernel", False):
            why_not.append(f"{name}'s forward was already replaced by another library")
            continue
        forward = forward_for(module)
        if isinstance(forward, str):
            why_not.append(forward)
            continue
        module.forward = types.MethodType(forward, module)
        module.tuneforge_kernel = True
        places.append(name or "(the model)")
    why = "; ".join(dict.fromkeys(why_not))  # kept beside the places when only some modules were left alone
    return Patched(places=tuple(places), reason=why or ("" if places else f"no {class_name} module in this model"))


# --- rmsnorm -----------------------------------------------------------------------------------------------------
def _norm_forward(variant, self, x):
    from tuneforge_kernels.rmsnorm import rms_norm

    eps = self.variance_epsilon if hasattr(self, "variance_epsilon") else self.eps
    return rms_norm(x, getattr(self, "weight", None), eps, variant)  # (Gemma 4's value norms have none)


def _patch_norms(model, prefix, variant) -> Patched:
    return _patch_each(model, f"{prefix}RMSNorm", lambda module: functools.partial(_norm_forward, variant))


# --- swiglu ------------------------------------------------------------------------------------------------------
def _mlp_forward(activation, self, x):
    from tuneforge_kernels.swiglu import gated

    # in place: gate_proj(x) and up_proj(x) are temporaries of this forward, read by nothing but the product
    return self.down_proj(gated(self.gate_proj(x), self.up_proj(x), activation, inplace=True))


def activation_of(module) -> str:
    """The kernel's name for `module.act_fn` ("silu", "gelu_tanh"), or the sentence why it has none."""
    import torch
    from transformers.activations import GELUTanh, SiLUActivation

    if isinstance(module.act_fn, (torch.nn.SiLU, SiLUActivation)):
        return "silu"
    if isinstance(module.act_fn, GELUTanh):
        return "gelu_tanh"
    return f"the activation {type(module.act_fn).__name__} has no kernel here (SiLU and GELU-tanh do)"


def mlp_forward_for(module):
    if not hasattr(module, "gate_proj"):  # gpt-oss's MLP is its router and experts; Phi-3's and LFM2's are fused
        if hasattr(module, "experts"):
            return "the MLP is a mixture of experts, whose experts compute their gated activation in their own way"
        return "the MLP keeps its projections otherwise than as gate_proj, up_proj and down_proj"
    activation = activation_of(module)
    return functools.partial(_mlp_forward, activation) if activation in ("silu", "gelu_tanh") else activation


def _experts_gate(activation, self, gate_up):
    from tuneforge_kernels.swiglu import gated

    gate, up = gate_up.chunk(2, dim=-1)  # transformers' default gate: the gate's rows, then the up's
    return gated(gate, up, activation)  # (not in place: the chunks of a single token's row are views of gate_up)


def experts_gate_for(module):
    """Our kernel as an experts module's gated activation (`_apply_gate`, which every implementation in transformers'
    registry calls, and core/four_bit_experts.py's), where it is transformers' default one: gpt-oss's clamps."""
    from transformers.integrations.moe import _default_apply_gate

    if type(module)._apply_gate is not _default_apply_gate:
        return f"{type(module).__name__} computes its own gated activation"
    activation = activation_of(module)
    return functools.partial(_experts_gate, activation) if activation in ("silu", "gelu_tanh") else activation


def _patch_mlps(model, prefix, _) -> Patched:
    """The dense MLPs' forward, and a mixture of experts' experts' gated activation (transformers' experts modules:
    those with `has_gate`, which use a gate at all)."""
    dense = _patch_each(model, f"{prefix}MLP", mlp_forward_for)
    places, why_not = list(dense.places), [dense.reason] if dense.places else []
    for name, module in model.named_modules():
        if getattr(module, "has_gate", False):
            gate = experts_gate_for(module)
            if isinstance(gate, str):
                why_not.append(gate)
                continue
            module._apply_gate = types.MethodType(gate, module)
            places.append(name)
    if not places:
        return Patched(reason="; ".join(dict.fromkeys(filter(None, why_not))) or dense.reason)
    return Patched(places=tuple(places), reason="; ".join(dict.fromkeys(filter(None, why_not))))


# --- rope --------------------------------------------------------------------------------------------------------
_ROPE_ON = contextvars.ContextVar("tuneforge_rope", default=False)


def _dispatching(original):
    if list(inspect.signature(original).parameters)[:3] == ["x", "cos", "sin"]:
        return _dispatching_one(original)

    @functools.wraps(original)
    def apply_rotary_pos_emb(q, k, cos, sin, *args, **kwargs):
        unsqueeze_dim = args[0] if args else kwargs.get("unsqueeze_dim", 1)
        if _ROPE_ON.get() and unsqueeze_dim == 1 and len(args) + len(kwargs) <= 1:
            from tuneforge_kernels.rope import apply_rope

            return apply_rope(q, k, cos, sin)
        return original(q, k, cos, sin, *args, **kwargs)

    apply_rotary_pos_emb.tuneforge_original = original
    return apply_rotary_pos_emb


def _dispatching_one(original):
    """The dispatcher for Gemma 4's form, `apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim)`: queries and keys
    rotated in separate calls."""
    @functools.wraps(original)
    def apply_rotary_pos_emb(x, cos, sin, unsqueeze_dim=1):
        if _ROPE_ON.get() and unsqueeze_dim in (1, 2) and x.dim() == 4 and cos.dim() == 3:
            from tuneforge_kernels.rope import apply_rope_one

            return apply_rope_one(x, cos, sin, unsqueeze_dim)
        return original(x, cos, sin, unsqueeze_dim)

    apply_rotary_pos_emb.tuneforge_original = original
    return apply_rotary_pos_emb


def _attention_forward(self, *args, **kwargs):
    token = _ROPE_ON.set(True)
    try:
        return type(self).forward(self, *args, **kwargs)
    finally:
        _ROPE_ON.reset(token)


def _attention_forward_for(module):
    modeling = sys.modules[type(module).__module__]
    current = getattr(modeling, "apply_rotary_pos_emb", None)
    if current is None:
        return f"{type(module).__name__} does not call apply_rotary_pos_emb by name here"
    if not hasattr(current, "tuneforge_original"):
        modeling.apply_rotary_pos_emb = _dispatching(current)
    return _attention_forward


def _patch_rope(model, prefix, _) -> Patched:
    return _patch_each(model, f"{prefix}Attention", _attention_forward_for)


# --- cross_entropy -----------------------------------------------------------------------------------------------
def gives_token_losses(model) -> bool:
    """Whether `model`'s forward takes `token_losses=True` (with labels): our fused loss runs in its causal LM."""
    owner = _loss_owner(model)
    return owner is not None and getattr(vars(owner).get("forward"), "__func__", None) is _causal_lm_forward


def _causal_lm_forward(self, input_ids=None, labels=None, logits_to_keep=0, token_losses=False, **kwargs):
    # Everything else (attention_mask, position_ids, the cache, inputs_embeds, use_cache...) passes through as the
    # caller gave it: transformers 5.25 renamed `past_key_values` to `cache` (the old name warns, and goes in 5.40),
    # so naming either here would tie us to one version.
    import dataclasses

    import torch
    from transformers.modeling_outputs import CausalLMOutputWithPast

    from tuneforge_kernels.fused_linear_cross_entropy import IGNORE_INDEX, causal_targets, fused_linear_cross_entropy

    keep_all = not torch.is_tensor(logits_to_keep) and logits_to_keep == 0
    if labels is None or not keep_all or kwargs.get("return_dict") is False:
        if token_losses:
            raise ValueError("token_losses needs labels, all positions and a return_dict")
        return type(self).forward(self, input_ids=input_ids, labels=labels, logits_to_keep=logits_to_keep, **kwargs)
    num_items = kwargs.pop("num_items_in_batch", None)
    shift_labels = kwargs.pop("shift_labels", None)
    ignore_index = kwargs.pop("ignore_index", IGNORE_INDEX)
    text = self.config.get_text_config()
    whole = text is not self.config  # a vision-language model loaded whole: its model takes the labels too, as
    # its own forward passes them (Gemma 3 and 4: for the attention over images)
    outputs = self.model(input_ids=input_ids, **({"labels": labels} if whole else {}), **kwargs)
    hidden = outputs.last_hidden_state
    targets = shift_labels if shift_labels is not None else causal_targets(labels, ignore_index)
    softcap = getattr(text, "final_logit_softcapping", None) if not whole or WHOLE_MODELS[self.config.model_type] \
        else None
    loss = fused_linear_cross_entropy(hidden, self.lm_head.weight, targets.to(hidden.device), ignore_index,
                                      reduction="none" if token_losses else "mean" if num_items is None else "sum",
                                      softcap=softcap)
    if num_items is not None and not token_losses:
        loss = loss / (num_items.to(loss.device) if torch.is_tensor(num_items) else num_items)
    cache = {f.name: getattr(outputs, f.name, None) for f in dataclasses.fields(CausalLMOutputWithPast)
             if f.name in ("cache", "past_key_values")}  # the field's name in this transformers
    return CausalLMOutputWithPast(loss=loss, logits=None, hidden_states=outputs.hidden_states,
                                  attentions=outputs.attentions, **cache)


def _causal_lm_forward_for(module):
    import torch

    head = module.lm_head
    if type(head) is not torch.nn.Linear or head.bias is not None or "forward" in vars(head):
        return (f"the head is {type(head).__name__}, not a plain bias-free Linear (LoRA, quantization or hooks on "
                "lm_head): the plain loss runs")
    return _causal_lm_forward


def _patch_loss(model, _prefix, _) -> Patched:
    return _patch_each(model, type(_loss_owner(model)).__name__, _causal_lm_forward_for)
