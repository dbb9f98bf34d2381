"""GaLore (core/galore.py): each step against the paper's algorithm written out plainly, its updates inside the
chosen subspace, its state's bytes as the memory model counts them, and the planner's sentence where it would
be faster than a host-side AdamW. (Training, resuming exactly and reloading: tests/core/test_strategies.py's
full-galore case.)"""

from __future__ import annotations

import json

import pytest
import torch

from core import memory_model as mm
from core import optimizers, planner, strategies
from core.galore import galore_adamw
from core.model_shape import ModelShape
from tests.conftest import REPO
from tests.core.test_plan_offload_optimizer import LENGTHS, profile


def reference_galore(w0: torch.Tensor, grads: list[torch.Tensor], lr, wd, rank, every, scale, frugal: bool,
                     eps=1e-8, betas=(0.9, 0.999)) -> torch.Tensor:
    """Algorithm 1 of the GaLore paper with AdamW, one step at a time, as plainly as it reads; with `frugal`,
    FRUGAL(Adam, signSGD): the rest of the gradient moves the weight by its sign."""
    w, m, v, p = w0.clone(), None, None, None
    tall = w.shape[0] >= w.shape[1]
    for t, g in enumerate(grads, start=1):
        if (t - 1) % every == 0:
            u, _, vh = torch.linalg.svd(g, full_matrices=False)
            p = vh[:rank] if tall else u[:, :rank]
        r = g @ p.T if tall else p.T @ g
        m = torch.zeros_like(r) if m is None else m
        v = torch.zeros_like(r) if v is None else v
        m = betas[0] * m + (1 - betas[0]) * r
        v = betas[1] * v + (1 - betas[1]) * r * r
        n = (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps)
        w = w * (1 - lr * wd) - lr * scale * (n @ p if tall else p @ n)
        if frugal:
            w = w - lr * torch.sign(g - (r @ p if tall else p @ r))
    return w


@pytest.mark.parametrize("frugal", [False, True], ids=["galore", "frugal"])
@pytest.mark.parametrize("shape", [(48, 20), (20, 48)], ids=["tall", "wide"])
def test_each_step_is_the_papers_algorithm(shape, frugal):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(*shape))
    start = w.detach().clone()
    opt = galore_adamw()([{"params": [w], "rank": 4, "every": 3, "scale": 0.5, "residual": frugal}], lr=1e-2,
                         weight_decay=0.1)
    grads = [torch.randn(*shape) for _ in range(8)]  # refreshes at steps 1, 4 and 7
    for g in grads:
        w.grad = g.clone()
        opt.step()
        assert torch.equal(w.grad, g)  # the gradient is read, never changed
    expected = reference_galore(start, grads, lr=1e-2, wd=0.1, rank=4, every=3, scale=0.5, frugal=frugal)
    assert torch.allclose(w.detach(), expected, atol=1e-6)
    assert opt.state[w]["exp_avg"].shape == ((48, 4) if shape[0] >= shape[1] else (4, 48))  # the subspace's size
    assert not torch.allclose(w.detach(), start + (expected - start) * 0.9, atol=1e-4)  # (the check could fail)


def test_galores_updates_stay_in_the_chosen_subspace_until_the_next_refresh_and_frugals_do_not():
    torch.manual_seed(1)
    w, f = torch.nn.Parameter(torch.randn(64, 32)), torch.nn.Parameter(torch.randn(64, 32))
    start, f_start = w.detach().clone(), f.detach().clone()
    galore = galore_adamw()([{"params": [w], "rank": 3, "every": 100}], lr=1e-2)
    frugal = galore_adamw()([{"params": [f], "rank": 3, "every": 100, "residual": True}], lr=1e-2)
    for _ in range(5):
        w.grad = torch.randn(64, 32)
        f.grad = w.grad.clone()
        galore.step()
        frugal.step()
    moved = w.detach() - start
    p = galore.state[w]["projector"]  # 3 × 32, orthonormal rows
    assert torch.allclose(p @ p.T, torch.eye(3), atol=1e-5)
    assert moved.abs().max() > 1e-3
    assert torch.allclose(moved - moved @ p.T @ p, torch.zeros_like(moved), atol=1e-6)  # nothing outside it
    assert torch.linalg.matrix_rank(moved) == 3
    f_moved = f.detach() - f_start  # the same subspace step, and the rest of each gradient by its sign
    assert torch.equal(frugal.state[f]["projector"], p)
    assert torch.linalg.matrix_rank(f_moved) == 32
    assert (f_moved - f_moved @ p.T @ p).norm() > 0.5 * f_moved.norm()  # most of it outside GaLore's subspace


def test_weights_no_larger_than_the_rank_take_plain_adamw():
    torch.manual_seed(2)
    small, norm = torch.nn.Parameter(torch.randn(8, 30)), torch.nn.Parameter(torch.randn(30))
    twins = [torch.nn.Parameter(t.detach().clone()) for t in (small, norm)]
    ours = galore_adamw()([{"params": [small, norm], "rank": 8}], lr=1e-2, weight_decay=0.1)
    plain = optimizers.master_adamw()(twins, lr=1e-2, weight_decay=0.1)
    for _ in range(4):
        for p, q in zip((small, norm), twins):
            p.grad = torch.randn(p.shape)
            q.grad = p.grad.clone()
        ours.step()
        plain.step()
    assert all(torch.equal(p, q) for p, q in zip((small, norm), twins))
    assert "projector" not in ours.state[small]


