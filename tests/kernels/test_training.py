"""The trainer's Session with our kernels: a run's `kernels` setting decides which are patched in, the Session
says which are active (the trainer's start event reports them), and a step trains as the plain path does."""

from __future__ import annotations

import pytest

from core import training
from core.errors import BadArgument
from tuneforge_kernels import OPS
from tests.core.test_strategies import examples, random_llama
from tests.kernels.conftest import DEVICE, close


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("llama"), 2)


def session(tmp_path, model_dir, kernels, run="r") -> training.Session:
    from core.run_config import RunConfig

    cfg = RunConfig(run_id=run, run_dir=str(tmp_path / run), db_path=str(tmp_path / "h.db"), model_path=str(model_dir),
                    data_path="unused", strategy="lora", strategy_options={"r": 4, "alpha": 8}, micro_batch=2,
                    grad_accum=2, lr=1e-2, warmup_ratio=0.0, seed=7, device=DEVICE, kernels=kernels)
    return training.Session(cfg, total_steps=2)


def two_steps(s: training.Session) -> list[float]:
    from core.data.tokenize import collate

    data = examples(vocab=1000)
    batches = [[collate([data[i] for i in b], pad_id=0) for b in training.batches_for_step(step, s.cfg, len(data))]
               for step in range(2)]
    return [s.step(step_batches)[0] for step_batches in batches]


def test_a_session_with_every_kernel_trains_like_the_plain_one(tmp_path, model_dir, calls):
    import torch

    ours = session(tmp_path, model_dir, list(OPS), "ours")
    assert [op for op, p in ours.kernels.items() if p.active] == list(OPS)
    plain = session(tmp_path, model_dir, [], "plain")
    assert plain.kernels == {}
    # The second step's loss is taken after an AdamW step on the first step's gradients.
    losses = two_steps(ours)
    # each kernel really ran in the Session's steps (the Session calls model.train(), which transformers 5.25's hub
    # kernels used to answer by putting the norms' own forward back)
    assert all(calls[op] > 0 for op in ("rmsnorm", "rope", "cross_entropy", "lora")), calls
    assert calls["swiglu"] + calls["lora_mlp"] > 0, calls
    ran = dict(calls)
    # On the CPU both train in fp32; on a GPU in bf16, where our kernels and the plain path round at different
    # points (seen on an H200: 1.3e-5 of the loss after two steps)
    close(torch.tensor(losses), torch.tensor(two_steps(plain)), 1e-5 if DEVICE == "cpu" else 1e-3, "losses")
    assert calls == ran, "a kernel ran in the plain session"


def test_auto_is_every_kernel_on_cuda_and_none_on_the_cpu(tmp_path, model_dir):
    s = session(tmp_path, model_dir, "auto")
    active = [op for op, p in s.kernels.items() if p.active]
    assert active == (list(OPS) if DEVICE == "cuda" else [])


def test_an_unknown_kernel_is_refused_naming_the_setting(tmp_path, model_dir):
    with pytest.raises(BadArgument, match="Setting 'kernels'.*rmsnorm, swiglu, rope, cross_entropy"):
        session(tmp_path, model_dir, ["rmsnorm", "flash"])

