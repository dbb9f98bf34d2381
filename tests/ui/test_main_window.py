"""The main window: navigation, the wizard embedded in it, and closing it while a run trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWizard

from tests.app.history_runs import FIRST, make_two_runs
from ui import tasks
from app.supervisor import AttachedJob
from ui.main_window import CANCEL, HISTORY, KEEP, NAV, NEW, STOP, MainWindow
from ui.wizard import NewFineTuneWizard


@pytest.fixture
def window(qtbot, home, tmp_path):
    """The main window on a model path that does not exist (so nothing is converted in the background)."""
    make_two_runs(home)
    made = []

    def make(model: str = str(tmp_path / "no-model")) -> MainWindow:
        w = MainWindow(model=model)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
        job = w.wizard.train_page.job
        if job is not None:
            assert job.wait(60) is not None
    assert tasks.wait_idle(60000)


def test_navigation_shows_each_page_by_mouse_and_keyboard(window, qtbot):
    w = window()
    assert [w.nav.item(i).text() for i in range(w.nav.count())] == NAV
    assert w.nav.currentRow() == NEW and w.pages.currentWidget() is w.wizard_slot
    assert isinstance(w.wizard, NewFineTuneWizard) and not w.wizard.isWindow() and w.wizard.isVisible()
    qtbot.waitUntil(lambda: bool(w.wizard.model_page.error.message), timeout=10000)  # its pages work embedded
    assert "no-model" in w.wizard.model_page.error.message

    w.nav.setFocus()
    qtbot.keyClick(w.nav, Qt.Key_Down)
    assert w.pages.currentWidget() is w.history
    qtbot.waitUntil(lambda: w.history.table.topLevelItemCount() == 2, timeout=10000)  # read when shown
    qtbot.keyClick(w.nav, Qt.Key_Down)
    assert w.pages.currentWidget() is w.settings
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=5000)
    qtbot.keyClick(w.settings.theme_combo, Qt.Key_1, Qt.ControlModifier)  # Ctrl+1 from anywhere
    assert w.nav.currentRow() == NEW and w.pages.currentWidget() is w.wizard_slot
    qtbot.keyClick(w.wizard, Qt.Key_2, Qt.ControlModifier)
    assert w.pages.currentWidget() is w.history

    settings = w.settings  # Tab walks the settings in reading order
    chain, widget = [], settings.data_folder.edit
    for _ in range(7):
        chain.append(widget)
        widget = widget.nextInFocusChain()
        while not widget.focusPolicy() & Qt.TabFocus:
            widget = widget.nextInFocusChain()
    assert chain == [settings.data_folder.edit, settings.data_folder.button, settings.export_folder.edit,
                     settings.export_folder.button, settings.theme_combo, settings.tell_box, settings.save_button]


def test_the_history_opens_a_run_from_the_window(window, qtbot):
    w = window()
    w.show_page(HISTORY)
    w.history.select([FIRST])
    qtbot.waitUntil(lambda: w.history.detail_view is not None, timeout=10000)
    assert w.history.detail_view.run_id == FIRST


def test_cancel_in_the_embedded_wizard_starts_a_fresh_one_and_shows_its_run(window, qtbot):
    w = window()
    old = w.wizard
    old.button(QWizard.CancelButton).click()
    assert w.wizard is not old and w.wizard.parent() is w.wizard_slot and not w.wizard.isWindow()
    assert w.wizard.isVisible() and w.pages.currentWidget() is w.wizard_slot
    assert w.wizard.currentPage() is w.wizard.model_page

    w.wizard.session.run_id = FIRST  # a wizard that made a run ends on it, shown in History
    w.wizard.button(QWizard.CancelButton).click()
    assert w.pages.currentWidget() is w.history
    qtbot.waitUntil(lambda: w.history.detail_view is not None and w.history.detail_view.run_id == FIRST,
                    timeout=10000)
    assert w.history.table.selected_ids() == [FIRST]


def test_escape_does_not_throw_the_embedded_wizard_away(window, qtbot):
    w = window()
    wizard = w.wizard
    qtbot.keyClick(wizard, Qt.Key_Escape)
    assert w.wizard is wizard and wizard.isVisible()


def test_closing_while_a_run_trains_asks_and_a_window_opened_later_reattaches(window, qtbot, advance, monkeypatch,
                                                                            default_model_dir, tiny_model_dir):
    w = window(model=str(tiny_model_dir))
    wizard = w.wizard
    advance(wizard)
    plan_page = advance(wizard)
    qtbot.waitUntil(plan_page.isComplete, timeout=20000)
    plan_page.max_steps.setValue(2000)
    plan_page.replan()
    qtbot.waitUntil(lambda: plan_page.isComplete() and wizard.session.bundle.plan.total_steps == 2000, timeout=20000)
    page = advance(wizard)
    page.start_button.click()
    qtbot.waitUntil(lambda: bool(page.loss_chart.points), timeout=120000)
    assert w.running and page.device_line.text().startswith("Device now: CPU")  # the dashboard's device line

    box = w.keep_running_box()  # the question, as asked (not opened: the test answers it below)
    assert sorted(b.objectName() for b in box.buttons()) == sorted([KEEP, STOP, CANCEL])
    assert box.defaultButton().objectName() == CANCEL
    answers = [CANCEL, KEEP]
    monkeypatch.setattr(MainWindow, "ask_keep_running", lambda self: answers.pop(0) if answers else STOP)
    w.close()
    assert w.isVisible() and page.running  # Cancel: nothing happened
    w.close()
    assert not w.isVisible() and page.job.running  # kept: the trainer goes on without the window

    later = window()  # the app opened again
    qtbot.waitUntil(lambda: later.history.detail_view is not None and later.history.detail_view.running, timeout=20000)
    assert later.pages.currentWidget() is later.history
    live = later.history.detail_view.train_page
    assert isinstance(live.job, AttachedJob) and live.session.run_id == wizard.session.run_id
    qtbot.waitUntil(lambda: len(live.loss_chart.points) >= len(page.loss_chart.points) > 0, timeout=20000)

    live.pause_button.click()  # pause, try the model as it is now, continue
    qtbot.waitUntil(lambda: live.try_box.isVisible(), timeout=60000)
    assert live.pause_button.text() == "Continue"
    live.try_box.prompt_edit.setText("Say hello.")
    qtbot.keyClick(live.try_box.prompt_edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: len(live.try_box.conversation.turns) == 2, timeout=60000)
    live.try_box.prompt_edit.setText("And once more?")  # a follow-up: sent with the turn before it
    qtbot.keyClick(live.try_box.prompt_edit, Qt.Key_Return)
    qtbot.waitUntil(lambda: len(live.try_box.conversation.turns) == 4, timeout=60000)
    answers = [e for e in live.job.events if e["event"] == "answer"]
    assert [a["seen_turns"] for a in answers[-2:]] == [0, 2]
    shown = live.try_box.pane.text.toPlainText()
    assert shown.startswith("You: Say hello.\n") and "\n\nYou: And once more?\n" in shown
    steps = len(live.loss_chart.points)
    live.pause_button.click()
    qtbot.waitUntil(lambda: len(live.loss_chart.points) > steps, timeout=60000)
    assert live.try_box.isHidden() and live.pause_button.text() == "Pause"

    live.stop_button.click()
    qtbot.waitUntil(lambda: live.session.outcome is not None, timeout=60000)
    assert live.session.outcome.status == "stopped", live.log.toPlainText()
    assert page.job.wait(60).status == "stopped"
    assert (Path(page.job.run_dir) / "result").is_dir()