@pytest.mark.parametrize("optimizer", ["galore", "frugal"])
def test_the_memory_model_counts_the_state_to_the_byte(optimizer):
    """A bf16 model's GaLore (or FRUGAL: the same) state after a step (fp32 masters for every weight, low-rank
    moments and projectors for the decoder's matrices, full moments for embeddings, head and norms) is the
    estimate's term."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=300, tie_word_embeddings=False, model_type="llama")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**config)).to(torch.bfloat16)
    full = strategies.get("full")
    opts = full.options({"optimizer": optimizer, "galore_rank": 8})

    class Cfg:
        lr, weight_decay = 1e-3, 0.0

    opt = full.make_optimizer(full.prepare(model, opts, Cfg), opts, Cfg, "cpu")
    x = torch.randint(0, 300, (2, 16))
    model(input_ids=x, labels=x).loss.backward()
    opt.step()
    setup = mm.Setup("full", 2, 16, compute_bytes=2, on_gpu=False, **full.setup_fields(opts, "cpu"))
    term = mm.estimate(ModelShape.from_config(config), setup).device[f"optimizer state ({optimizer}, fp32 masters)"]
    assert optimizers.state_bytes(opt) == term
    adamw = mm.estimate(ModelShape.from_config(config), mm.Setup("full", 2, 16, on_gpu=False))
    assert term < adamw.device["optimizer state (adamw, fp32 masters)"]


@pytest.mark.parametrize("name,low,high", [("llama-3.2-1b", 9.5, 10.5), ("llama-3.1-8b", 9, 9.5)])
def test_a_weight_costs_about_ten_bytes_against_full_adamws_sixteen(name, low, high):
    """Weights 2 + gradients 2 + masters 4, the embeddings' and head's full moments (a 128k vocabulary's: most
    of what is left at 1B), and the decoder's low-rank moments and projectors."""
    shape = ModelShape.from_config(json.loads((REPO / "resources" / "models" / f"{name}.json").read_text()))
    per_weight = {}
    for optimizer, rank in (("adamw", 0), ("galore", 128)):
        est = mm.estimate(shape, mm.Setup("full", 1, 512, optimizer=optimizer, galore_rank=rank))
        per_weight[optimizer] = sum(v for k, v in est.device.items()
                                    if k.startswith(("weights", "gradients", "optimizer state"))) / shape.params
    assert per_weight["adamw"] == pytest.approx(16)
    assert low < per_weight["galore"] < high


@pytest.mark.parametrize("gpu,name,wished,exact_fits", [
    ("gpu-16gb", "llama-3.2-1b", {"optimizer": "galore"}, True),  # AdamW's state on the host
    # GaLore alone does not fit beside the fp32 masters on this card; with stochastic rounding (no masters) it does
    ("gpu-12gb", "llama-3.2-1b", {"optimizer": "galore", "stochastic_rounding": True}, True),
    # AdamW's 16 bytes a weight fit neither the GPU nor (on the host) the RAM: the plan does not fit, GaLore would
    ("gpu-48gb", "llama-3.2-3b", {"optimizer": "galore"}, False),
])
def test_the_plan_says_when_galore_would_fit_the_gpu_and_be_faster_than_exact_adamw(gpu, name, wished, exact_fits):
    model = json.loads((REPO / "resources" / "models" / f"{name}.json").read_text())
    plan = planner.make_plan(profile(gpu), model, LENGTHS, planner.Wishes(strategy="full"))
    assert plan.options["optimizer"] == "adamw" and plan.options["optimizer_on_host"] is True  # exact, by default
    assert plan.fits is exact_fits
    said = next(r for r in plan.reasons if r.startswith("On the GPU instead, --option "))
    asked = " ".join(f"{k}={str(v).lower()}" for k, v in wished.items())
    assert f"--option {asked} would fit" in said and "rank-128 subspace" in said
    assert ("stochastic rounding updates" in said) is ("stochastic_rounding" in wished)
    chosen = planner.make_plan(profile(gpu), model, LENGTHS, planner.Wishes(strategy="full", options=wished))
    assert chosen.fits and chosen.offload == "" and chosen.step_time_s < plan.step_time_s / 2
    assert f"about {chosen.step_time_s:.1f} s a step against {plan.step_time_s:.1f} s" in said
    assert not any(r.startswith("On the GPU instead") for r in chosen.reasons)
    if len(wished) > 1:  # (the first that fits is named)
        assert not planner.make_plan(profile(gpu), model, LENGTHS, planner.Wishes(
            strategy="full", options={"optimizer": "galore"})).fits
    chose = planner.make_plan(profile(gpu), model, LENGTHS, planner.Wishes(
        strategy="full", options={"optimizer": "adamw"}))  # the person chose the optimizer: no other one suggested
    assert not any("optimizer=galore" in r for r in chose.reasons)
    host = planner.make_plan(profile(gpu), model, LENGTHS, planner.Wishes(
        strategy="full", options={"optimizer_on_host": True}))  # nor anything where they asked for the host
    assert not any(r.startswith("On the GPU instead") for r in host.reasons)
