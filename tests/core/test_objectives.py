"""What a run learns (core/objectives): every preference objective's loss is its paper's formula, a step's loss
does not depend on how it is cut into micro-batches, training makes the model prefer the chosen answers more than
supervised tuning on them does, and validation checks measure what the run reports. One table, one case each."""

import math
import random

import pytest
import torch

from core import objectives, training
from core.data.tokenize import IGNORE, Encoded, collate
from core.objectives import pairs as pair_data
from core.run_config import RunConfig
from tests.core.test_strategies import random_llama

VOCAB = 1000


def answer_logps(model, row) -> list[float]:
    """Each answer token's log-probability, the row run alone, in float64."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([row.input_ids])).logits[0, :-1]
    token_logps = torch.log_softmax(logits.double(), -1)
    return [float(token_logps[k, label]) for k, label in enumerate(row.labels[1:]) if label != IGNORE]


def orpo_by_hand(c: list, r: list, ref, beta: float, *_) -> float:
    """ORPO's odds-ratio term of one pair (the NLL part is checked apart)."""
    odds = [m - math.log1p(-math.exp(m)) for m in (sum(c) / len(c), sum(r) / len(r))]
    return -beta * math.log(1 / (1 + math.exp(-(odds[0] - odds[1]))))


def dpo_by_hand(c: list, r: list, ref, beta: float, *_) -> float:
    margin = beta * ((sum(c) - float(ref[0])) - (sum(r) - float(ref[1])))
    return math.log1p(math.exp(-margin))


def simpo_by_hand(c: list, r: list, ref, beta: float, *_) -> float:
    margin = beta * (sum(c) / len(c) - sum(r) / len(r)) - 0.5 * beta
    return math.log1p(math.exp(-margin))


def kto_by_hand(c: list, r: list, ref, beta: float, rating: float, kl: float) -> float:
    """KTO's term of one rated answer `c` (its mismatched row `r` counts through `kl`, the batch's z0)."""
    shift = beta * (sum(c) - float(ref[0]) - kl)
    return abs(rating) / (1 + math.exp(shift if rating > 0 else -shift))  # 1 - sigmoid(±shift)


def kl_by_hand(sides: list, data) -> float:
    """KTO's reference point: the mismatched rows' mean log-probability raised against the reference, at least 0."""
    return max(0.0, sum(sum(r) - float(data.reference[i][1]) for i, (_, r) in enumerate(sides)) / len(sides))


def likelier_per_token(c: list, r: list, ref, rating) -> bool:
    return sum(c) / len(c) > sum(r) / len(r)


def raised_more(c: list, r: list, ref, rating) -> bool:
    """DPO's reward accuracy: the chosen answer raised more than the rejected one against the reference."""
    return sum(c) - float(ref[0]) > sum(r) - float(ref[1])


def rated_right(c: list, r: list, ref, rating) -> bool:
    """KTO: an answer rated good raised against the reference, one rated bad lowered."""
    raised = sum(c) - float(ref[0])
    return raised > 0 if rating > 0 else raised < 0


# objective → (its pair term by hand, the chosen NLL is part of the loss, a pair counted as preferred by hand)
CASES = {"orpo": (orpo_by_hand, True, likelier_per_token), "dpo": (dpo_by_hand, False, raised_more),
         "rpo": (dpo_by_hand, True, raised_more),  # DPO's term, and the chosen answers' NLL
         "simpo": (simpo_by_hand, False, likelier_per_token), "kto": (kto_by_hand, False, rated_right)}


def test_every_preference_objective_has_a_case():
    assert set(CASES) == {n for n, m in objectives.OBJECTIVES.items() if m.PAIRS}
    assert not objectives.get("sft").PAIRS and objectives.label("sft") == ""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_llama(tmp_path_factory.mktemp("pairs-model"), 2)


