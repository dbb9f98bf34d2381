"""`evaluate`: a run against its base on rows it did not train on (core/evaluation.py, app/operations.py)."""

from __future__ import annotations

import json
import shutil

import pytest

from app import evaluations
from app import operations as ops
from core import evaluation, inference
from core.data.example import Example
from core.planner import Wishes
from tests.conftest import DEMO, HELDOUT


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    """A real six-step LoRA run of the tiny model on the demo data, in its own home; the data is a folder with the
    held-out file as its test split, as a dataset of train and test files is."""
    home = tmp_path_factory.mktemp("evaluate-home")
    (home / "models").mkdir()
    data = home / "pirate"
    data.mkdir()
    shutil.copy(DEMO, data / "train.jsonl")
    shutil.copy(HELDOUT, data / "test.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNEFORGE_HOME", str(home))
        cfg = ops.create_run(ops.make_plan(str(tiny_model_dir), str(data), Wishes(max_steps=6, lr=5e-3)))
        outcome = ops.start_run(cfg.run_id).wait(300)
        assert outcome is not None and outcome.status == "done", outcome
        yield cfg.run_id, home


@pytest.fixture
def in_home(tiny_run, home, monkeypatch):
    """The run's home, set after the per-test one that cli_here uses."""
    run_id, home = tiny_run
    monkeypatch.setenv("TUNEFORGE_HOME", str(home))
    return run_id


def test_the_losses_and_answers_are_those_of_the_two_models(in_home):
    run = ops.get_run(in_home)
    report = evaluations.evaluate_run(in_home, str(HELDOUT), asks=2, max_new_tokens=12)
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    assert report.rows == len(rows) and report.tokens > 0
    examples = ops.read_dataset(str(HELDOUT), None, None, "skip").examples
    seq_len = run["config"]["seq_len"]
    for which, model, answers in (
            ("base", inference.load(run["model_path"]), report.base_answers),
            ("tuned", inference.load(run["model_path"], "lora", f"{run['run_dir']}/result"), report.tuned_answers)):
        model, tok = model
        value, tokens = evaluation.loss(model, tok, examples, seq_len)
        assert getattr(report, f"{which}_loss") == pytest.approx(value, rel=1e-6) and tokens == report.tokens
        assert answers == [inference.reply(model, tok, r["messages"][0]["content"], max_new_tokens=12)
                           for r in rows[:2]]
    assert report.tuned_loss < report.base_loss  # six steps at a high rate already pull towards the demo's voice
    assert [q.source for q in report.asked] == [f"{HELDOUT.name}:1", f"{HELDOUT.name}:2"]
    assert report.asked[0].expected == rows[0]["messages"][1]["content"]
    assert "as likely per token" in report.summary()
    kept = evaluations.run_evaluations(in_home)[-1]  # kept with the run
    assert kept["report"] == report.to_dict() and kept["tuned_loss"] == report.tuned_loss


def test_the_command_line_prints_the_summary_and_each_question(in_home, cli_here):
    done = cli_here("evaluate", "--run", in_home, "--data", HELDOUT, "--ask", "1", "--max-new-tokens", "8", check=0)
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{HELDOUT}: 12 rows, ") and lines[2] == f"{HELDOUT.name}:1"
    assert [line.split()[0] for line in lines[3:] if line.startswith("  ") and line[2] != " "] == [
        "asked", "expected", "base", "tuned"]
    as_json = json.loads(cli_here("evaluate", "--run", in_home, "--data", HELDOUT, "--ask", "0", "--json",
                                  check=0).stdout)
    assert as_json["answers"] == [] and as_json["tuned_loss"] < as_json["base_loss"] and as_json["rows"] == 12
    past = cli_here("evaluate", "--run", in_home, check=0).stdout.splitlines()  # without --data: what was measured
    assert len(past) >= 2 and past[-1].endswith(as_json["summary"]) and past[-2].endswith(lines[0])
    listed = json.loads(cli_here("evaluate", "--run", in_home, "--json", check=0).stdout)
    assert listed[-1]["summary"] == as_json["summary"] and listed[-1]["created_at"] > 0


