"""The wizard's first three pages against the real app functions (tiny model, demo data)."""

from __future__ import annotations

import re

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app import paths
from tests.conftest import REPO
from ui.wizard import TITLE


def test_opens_with_the_default_model_and_demo_data(make_wizard, qtbot):
    wizard = make_wizard()
    assert wizard.windowTitle() == TITLE
    assert [wizard.page(i).title() for i in wizard.pageIds()] == ["Model", "Data", "Plan", "Train", "Export"]
    assert wizard.currentPage() is wizard.model_page
    assert wizard.model_page.model_edit.text() == "default"
    assert wizard.session.data_path == str(paths.DEMO_DATA)
    assert wizard.data_page.drop_zone.title.text() == "pirate_chat.jsonl"
    qtbot.waitUntil(wizard.model_page.isComplete, timeout=10000)  # resolved in the background
    assert wizard.model_page.name_label.text() == "SmolLM2-135M-Instruct"
    assert "parameters" in wizard.model_page.shape_label.text()


def test_a_wrong_model_path_is_a_sentence_in_the_page(make_wizard, qtbot, tmp_path):
    wizard = make_wizard()
    page = wizard.model_page
    page.model_edit.setText(str(tmp_path / "no-such-model"))
    page.resolve()
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=10000)
    assert "no-such-model" in page.error.message and "nothing is downloaded" in page.error.message
    assert not page.isComplete()


def test_data_page_inspects_the_demo_data(make_wizard, advance, qtbot, tiny_model_dir):
    wizard = make_wizard()
    wizard.model_page.model_edit.setText(str(tiny_model_dir))
    wizard.model_page.resolve()
    page = advance(wizard)
    assert page is wizard.data_page
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert page.format_label.text().startswith("messages")
    assert page.rows_label.text() == "202 usable"
    assert page.problems_label.text() == "none"
    assert "median" in page.tokens_label.text()
    assert "<|im_start|>assistant" in page.preview.toPlainText()
    assert sum(page.histogram.counts) == 202 and len(page.histogram.edges) == len(page.histogram.counts) + 1
    # The trained part is highlighted: the assistant's answer with its end-of-turn token, not the question.
    first = wizard.session.data_report["preview_rows"][0]["segments"]
    trained = "".join(seg["text"] for seg in first if seg["trained"])
    assert trained.startswith("Arr") and trained.rstrip().endswith("<|im_end|>") and "user" not in trained
    assert re.search(r'background-color:#d9f2d9;">Arr', page.preview.toHtml())


def drop(widget, path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos.toPoint(), Qt.CopyAction,  # a QPoint for the enter event, as Qt declares it
                            mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    QApplication.sendEvent(widget, QDropEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier))


def test_dropping_a_broken_dataset_shows_the_sentence_not_a_dialog(make_wizard, advance, qtbot, tiny_model_dir,
                                                                    tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"messages": [\nnot json at all\n', encoding="utf-8")
    wizard = make_wizard(model=str(tiny_model_dir))
    page = advance(wizard)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    drop(page.drop_zone, broken)
    assert wizard.session.data_path == str(broken)
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=10000)
    assert "broken.jsonl:1: broken JSON" in page.error.message
    assert page.error.details_button.isHidden()  # a known problem: a sentence, no traceback
    assert not page.isComplete() and not wizard.button(wizard.WizardButton.NextButton).isEnabled()


def test_plan_page_shows_reasons_memory_and_a_step_limit(make_wizard, advance, qtbot, tiny_model_dir):
    wizard = make_wizard(model=str(tiny_model_dir))
    advance(wizard)
    page = advance(wizard)
    assert page is wizard.plan_page
    qtbot.waitUntil(page.isComplete, timeout=20000)
    plan = wizard.session.bundle.plan
    assert page.labels["strategy"].text() == "lora"
    assert page.labels["settings"].text() == "r 16, alpha 32, dropout 0.0, rslora off, targets auto, " \
                                             "activations on host off, optimizer adamw"  # (experts: none here)
    tip = page.labels["settings"].toolTip()
    assert "rslora (rslora=False on the command line): Rank-stabilized LoRA" in tip and len(tip.splitlines()) == 6
    assert "Sequence length" in page.reasons.text() and "full" in page.rejected.text()
    assert page.memory_bar.terms == plan.memory and page.memory_bar.limit == plan.memory_limit > 0
    assert page.memory_bar.height() > 26
    page.max_steps.setValue(7)
    assert not page.isComplete()  # the old plan is gone until the new one arrives
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert wizard.session.bundle.plan.total_steps == 7
    assert page.labels["steps"].text().startswith("7")

    page.replan()  # planning can be cancelled, and tried again
    assert page.status.button.isVisible() and page.status.button.text() == "Cancel"
    page.status.button.click()
    assert not page.busy("plan") and not page.isComplete() and page.status.label.text() == "Cancelled."
    qtbot.wait(300)  # a cancelled plan never lands, even if its work was nearly done
    assert wizard.session.bundle is None
    page.status.button.click()
    qtbot.waitUntil(page.isComplete, timeout=20000)


def test_preference_pairs_are_planned_for_orpo_and_the_page_says_so(make_wizard, advance, qtbot, tiny_model_dir):
    pairs = REPO / "resources" / "demo" / "pirate_pairs.jsonl"
    wizard = make_wizard(model=str(tiny_model_dir), data=str(pairs))
    advance(wizard)
    page = advance(wizard)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert page.labels["strategy"].text() == "lora, preference tuning (ORPO)"
    assert page.labels["batch"].text().startswith(f"{wizard.session.bundle.plan.micro_batch} pairs × ")
    assert "Objective: ORPO, as the rows are preference pairs" in page.reasons.text()
    assert wizard.session.bundle.plan.objective == "orpo"


def test_run_app_shows_the_wizard_and_returns_when_it_closes(home, default_model_dir, qapp):
    from PySide6.QtCore import QTimer

    from ui.app import run_app
    from ui.main_window import MainWindow
    from ui.wizard import NewFineTuneWizard

    seen = []

    def close_it():  # the wizard lives in the main window's "New fine-tune" page
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        seen.extend(w.wizard for w in windows if isinstance(w.wizard, NewFineTuneWizard) and w.wizard.isVisible())
        for w in windows:
            w.close()

    QTimer.singleShot(300, close_it)
    assert run_app(["tuneforge"]) == 0
    assert len(seen) == 1