def pairs(n: int = 8, seed: int = 0, reference: bool = False, rated: bool = False) -> pair_data.Pairs:
    """Pairs sharing a prompt: the chosen answer counts up from the prompt's last token, the rejected one from the
    token after it; with `reference`, made-up reference log-probabilities (what DPO measures against); with
    `rated`, as KTO has them: every other row rated bad (weighed 0.75), the rejected side standing for the row's
    mismatched one (the formulas do not care which answer it is)."""
    rng = random.Random(seed)
    chosen, rejected = [], []
    for i in range(n):
        prompt = [rng.randrange(3, VOCAB - 20) for _ in range(rng.randrange(4, 8))]
        good = [prompt[-1] + k for k in range(1, rng.randrange(4, 9))]
        bad = [t + 1 for t in good]  # as plausible a pattern: what supervised tuning alone also makes likelier
        for side, answer in ((chosen, good), (rejected, bad)):
            side.append(Encoded(prompt + answer, [IGNORE] * len(prompt) + answer, False, f"d.jsonl:{i + 1}"))
    ref = None
    if reference:  # about what a random model gives (log 1/1000 a token), give or take two
        lengths = torch.tensor([[sum(t != IGNORE for t in side[i].labels[1:]) for side in (chosen, rejected)]
                                for i in range(n)], dtype=torch.float32)
        ref = -math.log(VOCAB) * lengths + 4 * torch.rand((n, 2), generator=torch.Generator().manual_seed(seed)) - 2
    ratings = {row.source: 1.0 if i % 2 == 0 else -0.75 for i, row in enumerate(chosen)} if rated else None
    return pair_data.Pairs(chosen, rejected, ref, ratings)


def some_pairs(name: str, n: int = 8, seed: int = 0, reference: bool = False) -> pair_data.Pairs:
    """pairs() as the objective `name` takes them (rated for KTO)."""
    return pairs(n, seed, reference, rated=objectives.learns_rated(name))


def config(tmp_path, model_dir, strategy="lora", options=None, **over) -> RunConfig:
    options = {"r": 4, "alpha": 8} if options is None else options
    fields = dict(run_id="r", run_dir=str(tmp_path / "r"), db_path=str(tmp_path / "h.db"), model_path=str(model_dir),
                  data_path="unused", strategy=strategy, strategy_options=options,
                  micro_batch=2, grad_accum=2, lr=1e-2, warmup_ratio=0.0, seed=7, device="cpu", objective="orpo")
    return RunConfig(**{**fields, **over})


@pytest.mark.parametrize("name", CASES)
def test_the_loss_is_the_papers_formula_over_a_padded_batch(model_dir, name):
    from transformers import AutoModelForCausalLM

    by_hand, learns_answers, won = CASES[name]
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    data = some_pairs(name, 4, reference=True)
    batch = pair_data.collate([data[i] for i in range(4)], pad_id=0)
    totals, score = pair_data.step_terms(model, [batch], objectives.learns_rated(name))
    assert (totals.chosen_tokens, totals.pairs) == (sum(sum(t != IGNORE for t in data[i][0].labels[1:])
                                                        for i in range(4)), 4)
    with torch.no_grad():
        scores = score(batch)
        got, reported = objectives.get(name).loss(scores, totals, 0.25)
    sides = [(answer_logps(model, data[i][0]), answer_logps(model, data[i][1])) for i in range(4)]
    kl = kl_by_hand(sides, data)
    assert totals.kl == (pytest.approx(kl, rel=1e-5) if objectives.learns_rated(name) else 0.0)
    nll = -sum(sum(c) for c, _ in sides) / totals.chosen_tokens
    term = sum(by_hand(c, r, data.reference[i], 0.25, rating(data, i), kl) for i, (c, r) in enumerate(sides)) / 4
    assert float(got) == pytest.approx(nll + term if learns_answers else term, rel=1e-5)
    assert reported == pytest.approx(nll if learns_answers else term, rel=1e-5)  # what the run shows as its loss
    counted = objectives.get(name).preferred(scores)
    assert counted == sum(won(c, r, data.reference[i], rating(data, i)) for i, (c, r) in enumerate(sides))
    if not objectives.learns_rated(name):  # (rated answers' scores hold no rejected half)
        assert scores.preferred() == sum(likelier_per_token(c, r, None, None) for c, r in sides)


def rating(data: pair_data.Pairs, i: int):
    return data[i][3] if data.ratings else None


