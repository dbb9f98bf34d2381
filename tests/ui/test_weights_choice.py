"""The export page offers a run's two kept weights (its lowest validation loss and its last step) and tries,
measures and exports the chosen ones (a run that kept only its last step shows no choice: tested in
test_try_side_by_side)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from app import history_service
from app import evaluations
from app import operations as ops
from app.supervisor import Outcome
from ui import tasks
from ui.history.run_detail import figures_html, lowest_validation
from ui.pages.base import Session
from ui.pages.export_page import ExportPage

PROMPT = "code 3"


def test_the_export_page_uses_the_weights_chosen(qtbot, overfit_run, monkeypatch, tmp_path):
    """On the session's run that over-fits (tests/conftest.py's `overfit_run`)."""
    monkeypatch.setenv("TUNEFORGE_HOME", str(overfit_run.home))  # the run's own home
    run_id, data = overfit_run.run_id, overfit_run.data
    done = overfit_run.events[-1]
    page = ExportPage(Session(run_id=run_id, outcome=Outcome(done["status"], done["text"], 0)))
    qtbot.addWidget(page)
    page.initializePage()
    page.show()
    combo = page.weights.combo
    assert page.weights.isVisible() and combo.count() == 2
    assert combo.currentData() == "best" and combo.currentText().startswith("Lowest validation loss: step ")
    assert combo.itemText(1).startswith("Last step: ") and "(validation not measured)" not in combo.itemText(1)
    expected = {w: ops.chat(PROMPT, run=run_id, weights=w) for w in ("best", "last")}  # as Try it asks
    assert expected["best"] != expected["last"]  # (the two weights answer this prompt differently)

    for which in ("best", "last"):
        combo.setCurrentIndex(combo.findData(which))  # a new choice: a new conversation
        assert page.conversations["ask"].turns == [] and not page.tuned_pane.text.toPlainText()
        page.prompt_edit.setText(PROMPT)
        page.ask_button.click()
        assert not page.weights.isEnabled()  # no change of weights while they answer
        qtbot.waitUntil(page.ask_button.isEnabled, timeout=60000)
        answer = page.conversations["ask"].turns[-1]["content"]
        assert answer == expected[which] and page.weights.isEnabled()

    combo.setCurrentIndex(combo.findData("best"))
    page.folder_edit.setText(str(tmp_path / "exports"))
    page.merged_button.click()
    qtbot.waitUntil(lambda: page.exported is not None, timeout=120000)
    assert page.exported.name == f"{run_id}-safetensors-best"
    best = Path(ops.get_run(run_id)["run_dir"]) / "best" / "model.safetensors"
    name = "model.layers.1.self_attn.q_proj.weight"
    exported = load_file(str(page.exported / "model.safetensors"))[name]
    assert exported.equal(load_file(str(best))[name].to(exported.dtype))

    box = page.evaluate_box
    box.file_edit.setText(str(data))
    box.measure_button.click()
    qtbot.waitUntil(box.measure_button.isEnabled, timeout=120000)
    assert "(the weights of step " in box.summary.text(), box.summary.text()
    kept = evaluations.run_evaluations(run_id)[-1]["report"]
    assert kept["weights"] == "best" and json.dumps(kept)
    page.shutdown()
    assert tasks.wait_idle(60000)

    detail = history_service.run_detail(run_id)  # History says where the lowest was and that its weights are kept
    step, loss = min(detail.eval, key=lambda point: point[1])
    assert lowest_validation(detail) == f"{loss:.4f} at step {step}, its weights kept"
    assert "Lowest validation" in figures_html(detail) and step < detail.summary.steps_done
    train_page_nudges(qtbot, run_id)



def train_page_nudges(qtbot, run_id: str) -> None:
    """The train page says when the validation loss stops coming down: the run's own events, replayed into a
    train page as attaching to a run does."""
    from ui.pages.train_page import NUDGE_AFTER, TrainPage

    page = TrainPage(Session())
    qtbot.addWidget(page)
    page._reset_view()
    evals = []
    lines = (Path(ops.get_run(run_id)["run_dir"]) / "events.jsonl").read_text(encoding="utf-8").splitlines()
    for e in map(json.loads, lines):
        page._on_event(e)
        if e["event"] == "eval":
            evals.append((e["step"], e["loss"]))
            shown = not page.error.isHidden()
            lowest = min(evals, key=lambda point: point[1])
            after = len(evals) - 1 - evals.index(lowest)  # checks since the lowest
            assert shown == (after >= NUDGE_AFTER), (evals, page.error.text.text())
    step, loss = lowest
    assert page.error.text.text().startswith(f"The validation loss has not come back down to its lowest "
                                             f"({loss:.4f} at step {step}) for {NUDGE_AFTER} checks")
