"""Which type each tensor gets: llama.cpp's Q4_K_M/Q5_K_M policy, the pure picks, and the fallbacks."""

import pytest

from core.errors import BadArgument
from core.gguf_export import QUANT_NAMES
from core.gguf_export.tensor_types import PICKS, pick, tensor_type

LAYERS = 32  # a Llama-2/3-7B-shaped model: rows of 4096 and 14336 values, whole 256-value super-blocks
# llama.cpp's "use more bits" layers for 32: the first and last 4, and every third from layer 6
MORE_BITS = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}


def llama_7b_tensors():
    yield "token_embd.weight", (128256, 4096)
    for i in range(LAYERS):
        yield f"blk.{i}.attn_norm.weight", (4096,)
        for t, shape in (("attn_q", (4096, 4096)), ("attn_k", (1024, 4096)), ("attn_v", (1024, 4096)),
                         ("attn_output", (4096, 4096)), ("ffn_gate", (14336, 4096)), ("ffn_up", (14336, 4096)),
                         ("ffn_down", (4096, 14336))):
            yield f"blk.{i}.{t}.weight", shape
        yield f"blk.{i}.ffn_norm.weight", (4096,)
    yield "output_norm.weight", (4096,)
    yield "output.weight", (128256, 4096)


def expected_q4_k_m(name: str) -> str:
    if name.endswith("norm.weight"):
        return "f32"
    if name == "output.weight":
        return "q6_k"
    if name.endswith((".attn_v.weight", ".ffn_down.weight")):
        return "q6_k" if int(name.split(".")[1]) in MORE_BITS else "q4_k"
    return "q4_k"  # token_embd too: it is not the output head here


def test_q4_k_m_follows_llama_cpp_on_a_llama_shaped_model():
    p = pick("Q4_K_M")
    got = {n: tensor_type(p, n, s, LAYERS, embedding_is_head=False) for n, s in llama_7b_tensors()}
    assert got == {n: expected_q4_k_m(n) for n in got}
    assert sum(t == "q6_k" for t in got.values()) == 1 + 2 * len(MORE_BITS)


def test_q5_k_m_uses_q5_k_where_q4_k_m_uses_q4_k():
    p = pick("q5_k_m")
    for name, shape in llama_7b_tensors():
        want = expected_q4_k_m(name).replace("q4_k", "q5_k")
        assert tensor_type(p, name, shape, LAYERS, embedding_is_head=False) == want, name


@pytest.mark.parametrize("quant,name,shape,want", [
    # SmolLM2-135M: rows of 576 values are not whole super-blocks, so llama.cpp's fallbacks apply
    ("q4_k_m", "token_embd.weight", (49152, 576), "q8_0"),  # the head when tied: Q6_K → Q8_0
    ("q4_k_m", "blk.5.attn_q.weight", (576, 576), "q5_0"),  # Q4_K → Q5_0
    ("q4_k_m", "blk.0.ffn_down.weight", (576, 1536), "q6_k"),  # 1536 = 6 × 256: fits
    ("q4_k_m", "blk.4.ffn_down.weight", (576, 1536), "q4_k"),  # of 30 layers, 0-2, 5, 8, ..., 26-29 get more
    ("q4_k_m", "blk.0.attn_v.weight", (192, 576), "q8_0"),  # Q6_K → Q8_0
    ("q5_k_m", "blk.5.attn_q.weight", (576, 576), "q5_1"),  # Q5_K → Q5_1
    ("q6_k", "blk.5.attn_q.weight", (576, 576), "q8_0"),
    ("q4_k", "blk.5.attn_q.weight", (576, 576), "q5_0"),
    ("q4_k_m", "blk.0.attn_q.weight", (64, 100), "f16"),  # not even 32-value blocks: f16, as llama.cpp
    ("q8_0", "blk.0.attn_q.weight", (64, 100), "f16"),
    ("q8_0", "output.weight", (49152, 576), "q8_0"),  # a pure pick: one type for every matrix
    ("q4_0", "token_embd.weight", (49152, 576), "q4_0"),
    ("f16", "blk.0.attn_norm.weight", (576,), "f32"),  # 1-D stays f32 for every pick
    ("q4_k_m", "blk.0.attn_q.bias", (576,), "f32"),
    ("bf16", "blk.0.attn_q.weight", (64, 100), "bf16"),
])
def test_single_tensors(quant, name, shape, want):
    assert tensor_type(pick(quant), name, shape, 30, embedding_is_head=True) == want


def test_every_type_named_on_the_command_line_has_a_pick():
    assert tuple(PICKS) == QUANT_NAMES
    with pytest.raises(BadArgument, match=r"Unknown GGUF quantization type 'q3_k'; choose one of f32, .*q5_k_m\.$"):
        pick("q3_k")


def smollm_like_tensors(layers=4, width=576, inner=1536):
    """SmolLM2-135M's widths, a few of its matrices."""
    yield "token_embd.weight", (49152, width)
    for i in range(layers):  # 576 is a multiple of 32 but not of 256; 1536 is of both
        yield f"blk.{i}.attn_norm.weight", (width,)
        for t, shape in (("attn_q", (width, width)), ("attn_v", (192, width)), ("ffn_down", (width, inner))):
            yield f"blk.{i}.{t}.weight", shape


@pytest.mark.parametrize("quant, tensors, expected", [
    # rows of 576 fall back (attn_q and attn_v, which gets q6_k on layers 0 and 3 of 4); ffn_down's rows of 1536
    # are six whole super-blocks; the head (the embedding) asks for q8_0 itself
    ("q4_k_m", smollm_like_tensors(), {"count": 8, "matrices": 13, "row_lengths": [576],
                                       "by_type": {"q4_k→q5_0": 6, "q6_k→q8_0": 2}}),
    ("q8_0", smollm_like_tensors(), None),  # 32-value blocks fit: nothing falls back
    ("q4_k_m", llama_7b_tensors(), None),  # whole 256-value super-blocks everywhere
    ("q6_k", [("blk.0.attn_q.weight", (64, 100))], {"count": 1, "matrices": 1, "row_lengths": [100],
                                                    "by_type": {"q6_k→f16": 1}}),
])
def test_fallbacks_count_the_matrices_that_could_not_take_the_type_asked(quant, tensors, expected):
    from core.gguf_export.tensor_types import fallbacks, wanted_type
    from core.gguf_export.writer import TensorPlan

    p, tensors = pick(quant), list(tensors)
    plans = [TensorPlan(n, n, s, tensor_type(p, n, s, 4, True), wanted_type(p, n, s, 4, True)) for n, s in tensors]
    found = fallbacks(plans)
    if expected is None:
        assert found is None
        return
    assert {k: found[k] for k in expected} == expected
    assert found["summary"].startswith(f"{expected['count']} of {expected['matrices']} matrices could not take ")
    for pair, n in expected["by_type"].items():
        asked, stored = pair.split("→")
        assert f" as {stored} instead of {asked}" in found["summary"] and f" {n} " in found["summary"]
