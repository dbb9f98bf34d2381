"""Checkpoints on disk: the newest stays, written whole before the one before it goes, so a failed or killed write
leaves the last one to resume from, and nothing half-written stays behind."""

from __future__ import annotations

import pytest
import torch

from core import checkpoint


def parts():
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(4, 3))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    weight.grad = torch.ones_like(weight)
    optimizer.step()
    return {"w": weight}, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def test_one_checkpoint_stays_and_a_failed_write_leaves_it(tmp_path):
    params, optimizer, scheduler = parts()
    for step in (1, 2):
        checkpoint.save(tmp_path, step, params, optimizer, scheduler, {})
    assert [p.name for p in (tmp_path / checkpoint.DIR).iterdir()] == ["step-000002"]
    killed = tmp_path / checkpoint.DIR / ".step-000003.abc.tmp"  # what a trainer killed mid-write leaves
    killed.mkdir()
    shared = {"w": params["w"], "alias": params["w"]}  # safetensors refuses tensors sharing memory: the write fails
    with pytest.raises(RuntimeError):
        checkpoint.save(tmp_path, 3, shared, optimizer, scheduler, {})
    assert checkpoint.latest(tmp_path).name == "step-000002"
    saved = checkpoint.save(tmp_path, 4, params, optimizer, scheduler, {}, keep=2)
    assert sorted(p.name for p in (tmp_path / checkpoint.DIR).iterdir()) == ["step-000002", "step-000004"]
    assert checkpoint.latest(tmp_path) == saved and not killed.exists()
    before = params["w"].detach().clone()
    with torch.no_grad():
        params["w"].zero_()
    assert checkpoint.load(saved, params, optimizer, scheduler)["step"] == 4
    assert torch.equal(params["w"], before)
