"""The export page's "Try it" box asks the base and the tuned model the same prompt, each in its own pane."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import answerers
from app import operations as ops
from core.planner import Wishes
from tests.conftest import DEMO
from ui import tasks
from ui.pages.base import Session
from ui.pages.export_page import ExportPage


@pytest.fixture
def finished_run(home, tiny_model_dir):
    """A real two-step run of the tiny model, made and trained through the app, as the train page does."""
    bundle = ops.make_plan(str(tiny_model_dir), str(DEMO), Wishes(max_steps=2))
    cfg = ops.create_run(bundle)
    job = ops.start_run(cfg.run_id)
    outcome = job.wait(120)
    assert outcome is not None and outcome.status == "done", outcome
    return cfg.run_id, outcome


@pytest.fixture
def export_page(qtbot, finished_run):
    run_id, outcome = finished_run
    page = ExportPage(Session(run_id=run_id, outcome=outcome))
    qtbot.addWidget(page)
    page.initializePage()
    page.resize(900, 700)
    page.show()
    yield page
    page.shutdown()
    assert tasks.wait_idle(60000), "background work still running 60 s after the test"


def test_one_prompt_gets_two_answers_with_their_own_errors(qtbot, export_page):
    page = export_page
    assert page.answer is page.tuned_pane.text  # the tuned pane is the answer the wizard test waits for
    page.ask_button.click()
    assert page.busy("ask") and page.busy("ask-base") and not page.ask_button.isEnabled()
    assert page.base_pane.status.isVisible() and page.tuned_pane.status.isVisible()
    qtbot.waitUntil(lambda: bool(page.base_pane.text.toPlainText() and page.tuned_pane.text.toPlainText()),
                    timeout=60000)
    qtbot.waitUntil(page.ask_button.isEnabled, timeout=5000)
    assert not page.base_pane.error.message and not page.tuned_pane.error.message
    assert page.base_pane.status.isHidden() and page.tuned_pane.status.isHidden()
    assert answerers.kept() == 2  # both stay loaded for the next question

    result = Path(ops.get_run(page.session.run_id)["run_dir"]) / "result"
    result.rename(result.with_name("result-moved"))  # the tuned model is gone; the base still answers
    page.ask_button.click()
    qtbot.waitUntil(page.ask_button.isEnabled, timeout=60000)
    assert "no saved result yet" in page.tuned_pane.error.message and not page.tuned_pane.text.toPlainText()
    assert page.base_pane.text.toPlainText() and not page.base_pane.error.message
    page.shutdown()
    assert tasks.wait_idle(60000) and answerers.kept() == 0  # closing the page lets them go
