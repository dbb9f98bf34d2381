"""`train --from RUN` goes on from an earlier run's trained weights: same base, strategy and settings, its weights
as the start (app.operations.going_on, RunConfig.start_from, Strategy.start_from)."""

from __future__ import annotations

import pytest

from tests.conftest import DEMO, json_lines, write_jsonl


def train(cli, *args, check=0):
    """`train ARGS` on the demo data through `cli` (in this process: cli_here)."""
    proc = cli("train", "--data", DEMO, "--json", *args, check=check)
    events = json_lines(proc.stdout)
    return events, events[-1]["run_id"] if events else None, {e["step"]: e["loss"] for e in events
                                                              if e["event"] == "eval"}


@pytest.mark.parametrize("strategy", ["lora", "full"])  # an adapter, and a whole model, to go on from
def test_a_run_goes_on_from_the_weights_of_another(cli_here, home, tiny_model_dir, strategy, tmp_path):
    from app import operations as ops

    _, first, first_evals = train(cli_here, "--model", tiny_model_dir, "--strategy", strategy, "--max-steps", "6",
                                  "--lr", "5e-3")
    assert first_evals[6] < first_evals[1] - 0.01  # the first run moved away from the base
    # At a learning rate too small to move anything, the second run's validation loss is the first run's last one:
    # it really starts from those weights (same data and seed, so the same held-out rows).
    events, second, evals = train(cli_here, "--from", first, "--weights", "last", "--max-steps", "2", "--lr", "1e-12")
    assert evals[2] == pytest.approx(first_evals[6], abs=1e-4), (evals, first_evals)
    run = ops.get_run(second)
    assert (run["strategy"], run["model_path"]) == (strategy, ops.get_run(first)["model_path"])
    assert run["config"]["continues"] == {"run": first, "weights": "last", "step": 6}
    said = f"Starting from the weights of run {first} at step 6"
    assert any(e.get("text") == said for e in events if e["event"] == "status")
    with ops.open_history() as db:
        assert [e["text"] for e in db.events(second) if e["kind"] == "continues"] == [said]
    # DPO from those weights compares against them, not the base: the model starts as its own reference (log 2).
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"Say {i}.", "chosen": f"Arr, {i}!", "rejected": f"{i}."}
                                                   for i in range(12)])
    proc = cli_here("train", "--from", first, "--data", pairs, "--objective", "dpo", "--max-steps", "1", "--json",
                    check=0)
    assert [e["loss"] for e in json_lines(proc.stdout) if e["event"] == "step"] == [pytest.approx(0.693147, abs=1e-5)]


def test_going_on_refuses_what_cannot_go_on_in_one_sentence(cli_here, home, tiny_model_dir):
    _, first, _ = train(cli_here, "--model", tiny_model_dir, "--strategy", "lora", "--max-steps", "2")
    planned = cli_here("plan", "--from", first, "--data", DEMO, check=0).stdout  # the plan says it too
    assert f"Goes on from the weights of run {first} at step 2\nStrategy: lora" in planned, planned
    for args, words in (
            (["--from", first, "--model", "default"], f"--from {first} goes on with that run's model"),
            (["--from", first, "--strategy", "full"], "keeps its strategy (lora)"),
            (["--from", "nosuchrun"], "nosuchrun"),
            ([], "the following arguments are required: --model (or --from RUN)")):
        proc = cli_here("train", "--data", DEMO, *args)
        assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    # Another rank than the adapter's: the trainer refuses it at the start, naming the file and what to keep.
    events, _, _ = train(cli_here, "--from", first, "--option", "r=4", "--max-steps", "2", check=2)
    failed = next(e for e in events if e["event"] == "error")
    assert "adapter_model.safetensors: the adapter does not fit this run's" in failed["text"]
    assert "keep the settings (r, targets)" in failed["text"]
    # That failed run would need the first run's weights to be resumed: deleting the first one says so.
    said = cli_here("delete", first).stdout
    assert f"run {events[-1]['run_id']} (failed) goes on from its weights and could not be resumed" in said, said


def test_an_adapter_run_resumes_from_its_checkpoint_when_the_run_it_went_on_from_is_gone(home, tiny_model_dir,
                                                                                         tmp_path):
    from core import settings, training
    from core.errors import KnownError
    from core.run_config import RunConfig

    fields = dict(run_id="r", run_dir=str(tmp_path / "run"), db_path=str(home / "history.sqlite"),
                  model_path=str(tiny_model_dir), data_path=str(DEMO), strategy="lora",
                  start_from=str(tmp_path / "deleted-run" / "result"), continues={"run": "gone", "step": 3})
    cfg = settings.from_dict(RunConfig, fields)
    with pytest.raises(KnownError, match="the weights this run starts from are gone .was run gone deleted"):
        training.Session(cfg, total_steps=4)
    started = training.Session(settings.from_dict(RunConfig, {**fields, "start_from": ""}), total_steps=4)
    started.save_checkpoint(cfg.run_dir, {})  # a checkpoint holds the whole adapter: enough to resume from
    resumed = training.Session(cfg, total_steps=4)
    assert resumed.trainable_count == started.trainable_count
    whole = settings.from_dict(RunConfig, {**fields, "strategy": "full", "strategy_options": {}})
    with pytest.raises(KnownError, match="are gone"):  # a whole model may keep frozen parts of what it started from
        training.Session(whole, total_steps=4)
