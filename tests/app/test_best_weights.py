"""A run whose validation loss turns up keeps the weights of its lowest point, and chat, evaluate and export use
them unless told otherwise; --stop-early ends such a run by itself (core/results.py, core/validation_watch.py).

The data makes a real over-fit cheaply (tests.conftest.write_twins): the tiny model first learns the answers'
words (validation falls), then memorizes the held-out rows' twins (validation rises while training falls).
The run is the session's `overfit_run` (tests/conftest.py), shared with the export page's test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core import results
from core.errors import BadArgument

def held_out_loss(run: dict, folder) -> float:
    """The validation loss of the weights in `folder`, measured again on the rows the run held out."""
    from core import evaluation, inference
    from core.data import dataset

    cfg = run["config"]
    _, rows, _ = dataset.load(cfg["data_path"]).split(cfg["eval_fraction"], cfg["seed"])
    model, tok = inference.load(run["model_path"], run["strategy"], folder)
    return evaluation.loss(model, tok, rows, cfg["seq_len"], cfg["train_on"])[0]


def test_a_run_that_begins_memorizing_stops_early_and_keeps_and_uses_its_best_weights(cli_here, overfit_run,
                                                                                       monkeypatch, tmp_path):
    from app import operations as ops

    monkeypatch.setenv("TUNEFORGE_HOME", str(overfit_run.home))  # (after cli_here's own home: this one holds it)
    home, events, run_id, twins = overfit_run.home, overfit_run.events, overfit_run.run_id, overfit_run.data
    evals = {e["step"]: e["loss"] for e in events if e["event"] == "eval"}
    lowest = min(evals, key=evals.get)
    end = lowest + 2 * 10  # two checks after the lowest, neither lower: the run ends there
    assert 10 <= lowest and max(evals) == end < 100 and evals[end] > evals[lowest], evals  # it really over-fits
    done = events[-1]
    assert done["status"] == "done" and f"stopped early at step {end}" in done["text"], done
    lowest_seen = [e["step"] for e in events if e["event"] == "eval" and e["lowest"]]
    assert lowest_seen[-1] == lowest and lowest_seen == sorted(lowest_seen)
    run_dir = home / "runs" / run_id
    assert (run_dir / "checkpoints" / f"step-{end:06d}").is_dir()
    # Of the checkpoints saved on the way, the history lists the one still on disk (keep_checkpoints: 1).
    from app import paths
    from core import history

    assert len([e for e in events if e["event"] == "checkpoint"]) > 1
    with history.History(paths.db_path()) as db:
        assert [Path(c["path"]) for c in db.checkpoints(run_id)] == [run_dir / "checkpoints" / f"step-{end:06d}"]
    kept = results.best_of(run_dir)
    assert (kept["step"], kept["last_step"]) == (lowest, end)
    assert kept["loss"] == pytest.approx(evals[lowest], abs=1e-4) and kept["last_loss"] > kept["loss"]
    said = [e["text"] for e in events if e["event"] == "status" and "lowest at step" in e.get("text", "")]
    assert said and f"step {lowest}" in said[0]

    run = ops.get_run(run_id)  # best/ really holds that step's weights: measured again, the same losses
    assert held_out_loss(run, run_dir / "best") == pytest.approx(evals[lowest], abs=1e-3)
    assert held_out_loss(run, run_dir / "result") == pytest.approx(evals[end], abs=1e-3)

    listed = json.loads(cli_here("runs", "--json", check=0).stdout)
    assert listed[0]["best_weights"]["step"] == lowest
    measured = json.loads(cli_here("evaluate", "--run", run_id, "--data", twins, "--ask", "0", "--json",
                                   check=0).stdout)
    at_last = json.loads(cli_here("evaluate", "--run", run_id, "--data", twins, "--ask", "0", "--json",
                                  "--weights", "last", check=0).stdout)
    assert (measured["weights"], measured["step"], at_last["weights"]) == ("best", lowest, "last")
    assert measured["tuned_loss"] != at_last["tuned_loss"] and f"step {lowest}" in measured["summary"]

    out = tmp_path / "model"
    proc = cli_here("export", "--run", run_id, "--format", "safetensors", "--out", out, check=0)
    assert f"Exporting the weights of step {lowest}" in proc.stderr
    exported, best = load_file(str(out / "model.safetensors")), load_file(str(run_dir / "best" / "model.safetensors"))
    last = load_file(str(run_dir / "result" / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    assert exported[name].equal(best[name].to(exported[name].dtype)) and not exported[name].equal(
        last[name].to(exported[name].dtype))


def kept(run_dir, step: int, loss: float) -> None:
    (run_dir / "best").mkdir(parents=True)
    (run_dir / "best" / results.MARK).write_text(json.dumps({"step": step, "loss": loss}))


@pytest.mark.parametrize("last_step, last_loss, stays, auto", [
    (100, 3.0, True, "best"),  # measured worse at the end: best kept and chosen
    (100, 2.0, False, "last"),  # the end was at least as good: best/ goes
    (60, None, False, "last"),  # the run ended at the best step itself
    (80, None, True, "last"),  # stopped before its end was measured: kept, offered, not chosen by itself
])
def test_settle_keeps_best_only_where_it_beats_the_end(tmp_path, last_step, last_loss, stays, auto):
    kept(tmp_path, 60, 2.5)
    (tmp_path / "result").mkdir()
    results.settle(tmp_path, last_step, last_loss)
    assert (tmp_path / "best").is_dir() == stays
    run = {"id": "r1", "run_dir": str(tmp_path), "steps_done": last_step}
    assert results.choose(run).which == auto
    assert results.folder(results.pick(run)) == tmp_path / ("best" if auto == "best" else "result")


def test_asking_for_best_weights_a_run_did_not_keep_is_one_sentence(tmp_path):
    with pytest.raises(BadArgument, match="kept no separate best weights.*--weights last"):
        results.choose({"id": "r1", "run_dir": str(tmp_path)}, results.BEST)
    with pytest.raises(BadArgument, match="Unknown weights 'middle'"):
        results.choose({"id": "r1", "run_dir": str(tmp_path)}, "middle")


def test_a_run_without_a_last_result_answers_with_its_best_so_far(tmp_path):
    kept(tmp_path, 40, 2.5)  # a run still training (or one that crashed) has best/ and no result/ yet
    choice = results.choose({"id": "r1", "run_dir": str(tmp_path)})
    assert (choice.which, choice.step, choice.path) == ("best", 40, tmp_path / "best")
    assert choice.note.endswith("(2.5000; the run has no last step's result)")
