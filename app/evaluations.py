"""The evaluate verb as plain functions, shared by the CLI and the UI (app/operations.py holds the others): a run's
tuned model against its base on held-out rows, kept in the history with the run."""

from __future__ import annotations

from app import answerers
from app.operations import get_run, open_history, read_dataset, run_weights
from core import evaluation, inference, results
from core.data import source as data_source
from core.errors import KnownError
from core.progress import Progress


def evaluate_run(run: str, data: str, asks: int = 5, max_new_tokens: int | None = None, loss_rows: int = 256,
                 progress: Progress | None = None, mapping: dict | None = None,
                 on_bad: str = "skip", weights: str = results.AUTO,
                 good_above: float | None = None) -> evaluation.Report:
    """The run's tuned model against its base on `data`: the loss of the first `loss_rows` rows' answers (as the
    run's validation loss counts them) and both models' answers to the first `asks` questions, kept in the
    history with the run. Of rated answers, the ones rated good are the expected answers, and the ones rated bad
    are measured apart (the tuned model should find them less likely); scored answers are rated by the run's own
    line unless `good_above` is given. One model is loaded at a time."""
    progress = progress or Progress()
    answerers.release()  # two models follow, one after the other
    r = run_weights(run, weights)
    cfg = r["config"]
    examples = read_dataset(data, progress, mapping, on_bad, good_above, cfg.get("good_above")).examples[:loss_rows]
    bad = [e for e in examples if e.desirable is False]
    examples = [e for e in examples if e.desirable is not False]
    asked = evaluation.questions(examples, asks)
    found = {}
    for which, result in (("tuned", results.folder(r)), ("base", None)):
        progress.update(None, f"Loading the {which} model")
        model, tok = inference.load(r["model_path"], r["strategy"] if result else None, result)
        progress.update(None, f"Measuring the {which} model on {len(examples):,} rows")
        value, tokens = evaluation.loss(model, tok, examples, cfg["seq_len"], cfg.get("train_on", "assistant"))
        pairs = evaluation.preferred(model, tok, examples, cfg["seq_len"], cfg.get("train_on", "assistant"))
        bad_loss = evaluation.loss(model, tok, bad, cfg["seq_len"], cfg.get("train_on", "assistant"))[0]
        progress.update(None, f"Asking the {which} model {len(asked)} questions")
        found[which] = (value, tokens, evaluation.answers(model, tok, asked, max_new_tokens or inference.room(
            cfg.get("thinks", False), evaluation.ANSWER_TOKENS)), pairs, bad_loss,
                        evaluation.calls(model, tok, examples))
        del model
    report = evaluation.Report(str(data), len(examples), found["tuned"][1], found["base"][0], found["tuned"][0],
                               asked, found["base"][2], found["tuned"][2], r["picked"].which, r["picked"].step,
                               found["tuned"][3][1], found["base"][3][0], found["tuned"][3][0], len(bad),
                               found["base"][4], found["tuned"][4], found["base"][5], found["tuned"][5])
    with open_history() as db:  # kept with the run: measured once, seen again later
        db.add_evaluation(r["id"], report.to_dict())
    return report


def held_out_split(run_id: str, split: str = "test") -> str | None:
    """How to name `split` of the run's own dataset (`acme/qa:test`, `/data/qa:test`) when the run read another
    split of a dataset that has it (a cached hub dataset, or a folder whose names name splits): rows it never
    trained on, measured without another file. None when its data has no such split."""
    try:
        data = get_run(run_id).get("data_path")
        source = data_source.locate(data) if data else None
    except KnownError:  # no such run, or its data is gone or unreadable now: nothing to offer
        return None
    if source is None or not source.split or source.split == split or split not in source.splits:
        return None
    return f"{source.base}:{split}"


def run_evaluations(run_id: str) -> list[dict]:
    """What evaluate_run measured of the run so far, oldest first."""
    run = get_run(run_id)
    with open_history() as db:
        return db.evaluations(run["id"])
