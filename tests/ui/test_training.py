"""Train and export through the wizard with the real trainer process: the whole wizard on the bundled
default model and the demo data once, the rest on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from app import operations as ops
from app.supervisor import Outcome
from core import other_apps
from ui import run_end_notice


def to_train_page(wizard, advance, qtbot, max_steps: int):
    advance(wizard)
    plan_page = advance(wizard)
    qtbot.waitUntil(plan_page.isComplete, timeout=60000)
    plan_page.max_steps.setValue(max_steps)
    plan_page.replan()
    qtbot.waitUntil(lambda: plan_page.isComplete() and wizard.session.bundle.plan.total_steps == max_steps,
                    timeout=60000)
    return advance(wizard)


def test_the_whole_wizard_on_the_default_model_and_demo_data(make_wizard, advance, qtbot, monkeypatch, tmp_path,
                                                             ollama_here):
    wizard = make_wizard()  # what a person gets on first start: the bundled model and the demo data
    assert wizard.model_page.model_edit.text() == "default"
    wizard.plan_page.name_edit.setText("  first  try ")  # (typed on the plan page before Next)
    page = to_train_page(wizard, advance, qtbot, max_steps=3)
    assert page is wizard.train_page and not page.isComplete()
    page.start_button.click()
    qtbot.waitUntil(lambda: page.running, timeout=60000)
    assert not wizard.button(QWizard.BackButton).isEnabled()  # no leaving mid-run
    qtbot.waitUntil(lambda: wizard.session.outcome is not None, timeout=240000)
    outcome = wizard.session.outcome
    assert outcome.status == "done", f"{outcome}\n{page.log.toPlainText()}\n{page.error.details.toPlainText()}"
    assert page.progress.value() == page.progress.maximum() == 3
    assert [s for s, _ in page.loss_chart.points] == [1, 2, 3]
    assert [s for s, _ in page.lr_chart.points] == [s for s, _ in page.speed_chart.points] == [1, 2, 3]
    assert all(v > 0 for _, v in page.speed_chart.points) and page.rate_charts.isVisible()
    assert "Checkpoint saved at step 3." in page.log.toPlainText()
    assert page.isComplete() and wizard.button(QWizard.BackButton).isEnabled()
    assert ops.get_run("first try")["id"] == wizard.session.run_id  # named as typed, its blanks folded

    export = advance(wizard)
    assert export is wizard.export_page
    export.adapter_button.click()
    qtbot.waitUntil(lambda: export.exported is not None, timeout=60000)
    assert export.exported == Path(export.folder_edit.text()) / f"{wizard.session.run_id}-adapter"
    assert (export.exported / "adapter_config.json").is_file()
    assert not export.show_button.isHidden() and not export.error.message
    assert export.lmstudio_button.isHidden()  # not a GGUF (and no LM Studio here yet)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".lmstudio").mkdir(parents=True)  # LM Studio is installed
    export.merged_button.click()
    qtbot.waitUntil(lambda: export.exported.name.endswith("-safetensors"), timeout=90000)
    assert (export.exported / "config.json").is_file() and list(export.exported.glob("*.safetensors"))
    export.quant_combo.setCurrentIndex(export.quant_combo.findData("q8_0"))  # the type picked is the one written
    export.gguf_button.click()
    qtbot.waitUntil(lambda: export.exported.name.endswith("-gguf-q8_0"), timeout=180000)
    assert [p.name.endswith(".q8_0.gguf") for p in export.exported.glob("*.gguf") if "lora" not in p.name] == [True]
    assert (export.exported / "Modelfile").is_file() and "Verified:" in export.result_label.text()
    assert f"Model card: {export.exported / 'README.md'}" in export.result_label.text()
    export.lmstudio_button.click()  # the GGUF where LM Studio lists it
    placed = list((tmp_path / "home" / ".lmstudio" / "models" / "tuneforge" / export.exported.name).glob("*.gguf"))
    assert len(placed) == 1 and "LM Studio lists it now" in export.result_label.text()
    assert export.lmstudio_button.isHidden() and not export.error.message
    # Ollama is installed too (tests/core/ollama_program.py plays it): the GGUF goes to it under the name offered
    assert not export.ollama_button.isHidden() and export.ollama_name.text() == "first-try:q8_0"
    export.ollama_name.setText("my.crew/pirate")  # a name Ollama refuses: one sentence, nothing started
    export.ollama_button.click()
    assert "no '.' in a namespace" in export.error.message and not export.busy("ollama")
    export.ollama_name.setText("first-try:q8_0")
    export.ollama_button.click()
    qtbot.waitUntil(lambda: export.ollama_button.isHidden(), timeout=60000)
    assert "Ollama has it now: ollama run first-try:q8_0" in export.result_label.text() and not export.error.message
    assert other_apps.ollama_model("first-try:q8_0").gguf.read_bytes() == placed[0].read_bytes()
    qtbot.keyClick(export.prompt_edit, Qt.Key_Return)  # asks, and does not close the window
    assert wizard.isVisible() and export.busy("ask")
    qtbot.waitUntil(lambda: bool(export.answer.toPlainText()), timeout=90000)
    assert not export.ask_error.message


def test_stop_ends_a_long_run_with_a_checkpoint_and_the_person_away_is_told(make_wizard, advance, qtbot,
                                                                          tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    page = to_train_page(wizard, advance, qtbot, max_steps=200)
    told = []
    page.told.connect(lambda title, text: told.append((title, text)))
    page.start_button.click()
    qtbot.waitUntil(lambda: bool(page.loss_chart.points), timeout=120000)  # the first step event arrived
    assert page.stop_button.isEnabled()
    page.stop_button.click()
    wizard.showMinimized()  # the person went to do something else
    qtbot.waitUntil(lambda: wizard.session.outcome is not None, timeout=60000)
    assert wizard.session.outcome.status == "stopped", page.log.toPlainText()
    assert page.progress.value() < 200
    assert "Stop requested." in page.log.toPlainText()
    assert page.isComplete() and not page.stop_button.isEnabled()
    run = ops.get_run(wizard.session.run_id)  # told how it ended, its last loss as the history has it
    assert told == [("Tuneforge: run stopped", f"{run['id']}: {wizard.session.outcome.text}. Training loss "
                                                f"{run['final_loss']:.4f} at the end.")]


@pytest.mark.parametrize("where, wanted, told", [("watching", True, False), ("away", False, False),
                                                 ("away", True, True), ("closed", True, False)])
def test_a_run_s_end_is_told_only_to_a_person_looking_elsewhere_who_wants_it(make_wizard, advance, qtbot,
                                                                            tiny_model_dir, where, wanted, told):
    """Not to one watching the window, nor to one who closed it (closing stops the run), nor when switched off."""
    from app import user_settings

    user_settings.save(user_settings.UserSettings(tell_when_done=wanted))
    wizard = make_wizard(model=str(tiny_model_dir))
    page = to_train_page(wizard, advance, qtbot, max_steps=10)
    {"watching": wizard.activateWindow, "away": wizard.showMinimized, "closed": wizard.hide}[where]()
    qtbot.waitUntil(lambda: run_end_notice.watching(wizard) == (where == "watching"))
    said = []
    page.told.connect(lambda title, text: said.append(text))
    page.session.run_id = "20260101-000000-gone"  # (not in the history: told by its id)
    page._on_finished(Outcome("failed", "the trainer failed at step 2: out of memory", 1))
    assert said == (["20260101-000000-gone: the trainer failed at step 2: out of memory."] if told else [])


def test_closing_the_window_stops_the_run(make_wizard, advance, qtbot, tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    page = to_train_page(wizard, advance, qtbot, max_steps=200)
    page.start_button.click()
    qtbot.waitUntil(lambda: bool(page.loss_chart.points), timeout=120000)
    wizard.close()
    assert page.job.wait(60).status == "stopped"
    assert (Path(page.job.run_dir) / "result").is_dir()


def test_a_run_cut_to_its_time_limit_is_drawn_to_its_new_end_and_the_title_says_how_far(make_wizard, advance, qtbot,
                                                                                       tiny_model_dir):
    """The trainer's events as it cuts itself to its time limit (core.trainer.cut_to_limit): the progress bar and
    the charts end where the run now does."""
    page = to_train_page(make_wizard(model=str(tiny_model_dir)), advance, qtbot, max_steps=100)
    page._on_event({"event": "start", "total_steps": 100, "start_step": 0, "device": "cpu"})
    page._on_event({"event": "step", "step": 3, "total_steps": 100, "loss": 2.5, "lr": 1e-5, "eta_s": 500})
    assert page.progress.maximum() == 100 and {c.total_steps for c in page.charts} == {100}
    page._on_event({"event": "status", "text": "At its pace, 100 steps would pass the time limit (10 min): ..."})
    assert page.stat["prefers"].isHidden()  # not a preference run
    page._on_event({"event": "step", "step": 4, "total_steps": 40, "loss": 2.4, "lr": 1e-4, "eta_s": 300,
                    "prefers": 0.75})  # (as ORPO runs have it)
    assert not page.stat["prefers"].isHidden() and page.stat["prefers"].text() == "75%"
    assert (page.progress.value(), page.progress.maximum()) == (4, 40) and {c.total_steps for c in page.charts} == {40}
    own = page.window().windowTitle().split(" — ", 1)[1]  # the progress shows ahead of the window's own title
    assert page.window().windowTitle() == f"10% · 5 min left — {own}" and own == "Tuneforge — new fine-tune"
    page._on_event({"event": "paused", "text": "Paused at step 4"})
    assert page.window().windowTitle() == f"Paused at 10% — {own}"
    page._on_finished(Outcome("stopped", "stopped by you at step 4", 3))
    assert page.window().windowTitle() == own
