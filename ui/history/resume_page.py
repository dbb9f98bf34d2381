"""The wizard's train page pointed at a run from the history: its recorded curve and events, and Resume.

Everything live (events, the chart, Stop, the outcome, closing the window stops the run politely) is
the train page's own; only how the run starts differs: from its last checkpoint instead of a new plan.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Slot

from app import operations as ops
from app.history_service import RunDetail
from ui.pages.base import Session
from ui.pages.train_page import TrainPage


class ResumePage(TrainPage):
    def __init__(self, session: Session, parent=None):
        super().__init__(session, parent)
        self.start_button.setText("Resume training")
        self.start_button.setToolTip("Continue from the run's last checkpoint, in its own process.")

    def show_run(self, detail: RunDetail) -> None:
        """Show what the history holds for the run (not once it trained here: the live view wins)."""
        s = detail.summary
        if self.running or (self.job is not None and self.session.run_id == s.id):
            return
        self.job, self.session.run_id, self.session.outcome = None, s.id, None
        self._reset_view()
        self.rate_charts.hide()  # the history keeps the loss; speed and learning rate show once it trains here
        total = max(1, s.total_steps, s.steps_done)
        self.progress.setRange(0, total)
        self.progress.setValue(min(s.steps_done, total))
        self.loss_chart.set_total(total)
        for step, loss in detail.train:
            self.loss_chart.add_point(step, loss)
        for step, loss in detail.eval:
            self.loss_chart.add_eval(step, loss)
        if s.final_loss is not None:
            self.stat["loss"].setText(f"{s.final_loss:.4f}")
        if detail.preferred:  # a preference run: its last step's share of pairs preferred, as it was shown live
            self.name_prefers(detail.config.get("objective") or "")
            self.show_prefers(detail.preferred[-1][1])
        for e in detail.events:
            self.append(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e['at']))}  {e['kind']}: {e['text']}")
        if s.status == "running" and self.job is None:  # training in the background, from an earlier window
            self.summary.setText(f"Run <b>{s.id}</b> is training in the background.")
            self.attach(s.id)
            return
        last = detail.checkpoints[-1]["step"] if detail.checkpoints else None
        if detail.resumable:
            said = f"Resume continues from the checkpoint at step {last}."
        elif s.status == "running":
            said = "It is training now."
        elif s.status == "done":
            said = "It finished; there is nothing to resume."
        else:
            said = "It has no checkpoint to resume from."
        self.summary.setText(f"Run <b>{s.id}</b> {s.status} at step {s.steps_done} of {s.total_steps}. {said}")
        self.start_button.setText("Resume training")
        self.start_button.setEnabled(detail.resumable)

    def start(self) -> None:
        if not self.session.run_id or self.running:
            return
        self.start_button.setEnabled(False)
        self.error.clear()
        self.session.outcome = None
        self.completeChanged.emit()
        self.events = self.listen()
        try:
            self.job = ops.start_run(self.session.run_id, resume=True, on_event=self.events.on_event,
                                     on_finished=self.events.on_finished)
        except Exception as e:  # noqa: BLE001  shown in the page like any other error
            self._not_started(e)
            return
        self.append("Resuming from the last checkpoint.")
        self.status.start("Starting the trainer…")
        self.stop_button.setEnabled(True)
        self.running_changed.emit(True)

    @Slot(dict)
    def _on_event(self, e: dict) -> None:
        if e.get("event") == "start":  # steps after the checkpoint are trained again: drop their old points
            start = int(e.get("start_step") or 0)
            for chart in self.charts:
                chart.points = [p for p in chart.points if p[0] <= start]
            self.loss_chart.eval_points = [p for p in self.loss_chart.eval_points if p[0] <= start]
        super()._on_event(e)
