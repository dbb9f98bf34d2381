"""Every built strategy, one table: the intended parameters train, the rest stay put, the result loads."""

import pytest
import torch

from core import strategies
from core.run_config import RunConfig

CFG = RunConfig(run_id="r", run_dir="/tmp/r", db_path="/tmp/h", model_path="/m", data_path="/d", lora_r=4,
                lora_alpha=8)
# name → (which parameter names must train, which must not)
CASES = {
    "lora": (lambda n: "lora_" in n, lambda n: "lora_" not in n),
    "dora": (lambda n: "lora_" in n, lambda n: "lora_" not in n),
    "full": (lambda n: True, lambda n: False),
}


def test_every_built_strategy_has_a_case():
    assert {n for n, s in strategies.REGISTRY.items() if s.built} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_strategy_trains_exactly_its_parameters_and_reloads(name, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    strategy = strategies.get(name)
    model = strategy.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), CFG)
    must_train, must_freeze = CASES[name]
    for n, p in model.named_parameters():
        assert p.requires_grad == must_train(n), n
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randint(0, 100, (2, 12))
    losses = []
    for _ in range(5):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(must_train(n) for n in changed)
    assert not any(must_freeze(n) for n in changed)

    strategy.save(model, tmp_path / "result")
    model.eval()
    reloaded = strategy.load(AutoModelForCausalLM.from_pretrained(tiny_model_dir), tmp_path / "result").eval()
    with torch.no_grad():
        assert torch.allclose(model(input_ids=x).logits, reloaded(input_ids=x).logits, atol=1e-5)


@pytest.mark.parametrize("name", ["qlora", "lisa", "offload"])
def test_planned_strategies_refuse_to_run(name):
    from core.errors import NotBuiltYet

    with pytest.raises(NotBuiltYet, match="not built yet"):
        strategies.get(name)
