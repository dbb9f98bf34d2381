"""The train page on a re-plan, one row per cause: the trainer's error and replan events (core/trainer.py's
`go_on`, the shapes tests/app/test_replan.py checks on a real run) become a status line saying why the run goes
on, and the log keeps both sentences."""

from __future__ import annotations

import pytest

from ui.pages.base import Session
from ui.pages.train_page import TrainPage

# cause → (the error event's text, the replan event's text, what the status line says)
CAUSES = {
    "oom": ("ran out of memory at step 3",
            "Re-planned after running out of memory at step 3: the plan predicted 1.00 GiB but the run needed more.",
            "Re-planned after running out of memory; continuing…"),
    "kernel": ("our rmsnorm kernel failed at step 0 (OutOfResources: out of resource: shared memory)",
               "Re-planned at step 0: our rmsnorm kernel failed on this GPU, so the run goes on without it.",
               "Re-planned without the kernel that failed; continuing…"),
}


@pytest.mark.parametrize("cause", list(CAUSES))
def test_a_re_plan_says_why_and_the_run_goes_on(qtbot, cause):
    error, replan, status = CAUSES[cause]
    page = TrainPage(Session())
    qtbot.addWidget(page)
    page._on_event({"event": "error", "kind": cause, "text": error, "step": 0})
    page._on_event({"event": "replan", "text": replan, "after_step": 0, "cause": cause})
    assert page.status.label.text() == status and page.status.busy  # the run goes on: still busy
    log = page.log.toPlainText()
    assert f"Error: {error}" in log and f"{replan} Continuing from the last checkpoint." in log
