"""Which tensor type each tensor gets, for each quantization the person can pick.

A pick is either one type for every matrix ("q8_0", "q4_k": like llama-quantize --pure) or a mix
("q4_k_m", "q5_k_m") that follows llama.cpp's llama_tensor_get_type, because a Q4_K_M file is expected
to hold what llama.cpp puts in one:

- the output head (or the embedding when it doubles as the head) gets Q6_K, or Q8_0 when its rows are
  not a multiple of 256 long;
- attn_v (attn_qkv for fused models) and ffn_down (ffn_down_exps, a mixture of experts' stacked down projections,
  which llama.cpp's name match counts as ffn_down) get Q6_K on the "more bits" layers: the first and last eighth of
  the model and every third layer in between, where quantization error costs most;
- everything else gets the pick's base type (Q4_K, Q5_K).

Then, for every pick: 1-D tensors (norms, biases, rope factors) stay f32, as llama.cpp never quantizes
them; a matrix whose rows do not split into whole blocks falls back (Q4_K → Q5_0, Q5_K → Q5_1,
Q6_K → Q8_0, as llama.cpp does), and to f16 if even that does not fit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from gguf import LlamaFileType

from core.errors import BadArgument
from core.gguf_export import QUANT_NAMES, quants
from core.gguf_export.architectures import layer_of


@dataclass(frozen=True)
class Pick:
    name: str  # what the person types, lower case
    base: str  # the type most matrices get (a quants.TYPES name)
    mix: bool  # llama.cpp's per-tensor policy on top of the base type
    file_type: LlamaFileType  # general.file_type: llama.cpp's label for the file as a whole
    summary: str


PICKS: dict[str, Pick] = {p.name: p for p in (
    Pick("f32", "f32", False, LlamaFileType.ALL_F32, "32-bit floats: exact, four bytes a weight"),
    Pick("f16", "f16", False, LlamaFileType.MOSTLY_F16, "16-bit floats: exact for bf16-trained weights in range"),
    Pick("bf16", "bf16", False, LlamaFileType.MOSTLY_BF16, "bfloat16: the training precision of most models"),
    Pick("q8_0", "q8_0", False, LlamaFileType.MOSTLY_Q8_0, "8-bit blocks: near-lossless, half of f16"),
    Pick("q4_0", "q4_0", False, LlamaFileType.MOSTLY_Q4_0, "4-bit blocks, the legacy type"),
    Pick("q5_0", "q5_0", False, LlamaFileType.MOSTLY_Q5_0, "5-bit blocks, the legacy type"),
    # A single K type for every matrix has no llama.cpp label of its own; the _S mix is the nearest.
    Pick("q4_k", "q4_k", False, LlamaFileType.MOSTLY_Q4_K_S, "4-bit K-quant on every matrix"),
    Pick("q5_k", "q5_k", False, LlamaFileType.MOSTLY_Q5_K_S, "5-bit K-quant on every matrix"),
    Pick("q6_k", "q6_k", False, LlamaFileType.MOSTLY_Q6_K, "6-bit K-quant on every matrix"),
    Pick("q4_k_m", "q4_k", True, LlamaFileType.MOSTLY_Q4_K_M, "llama.cpp's Q4_K_M mix: the usual choice"),
    Pick("q5_k_m", "q5_k", True, LlamaFileType.MOSTLY_Q5_K_M, "llama.cpp's Q5_K_M mix: a little larger, closer"),
)}
DEFAULT = "q4_k_m"
assert tuple(PICKS) == QUANT_NAMES, "the command line's list of types and PICKS must agree"


def pick(name: str) -> Pick:
    """The pick for what the person typed (any case); one sentence when it is not one."""
    key = (name or "").strip().lower()
    if key not in PICKS:
        raise BadArgument(f"Unknown GGUF quantization type '{name}'; choose one of {', '.join(PICKS)}.")
    return PICKS[key]


def more_bits(layer: int, n_layers: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers, and every third one between."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def wanted_type(p: Pick, name: str, shape: tuple[int, ...], n_layers: int, embedding_is_head: bool) -> str:
    """The type pick `p` asks for `name` (a GGUF tensor name, HF shape [rows, cols]), before its rows are
    checked against that type's blocks."""
    if len(shape) < 2:
        return "f32"
    wanted = p.base
    if p.mix:
        layer = layer_of(name)
        if name == "output.weight" or (embedding_is_head and name == "token_embd.weight"):
            wanted = "q6_k" if quants.get("q6_k").fits(shape[-1]) else "q8_0"
        elif layer is not None and name.endswith((".attn_v.weight", ".attn_qkv.weight", ".ffn_down.weight",
                                                            ".ffn_down_exps.weight")) \
                and more_bits(layer, n_layers):
            wanted = "q6_k"
    return wanted


def stored_type(wanted: str, shape: tuple[int, ...]) -> str:
    """The type a tensor of `shape` is written in when `wanted` is asked: it, or its fallback where rows do not fit."""
    return wanted if len(shape) < 2 else quants.storable(wanted, shape[-1])


def tensor_type(p: Pick, name: str, shape: tuple[int, ...], n_layers: int, embedding_is_head: bool) -> str:
    """The type `name` is written in for pick `p`."""
    return stored_type(wanted_type(p, name, shape, n_layers, embedding_is_head), shape)


def fallbacks(tensors) -> dict | None:
    """Which matrices could not take the type asked for, for export.json and the person (None: all could).

    `tensors` have `wanted`, `type` and `shape` (writer.TensorPlan). A file full of fallbacks is larger and
    slightly more accurate than its pick's name says; SmolLM2-135M (width 576) is such a model for every
    K-quant, and people ask why its q4_k_m is as large as a q5_0.
    """
    matrices = [t for t in tensors if len(t.shape) >= 2]
    fell = [t for t in matrices if t.wanted != t.type]
    if not fell:
        return None
    by_type = Counter((t.wanted, t.type) for t in fell)
    widths = sorted({t.shape[-1] for t in fell})
    blocks = sorted({quants.get(t.wanted).block_size for t in fell})
    stored = " and ".join(f"{n}{' are stored' if i == 0 else ''} as {to} instead of {asked}"
                          for i, ((asked, to), n) in enumerate(by_type.items()))
    summary = (f"{len(fell)} of {len(matrices)} matrices could not take the type the pick asks for: their rows "
               f"({' or '.join(map(str, widths))} values) are not whole {' or '.join(map(str, blocks))}-value "
               f"blocks, so, as llama.cpp does, {stored}; the file is a little larger and more accurate than "
               "its type's name says.")
    return {"summary": summary, "count": len(fell), "matrices": len(matrices),
            "by_type": {f"{asked}→{to}": n for (asked, to), n in by_type.items()}, "row_lengths": widths}
