"""A mixture of experts' 3-D expert weights, read from checkpoints that keep them otherwise.

transformers 5 keeps each layer's experts as 3-D weights: `mlp.experts.gate_up_proj` [experts, 2·width, hidden]
(each expert's gate rows, then its up rows) and `mlp.experts.down_proj` [experts, hidden, width]. Checkpoints keep
them otherwise, and transformers converts them as it loads:

- one 2-D tensor per expert and projection, as released and as transformers itself saves them
  (`mlp.experts.0.gate_proj.weight`; Mixtral's `block_sparse_moe.experts.0.w1.weight` with w1 the gate, w3 the up
  and w2 the down projection, its router `block_sparse_moe.gate.weight`): stacked;
- gpt-oss's MXFP4 (`mlp.experts.gate_up_proj_blocks`, two 4-bit values a byte, and `_scales`, a power of two per
  32 values): decoded by transformers' own function (integrations/mxfp4.py), which also lays them out as the model
  keeps them ([experts, in, out]).

`find` says how a weight is kept and `Stored` reads it, so what reads a checkpoint one layer at a time by the
model's names (core/offload/layerwise.py's Checkpoint, core/merge_stream.py) reads these checkpoints too.
"""

from __future__ import annotations

from dataclasses import dataclass

# The model's stacked weight → the per-expert projections it is made of, in the order their rows are concatenated:
# the names transformers' Qwen, OLMoE and Mixtral checkpoints use.
PROJECTIONS = {
    "gate_up_proj": (("gate_proj", "up_proj"), ("w1", "w3")),
    "down_proj": (("down_proj",), ("w2",)),
}
MIXTRAL_BLOCK = (".mlp.", ".block_sparse_moe.")  # the MoE block's name in the model, in Mixtral's checkpoints
MXFP4_GROUP = 32  # values a scale covers (16 bytes of blocks)


@dataclass(frozen=True)
class Stored:
    """How a checkpoint keeps one 3-D expert weight: `parts` per expert (each expert's projections, in order), or
    `mxfp4` (its blocks' and scales' names)."""
    parts: tuple[tuple[str, ...], ...] = ()
    mxfp4: tuple[str, str] | None = None

    @property
    def sources(self) -> list[str]:
        """The checkpoint's tensors it is made of."""
        return list(self.mxfp4) if self.mxfp4 else [name for expert in self.parts for name in expert]

    def read(self, get, dtype=None):
        """The weight as the model keeps it; `get` reads one tensor by the checkpoint's name."""
        import torch

        if self.mxfp4:
            from transformers.integrations.mxfp4 import convert_moe_packed_tensors

            blocks, scales = (get(name) for name in self.mxfp4)
            return convert_moe_packed_tensors(blocks, scales, dtype=dtype or torch.bfloat16)
        return torch.stack([torch.cat([get(p) for p in expert]) for expert in self.parts])

    def shape(self, shapes: dict) -> tuple[int, int, int]:
        """Its shape, from the checkpoint's (`shapes`: the checkpoint's name → shape)."""
        if self.mxfp4:
            experts, rows, groups, _ = shapes[self.mxfp4[0]]
            return experts, groups * MXFP4_GROUP, rows
        first = self.parts[0]
        return len(self.parts), sum(shapes[p][0] for p in first), shapes[first[0]][1]


def renamed(name: str) -> str | None:
    """The name a Mixtral checkpoint keeps the model's tensor `name` under (None: no other name)."""
    model, stored = MIXTRAL_BLOCK
    return name.replace(model, stored, 1) if model in name else None


def find(name: str, stored: dict[str, str]) -> Stored | None:
    """How the checkpoint (`stored`: a name as the model would have it → the checkpoint's) keeps the 3-D expert
    weight `name`; None where `name` is not one, or the checkpoint does not hold it in a way read here."""
    experts, _, weight = name.rpartition(".")
    if weight not in PROJECTIONS or not experts.endswith(".experts"):
        return None
    blocks, scales = f"{name}_blocks", f"{name}_scales"
    if blocks in stored and scales in stored:
        return Stored(mxfp4=(stored[blocks], stored[scales]))
    for prefix in filter(None, (experts, renamed(experts))):
        for projections in PROJECTIONS[weight]:
            found = []
            while all(f"{prefix}.{len(found)}.{p}.weight" in stored for p in projections):
                found.append(tuple(stored[f"{prefix}.{len(found)}.{p}.weight"] for p in projections))
            if found:
                return Stored(parts=tuple(found))
    return None
