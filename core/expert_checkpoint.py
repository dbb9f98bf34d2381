"""A mixture of experts' 3-D expert weights, read from checkpoints that keep one tensor per expert.

transformers 5 keeps each layer's experts as 3-D weights: `mlp.experts.gate_up_proj` [experts, 2·width, hidden]
(each expert's gate rows, then its up rows) and `mlp.experts.down_proj` [experts, hidden, width]. Checkpoints, as
released and as transformers itself saves them, keep one 2-D tensor per expert and projection
(`mlp.experts.0.gate_proj.weight`; Mixtral's `block_sparse_moe.experts.0.w1.weight` with w1 the gate, w3 the up
and w2 the down projection, its router `block_sparse_moe.gate.weight`), and transformers stacks them as it loads.
`parts` names the tensors a stacked weight is made of and `stack` makes it, so what reads a checkpoint one layer at
a time by the model's names (core/offload/layerwise.py's Checkpoint) reads these checkpoints too. gpt-oss keeps its
experts stacked already.
"""

from __future__ import annotations

# The model's stacked weight → the per-expert projections it is made of, in the order their rows are concatenated:
# the names transformers' Qwen, OLMoE and Mixtral checkpoints use.
PROJECTIONS = {
    "gate_up_proj": (("gate_proj", "up_proj"), ("w1", "w3")),
    "down_proj": (("down_proj",), ("w2",)),
}
MIXTRAL_BLOCK = (".mlp.", ".block_sparse_moe.")  # the MoE block's name in the model, in Mixtral's checkpoints


def renamed(name: str) -> str | None:
    """The name a Mixtral checkpoint keeps the model's tensor `name` under (None: no other name)."""
    model, stored = MIXTRAL_BLOCK
    return name.replace(model, stored, 1) if model in name else None


def parts(name: str, stored: dict[str, str]) -> list[list[str]] | None:
    """The checkpoint's names (`stored`: a name as the model would have it → the checkpoint's) of the tensors the
    stacked expert weight `name` is made of, expert by expert; None where `name` is not a stacked expert weight or
    the checkpoint does not hold its parts."""
    experts, _, weight = name.rpartition(".")
    if weight not in PROJECTIONS or not experts.endswith(".experts"):
        return None
    for prefix in filter(None, (experts, renamed(experts))):
        for projections in PROJECTIONS[weight]:
            found = []
            while all(f"{prefix}.{len(found)}.{p}.weight" in stored for p in projections):
                found.append([stored[f"{prefix}.{len(found)}.{p}.weight"] for p in projections])
            if found:
                return found
    return None


def shape(parts_of: list[list[str]], shapes: dict) -> tuple[int, int, int]:
    """The stacked weight's shape, from its parts' (`shapes`: the checkpoint's name → shape)."""
    first = parts_of[0]
    return len(parts_of), sum(shapes[p][0] for p in first), shapes[first[0]][1]


def stack(parts_of: list[list[str]], get):
    """The 3-D weight from its parts (`parts`), `get` reading one tensor by the checkpoint's name."""
    import torch

    return torch.stack([torch.cat([get(p) for p in expert]) for expert in parts_of])
