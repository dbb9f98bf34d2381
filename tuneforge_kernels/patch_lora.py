"""The lora op's patch (see tuneforge_kernels/patch.py for the switch as a whole): every peft LoRA linear that
tuneforge_kernels/lora.py can run gets its one-node forward, and every MLP whose three projections all do gets
the fused LoRA MLP. Which layers qualify, and the sentence for each that does not, is `_lora_why_not`; what
peft would do differently at call time (adapters disabled or merged, another adapter active, autocast) sends
that call to peft's own forward (`_lora_parts` returns None)."""

from __future__ import annotations

import functools
import types

from tuneforge_kernels.patch import Patched, mlp_forward_for


def _lora_why_not(module) -> str | None:
    """Why this peft LoRA layer keeps peft's forward (None when ours fits it)."""
    import torch

    name = type(module).__name__
    if name not in ("Linear", "Linear4bit") or not type(module).__module__.startswith("peft.tuners.lora"):
        return f"peft's LoRA {name} has no kernel here (lora.Linear and lora.Linear4bit do)"
    if len(module.lora_A) != 1:
        return "a layer with more than one LoRA adapter keeps peft's forward"
    (adapter,) = module.lora_A.keys()
    if module.lora_variant.get(adapter) is not None or module.use_dora.get(adapter):
        kind = "DoRA" if module.use_dora.get(adapter) else type(module.lora_variant[adapter]).__name__
        return f"{kind} (a LoRA variant) keeps peft's forward"
    dropout = module.lora_dropout[adapter]
    if not isinstance(dropout, torch.nn.Identity) and getattr(dropout, "p", 1.0) > 0:
        return "LoRA dropout > 0 keeps peft's forward (the kernel has none)"
    if getattr(module, "fan_in_fan_out", False) or module.lora_bias.get(adapter):
        return "fan_in_fan_out or a LoRA bias keeps peft's forward"
    base = module.get_base_layer()
    if "forward" in vars(base) or hasattr(base, "_hf_hook"):
        return "the base layer's forward was replaced by another library"
    if any(p.requires_grad for p in base.parameters(recurse=False)):
        return "a trained base layer keeps peft's forward (the kernel gives the base weight no gradient)"
    if name == "Linear4bit":
        state = getattr(base.weight, "quant_state", None)
        if state is None or state.quant_type not in ("nf4", "fp4"):
            return "a 4-bit base layer without its quantization state keeps peft's forward"
    elif type(base) is not torch.nn.Linear or not base.weight.is_floating_point():
        return f"a LoRA layer on {type(base).__name__} keeps peft's forward"
    return None


def _lora_parts(module, x):
    """(W, quant_state, bias, A, B, scaling) for tuneforge_kernels.lora, or None when peft's forward must run for x."""
    import torch

    (adapter,) = module.lora_A.keys()
    if (module.disable_adapters or module.merged or list(module.active_adapters) != [adapter]
            or torch.is_autocast_enabled(x.device.type)):
        return None
    base = module.get_base_layer()
    quant_state = getattr(base.weight, "quant_state", None) if type(module).__name__ == "Linear4bit" else None
    weight = base.weight.data
    return (weight, quant_state, base.bias, module.lora_A[adapter].weight, module.lora_B[adapter].weight,
            module.scaling[adapter])


def _lora_linear_forward(self, x, *args, **kwargs):
    parts = None if args or kwargs else _lora_parts(self, x)
    if parts is None:
        return type(self).forward(self, x, *args, **kwargs)
    from tuneforge_kernels.lora import lora_linear

    return lora_linear(x, *parts)


def _lora_mlp_forward(activation, self, x):
    parts = [_lora_parts(proj, x) for proj in (self.gate_proj, self.up_proj, self.down_proj)]
    if any(p is None for p in parts):
        return type(self).forward(self, x)
    from tuneforge_kernels.lora import lora_mlp

    return lora_mlp(x, *parts, activation=activation)


def patch_lora(model, prefix, _) -> Patched:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return Patched(reason="peft is not installed, so there is no LoRA layer to patch")

    places, why_not, eligible = [], {}, set()
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        why = _lora_why_not(module)
        if why is None and "forward" in vars(module) and not getattr(module, "tuneforge_kernel", False):
            why = "the LoRA layer's forward was already replaced by another library"
        if why is not None:
            why_not.setdefault(why, []).append(name)
            continue
        module.forward = types.MethodType(_lora_linear_forward, module)
        module.tuneforge_kernel = True
        eligible.add(module)
        places.append(name)
    for name, module in model.named_modules():
        if type(module).__name__ != f"{prefix}MLP":
            continue
        if not all(getattr(module, p, None) in eligible for p in ("gate_proj", "up_proj", "down_proj")):
            continue
        forward = mlp_forward_for(module)
        if isinstance(forward, str) or ("forward" in vars(module) and not getattr(module, "tuneforge_kernel", False)):
            why = forward if isinstance(forward, str) else "the MLP's forward was already replaced by another library"
            why_not.setdefault(why, []).append(name)
            continue
        module.forward = types.MethodType(functools.partial(_lora_mlp_forward, forward.args[0]), module)
        module.tuneforge_kernel = True
        places.append(f"{name} (fused MLP)")
    why = "; ".join(f"{why} ({names[0]}" + (f" and {len(names) - 1} more)" if len(names) > 1 else ")")
                    for why, names in why_not.items())
    return Patched(places=tuple(places), reason=why or ("" if places else "no peft LoRA layer in this model"))
