"""Train more: a finished run's export page (here in History) starts a new fine-tune that goes on from its
weights, on its model (shown, not chosen) and with its strategy, which trains as a run that records where it
started (app.operations.going_on)."""

from __future__ import annotations

import pytest

from app import history_service
from app import operations as ops
from core.planner import Wishes
from tests.conftest import DEMO
from tests.ui.test_training import to_train_page
from ui import tasks
from ui.history.run_detail import figures_html
from ui.main_window import HISTORY, MainWindow


@pytest.fixture
def finished_lora_run(home, tiny_model_dir):
    bundle = ops.make_plan(str(tiny_model_dir), str(DEMO), Wishes(max_steps=3, strategy="lora"))
    cfg = ops.create_run(bundle, strategy_options={**bundle.plan.options, "r": 4})  # a setting the new run keeps
    outcome = ops.start_run(cfg.run_id).wait(120)
    assert outcome is not None and outcome.status == "done", outcome
    return cfg.run_id


def test_train_more_goes_on_from_a_run_in_a_new_fine_tune(qtbot, advance, finished_lora_run, tmp_path):
    first = finished_lora_run
    window = MainWindow(model=str(tmp_path / "no-model"), data=str(DEMO))
    qtbot.addWidget(window)
    window.show()
    window.show_page(HISTORY)
    window.history.select([first])
    qtbot.waitUntil(lambda: window.history.detail_view is not None, timeout=10000)
    old = window.wizard
    window.history.detail_view.export_page.train_more_button.click()

    wizard = window.wizard
    assert wizard is not old and window.pages.currentWidget() is window.wizard_slot
    going = wizard.session.going_on
    assert (going.continues["run"], going.strategy, going.options["r"]) == (first, "lora", 4)
    model_page = wizard.model_page
    assert not model_page.model_edit.isEnabled() and not model_page.models.isEnabled()
    assert model_page.kept_note.text() == f"Goes on from the weights of run {first} at step 3, so it trains that " \
                                          "run's model."
    assert model_page.model_edit.text() == ops.get_run(first)["model_path"]
    qtbot.waitUntil(lambda: model_page.models.topLevelItemCount() > 0, timeout=30000)  # listed, still not offered
    assert not model_page.refresh_button.isEnabled()

    page = to_train_page(wizard, advance, qtbot, max_steps=2)
    plan = wizard.plan_page
    assert not plan.going_label.isHidden() and f"run {first}" in plan.going_label.text()
    assert (wizard.session.bundle.plan.strategy, wizard.session.bundle.plan.options["r"]) == ("lora", 4)
    page.start_button.click()
    qtbot.waitUntil(lambda: wizard.session.outcome is not None, timeout=120000)
    assert wizard.session.outcome.status == "done", page.log.toPlainText()
    assert f"Starting from the weights of run {first} at step 3" in page.log.toPlainText()
    config = ops.get_run(wizard.session.run_id)["config"]
    assert config["continues"]["run"] == first and config["start_from"].endswith(f"{first}/result")
    shown = figures_html(history_service.run_detail(wizard.session.run_id))  # History says where it started
    assert f"Started from</td><td style='padding-right:18px'><b>the weights of run {first} at step 3" in shown
    window.close()
    assert tasks.wait_idle(60000)