def test_a_run_on_a_dataset_with_a_test_split_is_measured_on_it(in_home, cli_here):
    folder = ops.get_run(in_home)["data_path"]
    assert evaluations.held_out_split(in_home) == f"{folder}:test" and evaluations.held_out_split(in_home, "validation") is None
    done = json.loads(cli_here("evaluate", "--run", in_home, "--split", "test", "--ask", "0", "--json",
                               check=0).stdout)
    assert done["data"] == f"{folder}:test" and done["rows"] == 12  # the test file's rows, which never trained
    for args, words in ((["--split", "validation"], f"trained on {folder}, which has no 'validation' split"),
                        (["--split", "test", "--data", str(HELDOUT)], "give one of them")):
        refused = cli_here("evaluate", "--run", in_home, *args)
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("args, words", [
    (["--ask", "-1"], "--ask must be 0 or more."),
    (["--rows", "0"], "--rows must be 1 or more."),
    (["--run", "nope"], "No run 'nope'"),
    (["--data", "missing.jsonl"], "missing.jsonl: no such file"),
])
def test_bad_input_is_one_sentence(args, words, in_home, cli_here):
    given = {"--run": in_home, "--data": str(HELDOUT)}
    for flag, value in zip(args[::2], args[1::2]):
        given[flag] = value
    done = cli_here("evaluate", *[x for pair in given.items() for x in pair])
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_questions_are_the_last_user_turns_before_an_answer():
    rows = [
        Example(messages=[{"role": "system", "content": "Be a pirate."}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Arr"}, {"role": "user", "content": "Gold?"},
                          {"role": "assistant", "content": "Buried"}], source="f:1"),
        Example(text="raw text holds no question", source="f:2"),
        Example(messages=[{"role": "user", "content": "unanswered"}], source="f:3"),
        Example(messages=[{"role": "user", "content": "Ship?"}, {"role": "assistant", "content": "Sunk"}],
                source="f:4"),
        Example(messages=[{"role": "user", "content": "past the limit"}, {"role": "assistant", "content": "-"}],
                source="f:5"),
    ]
    first, second = evaluation.questions(rows, limit=2)
    assert (first.source, first.system, first.prompt, first.expected) == ("f:1", "Be a pirate.", "Gold?", "Buried")
    assert first.history == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Arr"}]
    assert (second.source, second.system, second.history, second.prompt) == ("f:4", None, [], "Ship?")


def test_preference_pairs_are_counted_by_which_answer_each_model_finds_likelier(in_home, tmp_path):
    """Held-out preference pairs: besides the chosen answers' loss, how many pairs each model prefers the right way,
    each side's mean log-probability per answer token compared (as ORPO compares them), checked here by hand."""
    import torch

    rows = [json.loads(line)["messages"] for line in HELDOUT.read_text().splitlines()]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": m[0]["content"], "chosen": m[1]["content"],
                                         "rejected": "I do not know."}) + "\n" for m in rows))
    report = evaluations.evaluate_run(in_home, str(pairs), asks=0)
    run = ops.get_run(in_home)
    examples = ops.read_dataset(str(pairs), None, None, "skip").examples
    for which, (model, tok) in (("base", inference.load(run["model_path"])),
                                ("tuned", inference.load(run["model_path"], "lora", f"{run['run_dir']}/result"))):
        def mean_logp(messages) -> float:
            row = evaluation.tokenize.encode(Example(messages), tok, run["config"]["seq_len"])
            with torch.no_grad():
                logps = torch.log_softmax(model(input_ids=torch.tensor([row.input_ids])).logits[0, :-1].float(), -1)
            picked = [logps[k, t] for k, t in enumerate(row.labels[1:]) if t != -100]
            return float(sum(picked) / len(picked))
        right = sum(mean_logp(e.messages) > mean_logp(e.rejected) for e in examples)
        assert getattr(report, f"{which}_preferred") == right
    assert report.pairs == len(rows) and report.to_dict()["pairs"] == len(rows)
    assert report.summary().endswith(f"The chosen answer is the likelier in {report.tuned_preferred} of {len(rows)} "
                                     f"preference pairs tuned, {report.base_preferred} with the base.")