def test_a_score_asks_for_logits_only_from_the_first_answer_position_on(model_dir):
    """The prompts come first and cost no vocabulary-wide logits (the values are the formula test's)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    data = pairs(4)
    batch = pair_data.collate([data[i] for i in range(4)], pad_id=0)
    first = min(next(k for k, t in enumerate(row.labels[1:]) if t != IGNORE) for i in range(4) for row in data[i])
    asked, forward = [], model.forward
    model.forward = lambda **kw: asked.append(kw["logits_to_keep"]) or forward(**kw)
    with torch.no_grad():
        pair_data.score(model, batch)
    width = batch["input_ids"].shape[1]
    assert asked == [width - first] and 0 < first < width - 1


def test_pairs_match_their_sides_by_source_and_skip_rows_one_side_lost():
    row = lambda source: Encoded([1, 2], [IGNORE, 2], False, source)  # noqa: E731
    found = pair_data.Pairs([row("a:1"), row("a:2"), row("a:3")], [row("a:3"), row("a:1")])
    assert len(found) == 2 and [(c.source, r.source) for c, r in (found[0], found[1])] == [("a:1", "a:1"),
                                                                                           ("a:3", "a:3")]
    assert found.sources() == ["a:1", "a:3"] and found.chosen_tokens() == 2


def test_each_rated_answers_mismatched_row_is_its_prompt_with_the_next_rows_answer():
    from core.data.example import Example

    turn = lambda role, text: {"role": role, "content": text}  # noqa: E731
    rows = [Example([turn("system", "Be brief."), turn("user", "q1"), turn("assistant", "a1")], source="d:1",
                    desirable=True),
            Example([turn("user", "q2"), turn("assistant", "a2")], source="d:2", desirable=False),
            Example([turn("user", "q3"), turn("assistant", "a3")], source="d:3", desirable=True)]
    found = list(pair_data.Mismatched(rows))
    assert [(e.source, [m["content"] for m in e.messages]) for e in found] == [
        ("d:1", ["Be brief.", "q1", "a2"]), ("d:2", ["q2", "a3"]), ("d:3", ["q3", "a1"])]  # the last wraps round
    assert list(pair_data.Mismatched(iter(()))) == [] and list(pair_data.Mismatched(rows)) == found  # read afresh
    weight = objectives.kto.balance(e.desirable for e in rows)
    assert weight == 2.0 and objectives.kto.ratings(rows, weight) == {"d:1": 1.0, "d:2": -2.0, "d:3": 1.0}


def test_kto_on_preference_pairs_rates_each_chosen_answer_good_and_each_rejected_one_bad():
    from core.data.example import Example

    turn = lambda role, text: {"role": role, "content": text}  # noqa: E731
    rows = [Example([turn("user", f"q{i}"), turn("assistant", f"good{i}")], source=f"p:{i}",
                    rejected=[turn("user", f"q{i}"), turn("assistant", f"bad{i}")]) for i in (1, 2)]
    found = pair_data.Unpaired(rows)
    assert len(found) == 4 and [(e.source, e.messages[-1]["content"], e.desirable) for e in found] == [
        ("p:1 (chosen)", "good1", True), ("p:2 (chosen)", "good2", True),
        ("p:1 (rejected)", "bad1", False), ("p:2 (rejected)", "bad2", False)]
    # Chosen answers first: no mismatched row answers its own prompt (q1 with good2, ..., q2's bad with good1).
    assert [[m["content"] for m in e.messages] for e in pair_data.Mismatched(found)] == [
        ["q1", "good2"], ["q2", "bad1"], ["q1", "bad2"], ["q2", "good1"]]
    train, held, note = pair_data.rows_for(objectives.get("kto"), "preference", rows, rows[:1])
    assert len(train) == 4 and [e.desirable for e in held] == [True, False]
    assert note == ("Each of the 2 preference pairs split in two for KTO: its chosen answer rated good, its rejected "
                    "one rated bad")
    assert pair_data.rows_for(objectives.get("dpo"), "preference", rows, rows[:1]) == (rows, rows[:1], None)
    chat = Example([turn("user", "q"), turn("assistant", "a")], source="c:1")  # a separate validation set's row
    assert pair_data.rows_for(objectives.get("kto"), "preference", rows, [chat])[1] == [chat]  # unrated: its loss


@pytest.mark.parametrize("name", CASES)
def test_a_step_does_not_depend_on_how_it_is_cut_into_micro_batches(model_dir, tmp_path, name):
    data = some_pairs(name, reference=True)
    losses, weights = [], []
    for micro, accum in ((4, 1), (2, 2), (1, 4)):
        session = training.Session(config(tmp_path, model_dir, micro_batch=micro, grad_accum=accum, objective=name,
                                          beta=1.0), 3)
        idx = training.batches_for_step(0, session.cfg, len(data))
        losses.append(session.step([pair_data.collate([data[i] for i in b], 0) for b in idx])[0])
        weights.append([p.detach().clone() for p in session.params])
    assert losses == pytest.approx([losses[0]] * 3, rel=1e-5)
    for other in weights[1:]:  # the same update: every term of the loss is normalised by the whole step
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(weights[0], other))


def margin(model, data: pair_data.Pairs) -> float:
    """The mean, over every pair, of how much likelier per token the chosen answer is than the rejected one."""
    model.eval()
    with torch.no_grad():
        mean = pair_data.score(model, pair_data.collate([data[i][:2] for i in range(len(data))], 0)).mean_logp
    model.train()
    return float((mean[: len(data)] - mean[len(data):]).mean())


@pytest.mark.parametrize("name,strategy,options,lr", [
    ("orpo", "lora", {"r": 4, "alpha": 8}, 1e-2), ("orpo", "full", {}, 3e-3),
    ("orpo", "lisa", {"layers": 1, "interval": 2}, 3e-3), ("dpo", "lora", {"r": 4, "alpha": 8}, 1e-2),
    ("rpo", "lora", {"r": 4, "alpha": 8}, 1e-2), ("simpo", "lora", {"r": 4, "alpha": 8}, 1e-2)])
def test_training_comes_to_prefer_the_chosen_answers_more_than_learning_them_alone(model_dir, tmp_path, name,
                                                                                   strategy, options, lr):
    margins = {}
    for objective in (name, "sft"):  # the same steps, the same chosen answers; SFT never sees the rejected
        session = training.Session(config(tmp_path, model_dir, strategy, options, lr=lr, objective=objective,
                                          **({"beta": 1.0} if name == "orpo" and objective == name else {})), 12)
        data = pairs()
        if objectives.get(objective).REFERENCE:  # from the starting model, as the trainer works it out
            data, _, fresh = pair_data.with_reference(
                tmp_path / f"{name}-reference.safetensors", data, pair_data.Pairs([], []), 512,
                lambda some, _: pair_data.reference_logps(session.model, some, 0, 4, session.device))
            assert fresh
        before = margin(session.model, data)
        for _ in range(12):
            idx = training.batches_for_step(session.step_index, session.cfg, len(data))
            chosen = [[data[i] for i in b] for b in idx]
            session.step([pair_data.collate(c, 0) if objective == name else collate([p[0] for p in c], 0)
                          for c in chosen])
        margins[objective] = margin(session.model, data)
    assert margins[name] > before + 0.1 and margins[name] > 1.5 * margins["sft"], (before, margins)


def test_dpo_starts_at_log_2_against_the_starting_model_and_keeps_its_reference_for_a_resume(model_dir, tmp_path):
    session = training.Session(config(tmp_path, model_dir, objective="dpo"), 3)
    asked = []

    def work_out(some, before):
        asked.append((len(some), before))
        return pair_data.reference_logps(session.model, some, 0, 3, session.device)
    path = tmp_path / "reference.safetensors"
    data, held, fresh = pair_data.with_reference(path, pairs(8), pairs(3, seed=1), 512, work_out)
    assert fresh and asked == [(8, 0), (3, 8)] and data.reference.shape == (8, 2) and held.reference.shape == (3, 2)
    # The adapter starts as a no-op: the model is its own reference, every margin is 0 and the loss log 2.
    assert session.evaluate(held, 0) == pytest.approx(math.log(2), abs=1e-5)
    idx = training.batches_for_step(0, session.cfg, len(data))
    assert session.step([pair_data.collate([data[i] for i in b], 0) for b in idx])[0] == pytest.approx(
        math.log(2), abs=1e-5)
    again, held_again, fresh = pair_data.with_reference(path, pairs(8), pairs(3, seed=1), 512, work_out)
    assert not fresh and len(asked) == 2  # read back, not worked out with the (now trained) model
    assert torch.equal(again.reference, data.reference) and torch.equal(held_again.reference, held.reference)
    _, _, fresh = pair_data.with_reference(path, pairs(7), pairs(3, seed=1), 512, work_out)
    assert fresh and asked[2:] == [(7, 0), (3, 7)]  # other pairs: saved for something else


def test_only_the_pairs_a_run_trains_on_get_their_reference_worked_out(model_dir, tmp_path):
    cfg = config(tmp_path, model_dir, objective="dpo")  # 2 × 2 pairs a step
    seen = training.examples_seen(cfg, 10, 2)
    stepped = {i for step in (0, 1) for b in training.batches_for_step(step, cfg, 10) for i in b}
    assert seen == sorted(stepped) and len(seen) == 8  # the first two steps' pairs, in index order
    assert training.examples_seen(cfg, 10, 3) == list(range(10))  # a whole pass: all of them
    asked = []

    def work_out(some, before):
        asked.append((len(some), before))
        return -torch.ones((len(some), 2))
    data, _, _ = pair_data.with_reference(tmp_path / "ref.safetensors", pairs(10), pairs(3, seed=1), 512, work_out,
                                          seen)
    assert asked == [(8, 0), (3, 8)]
    assert [not torch.isnan(data.reference[i]).any() for i in range(10)] == [i in seen for i in range(10)]
    pair_data.collate([data[i] for i in seen[:2]], 0)
    left_out = next(i for i in range(10) if i not in seen)
    with pytest.raises(ValueError, match="a pair with no reference log-probabilities"):
        pair_data.collate([data[left_out]], 0)


@pytest.mark.parametrize("name", CASES)
def test_a_validation_check_on_pairs_measures_what_the_run_reports_and_the_share_preferred(model_dir, tmp_path, name):
    session = training.Session(config(tmp_path, model_dir, objective=name), 3)
    data = some_pairs(name, 4, reference=True)
    value = session.evaluate(data, 0)
    by_hand, learns_answers, won = CASES[name]
    sides = [(answer_logps(session.model, data[i][0]), answer_logps(session.model, data[i][1])) for i in range(4)]
    if learns_answers:  # the chosen answers' loss, as a supervised check measures it
        assert value == pytest.approx(session.evaluate([data[i][0] for i in range(4)], 0), rel=1e-6)
    else:
        beta, kl = objectives.get(name).BETA, kl_by_hand(sides, data)
        assert value == pytest.approx(sum(by_hand(c, r, data.reference[i], beta, rating(data, i), kl)
                                          for i, (c, r) in enumerate(sides)) / 4, rel=1e-5)
    assert session.eval_prefers == sum(won(c, r, data.reference[i], rating(data, i))
                                       for i, (c, r) in enumerate(sides)) / 4


def rated_answers(n: int = 8, seed: int = 0) -> pair_data.Pairs:
    """Rated answers as the trainer makes them: row i's answer follows pairs()'s chosen pattern when i is even
    (rated good) and its rejected one when odd (rated bad); its mismatched row is its prompt with row i+1's answer."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = [rng.randrange(3, VOCAB - 20) for _ in range(rng.randrange(4, 8))]
        answer = [prompt[-1] + k + i % 2 for k in range(1, rng.randrange(4, 9))]
        rows.append((prompt, answer))
    encode = lambda p, a, i: Encoded(p + a, [IGNORE] * len(p) + a, False, f"d.jsonl:{i + 1}")  # noqa: E731
    rated = [encode(p, a, i) for i, (p, a) in enumerate(rows)]
    mismatched = [encode(p, rows[(i + 1) % n][1], i) for i, (p, _) in enumerate(rows)]
    return pair_data.Pairs(rated, mismatched, ratings={r.source: 1.0 if i % 2 == 0 else -1.0
                                                       for i, r in enumerate(rated)})


