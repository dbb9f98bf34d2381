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


@pytest.mark.parametrize("strategy,options", [
    ("full", {"stochastic_rounding": True}),
    ("lisa", {"layers": 1, "interval": 2, "embeddings": True, "stochastic_rounding": True})])
def test_a_bf16_run_stopped_and_resumed_from_its_checkpoint_rounds_as_one_that_never_stopped(strategy, options,
                                                                                           tmp_path):
    """The trainer's own Session and checkpoints, in bf16 on the CPU: no masters kept, and the weights after a stop
    at step 3 and a resume equal, bit for bit, those of the run that never stopped (LISA switching layers too)."""
    from core import checkpoint, training
    from core.run_config import RunConfig
    from tests.core.test_strategies import examples, random_llama, run_steps

    model_dir = random_llama(tmp_path / "model", 2)

    def config(run: str) -> RunConfig:
        return RunConfig(run_id=run, run_dir=str(tmp_path / run), db_path=str(tmp_path / "h.db"),
                         model_path=str(model_dir), data_path="unused", strategy=strategy, strategy_options=options,
                         micro_batch=2, grad_accum=2, lr=3e-3, warmup_ratio=0.0, seed=7, device="cpu",
                         precision="bf16", keep_checkpoints=1)

    data = examples(vocab=1000)
    straight = training.Session(config("straight"), 6)
    before = {n: p.detach().clone() for n, p in straight.model.named_parameters()}
    losses = run_steps(straight, data, 6)
    assert straight.dtype == torch.bfloat16 and losses[-1] < losses[0]
    assert not any("master" in s for s in straight.optimizer.state.values())
    assert any(not torch.equal(p, before[n]) for n, p in straight.model.named_parameters())

    cfg = config("stopped")
    first = training.Session(cfg, 6)
    run_steps(first, data, 3)
    first.save_checkpoint(cfg.run_dir, {})
    del first
    second = training.Session(cfg, 6)
    second.resume(checkpoint.latest(cfg.run_dir))
    run_steps(second, data, 6)
    for (name, p), q in zip(straight.model.named_parameters(), second.model.parameters()):
        assert torch.equal(p, q), name


def test_lisa_on_an_8b_model_keeps_its_state_on_a_24gb_card_with_stochastic_rounding():
    """LISA with its embeddings frozen on an 8B model: by default its AdamW state goes to the host; the plan says
    stochastic rounding (no masters) would keep it on the GPU, faster, and planned so it does."""
    import json

    from core import hardware, planner
    from tests.conftest import REPO
    from tests.core.test_plan_offload_optimizer import LENGTHS

    hw = hardware.load(REPO / "resources" / "hardware" / "gpu-24gb.json")
    model = json.loads((REPO / "resources" / "models" / "llama-3.1-8b.json").read_text())
    exact = planner.make_plan(hw, model, LENGTHS, planner.Wishes(strategy="lisa"))
    assert exact.offload == "optimizer"
    said = next(r for r in exact.reasons if r.startswith("On the GPU instead, --option stochastic_rounding=true"))
    rounded = planner.make_plan(hw, model, LENGTHS, planner.Wishes(strategy="lisa",
                                                                    options={"stochastic_rounding": True}))
    assert rounded.fits and rounded.offload == "" and rounded.step_time_s < exact.step_time_s
    assert f"about {rounded.step_time_s:.1f} s a step against {exact.step_time_s:.1f} s" in said
    assert "optimizer state (adamw)" in rounded.memory  # no fp32 masters counted
