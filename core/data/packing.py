"""Packing: several short rows share one sequence, so a step spends its compute on tokens, not padding.

Correct boundaries are the whole point: a row must not see the row before it. Each row keeps its own
position ids (restarting at 0), and with no attention mask transformers builds a block-diagonal
causal mask from those restarts (masking_utils' packed-sequence detection, for sdpa, eager and flash
attention alike). The first label of every row is ignored, since it would be predicted from the end
of the previous row; an unpacked row never has its first token as a target either, so the loss over
a pack is exactly the sum of its rows' losses. `works_with(model)` checks this on the model itself
before a run relies on it, and training falls back to padding where it does not hold.

Rows are placed best-fit-decreasing (longest first, each into the fullest pack it still fits), a
deterministic order, so a resumed run rebuilds the same packs.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from core.data import tokenize
from core.data.tokenize import IGNORE, Encoded


@dataclass
class Pack:
    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    rows: int  # how many rows it holds

    @property
    def tokens(self) -> int:
        return len(self.input_ids)


def bins(lengths: list[int], seq_len: int) -> list[list[int]]:
    """Indices of the rows in each pack (the planner counts packs from token lengths alone)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    out: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, pack index), kept sorted: the best fit is a bisect away
    for i in order:
        need = min(lengths[i], seq_len)
        k = bisect.bisect_left(free, (need, -1))
        if k < len(free):
            room, b = free.pop(k)
        else:
            room, b = seq_len, len(out)
            out.append([])
        out[b].append(i)
        if room - need > 0:
            bisect.insort(free, (room - need, b))
    return [sorted(members) for members in out]


class Packs:
    """The packs of a set of rows, joined when asked for: packing a big dataset copies no tokens up front."""

    def __init__(self, rows, members: list[list[int]]):
        self.rows, self.members = rows, members

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> Pack:
        return _join([self.rows[j] for j in self.members[i]])

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


def pack(rows, seq_len: int) -> Packs:
    """Rows (a sequence of Encoded, each at most seq_len tokens) placed into as few sequences of seq_len
    tokens as fit them."""
    lengths = rows.lengths() if hasattr(rows, "lengths") else [len(r.input_ids) for r in rows]
    return Packs(rows, bins(lengths, seq_len))


def _join(members: list[Encoded]) -> Pack:
    ids, labels, positions = [], [], []
    for row in members:
        ids += row.input_ids
        labels += [IGNORE] + row.labels[1:]  # the first token would be predicted from the previous row
        positions += list(range(len(row.input_ids)))
    return Pack(ids, labels, positions, len(members))


def collate(batch: list[Pack], pad_id: int) -> dict:
    """Padded tensors for a batch of packs, with position ids and no attention mask (the mask comes from
    the position ids). Padding gets positions of its own, restarting at 0, so it is a segment that no row
    attends to; `tokens` counts the real ones (popped before the forward pass)."""
    import torch

    out = tokenize.collate(batch, pad_id)  # the same padding as unpacked rows; the mask only counts tokens
    mask = out.pop("attention_mask")
    positions = torch.zeros_like(out["input_ids"])
    for i, p in enumerate(batch):
        positions[i, :p.tokens] = torch.tensor(p.position_ids)
        positions[i, p.tokens:] = torch.arange(positions.shape[1] - p.tokens)
    return {**out, "position_ids": positions, "tokens": mask.sum()}


# Layer kinds (a config's layer_types) that carry a state along the sequence: Gated DeltaNet and Mamba (transformers
# names both "linear_attention"), LFM2's short convolutions. Position-id restarts do not reset a state, so packed
# rows would see each other through them; the numeric check below can miss it in a random model (LFM2's conv leaked
# 6e-4 of the logits' scale, under its bar, where float noise is 2e-7).
STATEFUL = ("linear_attention", "mamba", "conv")


def stateful(config: dict) -> str:
    """Why rows of a model with a config (its language model's) cannot be packed: the kinds of its layers that carry
    a state along the sequence (STATEFUL); '' where none does."""
    text = config.get("text_config") or config
    kinds = sorted(set(text.get("layer_types") or text.get("layers_block_type") or []) & set(STATEFUL))
    named = " and ".join(kind.replace("_", "-") for kind in kinds)
    return f"this model's {named} layers carry a state from one row to the next, so packed rows would see each other" \
        if kinds else ""


def why_not(model) -> str:
    """Why this model's rows cannot be packed, in words ('' when they can)."""
    if why := stateful(model.config.to_dict()):
        return why
    return "" if works_with(model) else "this model's attention would let packed rows see each other"


def works_with(model) -> bool:
    """Whether this model keeps packed rows apart: two short rows alone and packed must give the same
    logits. (An attention implementation that ignores the position-id restarts would let rows leak.)"""
    import torch

    vocab = model.get_input_embeddings().num_embeddings
    device = model.get_input_embeddings().weight.device
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randint(3, vocab, (1, n), generator=g).to(device) for n in (7, 5))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = [model(input_ids=x, use_cache=False).logits.float() for x in (a, b)]
            positions = torch.cat([torch.arange(7), torch.arange(5)])[None].to(device)
            packed = model(input_ids=torch.cat([a, b], 1), position_ids=positions, use_cache=False).logits.float()
    finally:
        model.train(was_training)
    together = torch.cat(alone, 1)
    scale = together.abs().max().clamp(min=1.0)
    return bool(((packed - together).abs().max() / scale) < 2e-2)
