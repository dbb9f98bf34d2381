"""Preference tuning with ORPO (core/orpo.py): the loss is the paper's formula, a step's loss does not depend on
how it is cut into micro-batches, and training makes the model prefer the chosen answers, with each strategy."""

import random

import pytest
import torch

from core import orpo, training
from core.data.tokenize import IGNORE, Encoded, collate
from core.run_config import RunConfig
from tests.core.test_strategies import random_llama

VOCAB = 1000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("orpo-model"), 2)


def pairs(n: int = 8, seed: int = 0) -> orpo.Pairs:
    """Pairs sharing a prompt: the chosen answer counts up from the prompt's last token, the rejected one from the
    token after it."""
    rng = random.Random(seed)
    chosen, rejected = [], []
    for i in range(n):
        prompt = [rng.randrange(3, VOCAB - 20) for _ in range(rng.randrange(4, 8))]
        good = [prompt[-1] + k for k in range(1, rng.randrange(4, 9))]
        bad = [t + 1 for t in good]  # as plausible a pattern: what supervised tuning alone also makes likelier
        for side, answer in ((chosen, good), (rejected, bad)):
            side.append(Encoded(prompt + answer, [IGNORE] * len(prompt) + answer, False, f"d.jsonl:{i + 1}"))
    return orpo.Pairs(chosen, rejected[::-1][::-1])


def config(tmp_path, model_dir, strategy="lora", options=None, **over) -> RunConfig:
    options = {"r": 4, "alpha": 8} if options is None else options
    fields = dict(run_id="r", run_dir=str(tmp_path / "r"), db_path=str(tmp_path / "h.db"), model_path=str(model_dir),
                  data_path="unused", strategy=strategy, strategy_options=options,
                  micro_batch=2, grad_accum=2, lr=1e-2, warmup_ratio=0.0, seed=7, device="cpu", objective="orpo")
    return RunConfig(**{**fields, **over})


def by_hand(model, pair: tuple, beta: float) -> tuple[float, float]:
    """(the chosen answer's summed NLL, beta times the odds-ratio term) for one pair, each side run alone."""
    logps = []
    for row in pair:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row.input_ids])).logits[0, :-1]
        token_logps = torch.log_softmax(logits.double(), -1)
        answer = [(t, token_logps[k, label]) for k, (t, label) in enumerate(zip(row.input_ids[1:], row.labels[1:]))
                  if label != IGNORE]
        logps.append([float(lp) for _, lp in answer])
    mean = [sum(lp) / len(lp) for lp in logps]
    odds = [m - torch.log1p(-torch.exp(torch.tensor(m, dtype=torch.float64))).item() for m in mean]
    ratio = torch.tensor(odds[0] - odds[1], dtype=torch.float64)
    return -sum(logps[0]), -beta * float(torch.nn.functional.logsigmoid(ratio))


def test_the_loss_is_the_papers_formula_over_a_padded_batch(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    data = pairs(4)
    batch = orpo.collate([data[i] for i in range(4)], pad_id=0)
    chosen = orpo.chosen_tokens(batch)
    assert chosen == sum(sum(t != IGNORE for t in data[i][0].labels[1:]) for i in range(4))
    with torch.no_grad():
        got, nll, preferred = orpo.loss(model, batch, chosen, 4, beta=0.25)
    parts = [by_hand(model, data[i], 0.25) for i in range(4)]
    assert nll == pytest.approx(sum(n for n, _ in parts) / chosen, rel=1e-5)  # what the run reports as its loss
    assert float(got) == pytest.approx(nll + sum(o for _, o in parts) / 4, rel=1e-5)
    assert 0 <= preferred <= 4


def test_pairs_match_their_sides_by_source_and_skip_rows_one_side_lost():
    row = lambda source: Encoded([1, 2], [IGNORE, 2], False, source)  # noqa: E731
    found = orpo.Pairs([row("a:1"), row("a:2"), row("a:3")], [row("a:3"), row("a:1")])
    assert len(found) == 2 and [(c.source, r.source) for c, r in (found[0], found[1])] == [("a:1", "a:1"),
                                                                                           ("a:3", "a:3")]


def test_a_step_does_not_depend_on_how_it_is_cut_into_micro_batches(model_dir, tmp_path):
    data = pairs()
    losses, weights = [], []
    for micro, accum in ((4, 1), (2, 2), (1, 4)):
        session = training.Session(config(tmp_path, model_dir, micro_batch=micro, grad_accum=accum, orpo_beta=1.0), 3)
        idx = training.batches_for_step(0, session.cfg, len(data))
        losses.append(session.step([orpo.collate([data[i] for i in b], 0) for b in idx])[0])
        weights.append([p.detach().clone() for p in session.params])
    assert losses == pytest.approx([losses[0]] * 3, rel=1e-5)
    for other in weights[1:]:  # the same update: both terms of the loss are normalised by the whole step
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(weights[0], other))


def margin(model, data: orpo.Pairs) -> float:
    """The mean log-odds ratio of chosen over rejected answers, over every pair."""
    batch = orpo.collate([data[i] for i in range(len(data))], 0)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    model.train()
    targets = batch["labels"][:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                            reduction="none").view(targets.shape).sum(1)
    mean = -nll / (targets != IGNORE).sum(1)
    odds = mean - torch.log(-torch.expm1(mean))
    return float((odds[: len(data)] - odds[len(data):]).mean())


@pytest.mark.parametrize("strategy,options,lr", [("lora", {"r": 4, "alpha": 8}, 1e-2), ("full", {}, 3e-3),
                                                 ("lisa", {"layers": 1, "interval": 2}, 3e-3)])
def test_training_comes_to_prefer_the_chosen_answers_more_than_learning_them_alone(model_dir, tmp_path, strategy,
                                                                                   options, lr):
    data = pairs()
    margins = {}
    for objective in ("orpo", "sft"):  # the same steps, the same chosen answers; SFT never sees the rejected
        session = training.Session(config(tmp_path, model_dir, strategy, options, lr=lr, objective=objective,
                                          orpo_beta=1.0), 12)
        before = margin(session.model, data)
        for _ in range(12):
            idx = training.batches_for_step(session.step_index, session.cfg, len(data))
            chosen = [[data[i] for i in b] for b in idx]
            session.step([orpo.collate(c, 0) if objective == "orpo" else collate([p[0] for p in c], 0)
                          for c in chosen])
        margins[objective] = margin(session.model, data)
    assert margins["orpo"] > before + 0.1 and margins["orpo"] > 1.5 * margins["sft"]


def test_a_validation_check_on_pairs_is_the_chosen_answers_loss_and_the_share_preferred(model_dir, tmp_path):
    session = training.Session(config(tmp_path, model_dir), 3)
    data = pairs(4)
    value = session.evaluate(data, 0)
    assert value == pytest.approx(session.evaluate([data[i][0] for i in range(4)], 0), rel=1e-6)
    odds = []
    for i in range(4):
        nll, _ = by_hand(session.model, data[i], 0.0)
        nll_rejected, _ = by_hand(session.model, data[i][::-1], 0.0)
        means = [-nll / sum(t != IGNORE for t in data[i][0].labels[1:]),
                 -nll_rejected / sum(t != IGNORE for t in data[i][1].labels[1:])]
        odds.append(means[0] > means[1])  # log odds rise with the mean log-probability
    assert session.eval_prefers == sum(odds) / 4
