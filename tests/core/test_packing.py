"""Packing short rows into full sequences: every row once, rows kept apart, and the loss over a pack is
exactly the loss over its rows padded one per sequence."""

import random

import pytest
import torch

from core import planner
from core.data import packing
from core.data.tokenize import IGNORE, Encoded, collate


def rows(n=40, seed=0, vocab=1000):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ids = [rng.randrange(3, vocab) for _ in range(rng.randrange(4, 60))]
        cut = rng.randrange(1, len(ids))
        out.append(Encoded(ids, [IGNORE] * cut + ids[cut:], False, "test"))
    return out


def test_every_row_lands_once_within_the_length_and_apart():
    data = rows()
    packs = packing.pack(data, 128)
    assert sum(p.rows for p in packs) == len(data) and all(p.tokens <= 128 for p in packs)
    assert len(packs) < len(data) / 2  # short rows: at least two to a pack on average
    assert sum(p.tokens for p in packs) == sum(len(r.input_ids) for r in data)
    seen = []
    for p in packs:
        starts = [i for i, pos in enumerate(p.position_ids) if pos == 0]
        for a, b in zip(starts, starts[1:] + [p.tokens]):
            seen.append(tuple(p.input_ids[a:b]))
            assert p.labels[a] == IGNORE  # never predicted from the previous row
    assert sorted(seen) == sorted(tuple(r.input_ids) for r in data)
    assert packing.pack(data, 128) == packs  # deterministic: a resumed run rebuilds the same packs
    assert len(packing.bins([len(r.input_ids) for r in data], 128)) == len(packs)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, use_cache=False)
    return AutoModelForCausalLM.from_config(cfg)


def test_packed_loss_and_gradients_equal_the_padded_ones(model):
    data = rows(12, seed=1)
    trained = sum(sum(1 for t in r.labels[1:] if t != IGNORE) for r in data)
    padded = collate(data, pad_id=0)
    packed = packing.collate(packing.pack(data, 160), pad_id=0)
    assert int(packed.pop("tokens")) == int(padded["attention_mask"].sum())

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch, num_items_in_batch=trained).loss
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    a, ga = loss_and_grads(padded)
    b, gb = loss_and_grads(packed)
    assert torch.allclose(a, b, atol=1e-5)
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(ga, gb))


def test_the_check_on_the_model_itself(model):
    assert packing.works_with(model)
    assert model.training  # the check leaves the model as it found it


def test_the_planner_counts_packs_and_says_so():
    from tests.core.test_planner import CPU_ONLY, SMOL

    lengths = [60] * 100
    wish = {"seq_len": 256, "micro_batch": 2, "grad_accum": 1, "epochs": 1}
    packed = planner.make_plan(CPU_ONLY, SMOL, lengths, planner.Wishes(**wish))
    plain = planner.make_plan(CPU_ONLY, SMOL, lengths, planner.Wishes(**wish, packing=False))
    assert (packed.sequences, plain.sequences) == (25, 100)  # four 60-token rows to a 256-token pack
    # 10 of the 100 rows are held out for validation: 90 train, in 23 packs (12 steps of 2) or 45 steps of 2 rows
    assert (packed.total_steps, plain.total_steps) == (12, 45)
    assert any(r.startswith("Packing: 100 rows fit in 25 sequences") for r in packed.reasons)
    assert plain.packing is False and not any(r.startswith("Packing") for r in plain.reasons)


def test_a_model_whose_layers_carry_a_state_is_not_packed():
    """LFM2's short convolutions carry a state along the sequence, so a packed row sees the one before it: the
    numeric check missed it on a random model (a leak of 6e-4 of the logits' scale, under its bar), so such layer
    kinds are refused by name, and the plan counts each row as a sequence of its own."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.core.test_golden_plans import profile

    config = AutoConfig.for_model("lfm2", vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                  num_attention_heads=4, num_key_value_heads=2, full_attn_idxs=[1, 3])
    model = AutoModelForCausalLM.from_config(config)
    assert packing.works_with(model)  # the leak is under the numeric bar...
    assert "conv layers carry a state" in packing.why_not(model)  # ...and refused by the layer kinds
    plan = planner.make_plan(profile("gpu-24gb"), config.to_dict(), [100] * 50)
    assert not plan.packing and plan.sequences == 50
