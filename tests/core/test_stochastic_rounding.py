"""Stochastic rounding (core/stochastic_rounding.py, full fine-tuning's `stochastic_rounding`): unbiased to the
bit, bf16 weights that take fine-tuning-sized updates without fp32 masters, the same rounding on resume, and the
memory model's count of what it saves."""

from __future__ import annotations

import io

import pytest
import torch

from core import memory_model as mm
from core import optimizers, strategies
from core.errors import BadArgument
from core.model_shape import ModelShape
from core.stochastic_rounding import round_into

CONFIG = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=300, tie_word_embeddings=False, model_type="llama")


def test_rounding_lands_on_a_neighbour_in_proportion_to_the_distance():
    low = torch.tensor([0.5, -3.0, 1e-3], dtype=torch.bfloat16)
    up = (low.view(torch.int16) + 1).view(torch.bfloat16)  # the next bf16 away from zero
    step = up.float() - low.float()
    for share in (0.1, 0.5, 0.9):
        exact = (low.float() + share * step).repeat(20000, 1)
        out = torch.empty_like(exact, dtype=torch.bfloat16)
        round_into(out, exact.contiguous(), torch.Generator().manual_seed(1))
        assert ((out == low) | (out == up)).all()  # never anywhere but the two neighbours
        went_up = (out == up).float().mean(0)
        assert torch.allclose(went_up, torch.full((3,), share), atol=0.015), (share, went_up)


def test_bf16_weights_take_small_updates_without_masters():
    """As MasterAdamW's fp32 masters do (tests/core/test_strategies.py): 300 updates of 1e-5 move a weight of 0.5
    by about 3e-3, where ordinary rounding to bf16 (steps of 2^-8 there) loses every one."""
    start = torch.full((4096,), 0.5, dtype=torch.bfloat16)
    w = torch.nn.Parameter(start.clone())
    opt = optimizers.master_adamw()([w], lr=1e-5, stochastic=True)
    for _ in range(300):
        w.grad = torch.ones(4096, dtype=torch.bfloat16)
        opt.step()
    assert "master" not in opt.state[w] and w.dtype == torch.bfloat16
    assert float((start.float() - w.detach().float()).mean()) == pytest.approx(3e-3, rel=0.1)


def tiny_bf16_model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**CONFIG)).to(torch.bfloat16)


class Cfg:
    lr, weight_decay = 1e-3, 0.01


def steps(model, opt, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        x = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(i))
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("optimizer", ["adamw", "galore"])
def test_a_resumed_run_rounds_as_the_one_that_never_stopped(optimizer):
    full = strategies.get("full")
    opts = full.options({"optimizer": optimizer, "galore_rank": 8, "galore_every": 2, "stochastic_rounding": True})
    straight = tiny_bf16_model()
    a = full.make_optimizer(full.prepare(straight, opts, Cfg), opts, Cfg, "cpu")
    steps(straight, a, 6)

    stopped = tiny_bf16_model()
    b = full.make_optimizer(full.prepare(stopped, opts, Cfg), opts, Cfg, "cpu")
    steps(stopped, b, 3)
    saved = io.BytesIO()
    torch.save({"weights": stopped.state_dict(), "optimizer": b.state_dict()}, saved)
    saved.seek(0)
    back = torch.load(saved, weights_only=True)
    resumed = tiny_bf16_model()
    resumed.load_state_dict(back["weights"])
    c = full.make_optimizer(full.prepare(resumed, opts, Cfg), opts, Cfg, "cpu")
    c.load_state_dict(back["optimizer"])
    steps(resumed, c, 3, start=3)
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name
    assert not any("master" in s for s in c.state.values())


@pytest.mark.parametrize("optimizer", ["adamw", "galore"])
def test_the_memory_model_counts_the_state_without_masters(optimizer):
    full = strategies.get("full")
    opts = full.options({"optimizer": optimizer, "galore_rank": 8, "stochastic_rounding": True})
    model = tiny_bf16_model()
    opt = full.make_optimizer(full.prepare(model, opts, Cfg), opts, Cfg, "cpu")
    steps(model, opt, 1)
    shape = ModelShape.from_config(CONFIG)
    est = mm.estimate(shape, mm.Setup("full", 2, 12, on_gpu=False, **full.setup_fields(opts, "cpu")))
    assert optimizers.state_bytes(opt) == est.device[f"optimizer state ({optimizer})"]
    with_masters = mm.estimate(shape, mm.Setup("full", 2, 12, on_gpu=False, **full.setup_fields(
        full.options({"optimizer": optimizer, "galore_rank": 8}), "cpu")))
    saved = with_masters.device[f"optimizer state ({optimizer}, fp32 masters)"] - optimizers.state_bytes(opt)
    assert saved == 4 * shape.params


@pytest.mark.parametrize("values", [{"stochastic_rounding": True, "optimizer_on_host": True},
                                    {"stochastic_rounding": True, "optimizer": "adafactor"}])
def test_stochastic_rounding_is_refused_where_there_is_no_master_to_replace(values):
    with pytest.raises(BadArgument, match="'stochastic_rounding': replaces the fp32 masters"):
        strategies.get("full").options(values)


def test_a_gpu_without_bf16_is_refused_stochastic_rounding_in_a_sentence():
    import json

    from core import hardware, planner
    from tests.conftest import REPO

    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    hw.gpus[0].bf16 = False  # an older card: fp16, which this rounding does not serve (nor the memory model's count)
    model = json.loads((REPO / "resources" / "models" / "smollm2-135m.json").read_text())
    wish = planner.Wishes(strategy="full", options={"stochastic_rounding": True})
    with pytest.raises(BadArgument, match=r"^stochastic_rounding rounds fp32 into bf16, and this GPU trains in fp16"):
        planner.make_plan(hw, model, [200] * 50, wish)
    hw.gpus[0].bf16 = True
    assert planner.make_plan(hw, model, [200] * 50, wish).options["stochastic_rounding"] is True