def good_and_bad(model, data: pair_data.Pairs) -> tuple[float, float]:
    """The mean log-probability per token of the answers rated good, and of the ones rated bad."""
    model.eval()
    with torch.no_grad():
        mean = pair_data.score(model, collate([data[i][0] for i in range(len(data))], 0)).mean_logp
    model.train()
    return float(mean[0::2].mean()), float(mean[1::2].mean())


def test_kto_raises_the_answers_rated_good_and_lowers_the_bad_unlike_learning_the_good_alone(model_dir, tmp_path):
    found = {}
    for objective in ("kto", "sft"):  # the same steps; supervised tuning learns the good answers alone
        session = training.Session(config(tmp_path, model_dir, lr=1e-2, objective=objective,
                                          **({"beta": 1.0} if objective == "kto" else {})), 12)
        data = rated_answers()
        if objective == "kto":
            data, _, _ = pair_data.with_reference(
                tmp_path / "kto-reference.safetensors", data, pair_data.Pairs([], [], ratings={}), 512,
                lambda some, _: pair_data.reference_logps(session.model, some, 0, 4, session.device))
        good = [data[i][0] for i in range(0, len(data), 2)]  # (the trainer's supervised run on rated answers)
        before = good_and_bad(session.model, data)
        for _ in range(12):
            idx = training.batches_for_step(session.step_index, session.cfg, len(data if objective == "kto" else good))
            session.step([pair_data.collate([data[i] for i in b], 0) if objective == "kto"
                          else collate([good[i] for i in b], 0) for b in idx])
        found[objective] = good_and_bad(session.model, data)
    (good, bad), sft_bad = found["kto"], found["sft"][1]
    # KTO raises the good answers and lowers the bad ones; learning the good alone leaves the bad where they were.
    assert good > before[0] + 0.2 and bad < before[1] - 0.2 and sft_bad > bad + 0.3, (before, found)
