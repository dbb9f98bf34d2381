"""Step 4: train. Starts the trainer process through the app and follows its events live."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from app import operations as ops
from core import device_monitor, objectives
from core.errors import KnownError
from core.words import counted, duration
from ui import theme
from ui.charts import PALETTE, LossChart, StepChart
from ui.pages.base import BusyLine, Page, Session
from ui.pages.paused_try import PausedTry
from ui.pages.trainer_events import TrainerEvents, log_tail, sentence
from ui.run_end_notice import tell

DEVICE_POLL_MS = 1500
NUDGE_AFTER = 2  # validation checks in a row above the lowest before the page says the model may be memorizing


class TrainPage(Page):
    running_changed = Signal(bool)
    told = Signal(str, str)  # (title, text): the person was told the run ended while looking elsewhere
    lowest: tuple[int, float] | None = None  # the lowest validation loss so far: (step, loss)
    since_lowest = 0  # validation checks since it

    def __init__(self, session: Session, parent=None):
        super().__init__(session, "Train", "The training runs in its own process; pause it to try the model, "
                         "or stop it at any time and keep what it learned so far.", parent)
        self.job = None
        self.device: tuple[str, int | None] = ("cpu", None)  # what the device line samples
        self.disk_written = 0  # bytes offloading wrote to NVMe this run (drive wear), from the step events
        self.events: TrainerEvents | None = None
        self.summary = QLabel(wordWrap=True)
        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(False)
        self.pause_button = QPushButton("Pause", enabled=False, checkable=True)
        self.pause_button.setToolTip("Pause after the current step with the model kept loaded, to try it; "
                                     "press again to continue.")
        self.stop_button = QPushButton("Stop", enabled=False)
        self.stop_button.setToolTip("Stop after the current step; a checkpoint and the result are saved.")
        self.start_button.clicked.connect(self.start)
        self.pause_button.toggled.connect(self.pause)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.pause_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)

        self.progress = QProgressBar(minimum=0, maximum=1, value=0, format="%v / %m steps")
        self.stat = {key: QLabel("—") for key in ("loss", "eta", "speed", "memory", "prefers")}
        self.captions: dict[str, QLabel] = {}
        stats = QGridLayout()
        for col, (key, title) in enumerate((("loss", "Loss"), ("eta", "Time left"), ("speed", "Speed"),
                                            ("memory", "Memory"), ("prefers", "Chosen preferred"))):
            self.captions[key] = caption = theme.muted(QLabel(title))
            self.stat[key].setStyleSheet("font-size: 12pt; font-weight: 600;")
            stats.addWidget(caption, 0, col)
            stats.addWidget(self.stat[key], 1, col)
        self.share = objectives.share_words("")  # what a preference run's share is called (set at its start)
        self._show_prefers(False)
        self.device_line = theme.muted(QLabel())
        self.device_timer = QTimer(self, interval=DEVICE_POLL_MS)
        self.device_timer.timeout.connect(self.sample_device)
        self.try_box = PausedTry()
        self.try_box.hide()
        self.loss_chart = LossChart()
        self.lr_chart = StepChart("learning rate", "The learning rate appears here once training starts.",
                                  "{:.1e}", PALETTE[2])
        self.speed_chart = StepChart("tokens per second", "The speed appears here once training starts.",
                                     "{:,.0f}", PALETTE[4])
        self.rate_charts = QWidget()
        rates = QHBoxLayout(self.rate_charts)
        rates.setContentsMargins(0, 0, 0, 0)
        rates.addWidget(self.lr_chart)
        rates.addWidget(self.speed_chart)
        self.log = QPlainTextEdit(readOnly=True, maximumBlockCount=2000)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.log.setMinimumHeight(90)
        self.status = BusyLine()

        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(self.progress)
        layout.addLayout(stats)
        layout.addWidget(self.device_line)
        layout.addWidget(self.try_box)
        layout.addWidget(self.loss_chart, 3)
        layout.addWidget(self.rate_charts, 2)
        layout.addWidget(self.log, 2)

    def listen(self) -> TrainerEvents:
        """A fresh carrier of a job's events to this page (the old one, if any, is left to its job)."""
        events = TrainerEvents()
        events.event.connect(self._on_event)
        events.finished.connect(self._on_finished)
        return events

    @property
    def charts(self) -> list:
        return [self.loss_chart, self.lr_chart, self.speed_chart]

    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def initializePage(self) -> None:
        if self.running:
            return
        self.job, self.session.run_id, self.session.outcome = None, None, None
        self._reset_view()
        p, ref = self.session.bundle.plan, self.session.model_ref
        shown = objectives.label(p.objective)
        self.summary.setText(f"Fine-tune <b>{ref.label}</b> on <b>{Path(self.session.data_path).name}</b>: "
                             f"{counted(p.total_steps, 'step')} with {p.strategy}"
                             f"{f' ({shown})' if shown else ''} on {p.device}, "
                             f"about {duration(p.total_time_s)}.")
        self.start_button.setEnabled(True)

    def _watch_validation(self, e: dict) -> None:
        """Say, while it trains, when the validation loss has stopped coming down: the person may stop there,
        and loses nothing (the weights of the lowest point are kept)."""
        if e.get("lowest"):
            self.lowest, self.since_lowest = (int(e["step"]), float(e["loss"])), 0
            if getattr(self.error, "kind", None) == "info":
                self.error.clear()
            return
        self.since_lowest += 1
        if self.lowest and self.since_lowest == NUDGE_AFTER:
            step, loss = self.lowest
            self.error.show_message(f"The validation loss has not come back down to its lowest ({loss:.4f} at step "
                                    f"{step}) for {self.since_lowest} checks: the model may be memorizing its rows. "
                                    f"The weights of step {step} are kept, so stopping now loses nothing.",
                                    kind="info")

    def _reset_view(self) -> None:
        self.lowest, self.since_lowest = None, 0  # the lowest validation loss so far (step, loss); checks since
        self.error.clear()
        self.status.stop()
        self.progress.setRange(0, max(1, self.session.bundle.plan.total_steps if self.session.bundle else 1))
        self.progress.setValue(0)
        for label in self.stat.values():
            label.setText("—")
        self._show_prefers(False)
        for chart in self.charts:
            chart.clear()
        self.log.clear()
        self.device_line.clear()
        self.disk_written = 0
        self.try_box.hide()

    def start(self) -> None:
        self.start_button.setEnabled(False)
        self._reset_view()
        self.session.outcome = None
        self.completeChanged.emit()
        self.status.start("Creating the run…")
        bundle, going = self.session.bundle, self.session.going_on
        settings = going.run_settings() if going else {}  # the weights of the run it goes on from
        name = self.session.run_name
        self.run_task("create", lambda progress: ops.create_run(bundle, name=name, **settings), on_done=self._created,
                      on_error=self._not_started)

    def _created(self, cfg) -> None:
        self.session.run_id = cfg.run_id
        self.events = self.listen()
        self.append(f"Run {cfg.run_id} in {cfg.run_dir}")
        try:
            self.job = ops.start_run(cfg.run_id, on_event=self.events.on_event, on_finished=self.events.on_finished)
        except Exception as e:  # noqa: BLE001  shown in the page like any other error
            self._not_started(e)
            return
        self.status.start("Starting the trainer…")
        self._following()

    def _following(self) -> None:
        """A job is running under this page (started, resumed or reattached): controls and device line on."""
        self.stop_button.setEnabled(True)
        self.pause_button.setEnabled(True)
        self.device = (self.session.bundle.plan.device, self.session.bundle.plan.gpu_index) \
            if self.session.bundle else self.device
        self.sample_device()
        self.device_timer.start()
        self.running_changed.emit(True)

    def attach(self, run_id: str) -> None:
        """Follow a run that trains in the background (left running by a window closed earlier): its
        events so far are replayed, then it goes on live, with Pause and Stop."""
        self._reset_view()
        self.session.run_id, self.session.outcome = run_id, None
        self.events = self.listen()
        try:
            self.job = ops.attach_run(run_id, on_event=self.events.on_event, on_finished=self.events.on_finished)
        except Exception as e:  # noqa: BLE001  e.g. it ended a moment ago
            self._not_started(e)
            return
        self.start_button.setEnabled(False)
        self.append(f"Reattached to run {run_id}, which kept training in the background.")
        self.status.start("Training in the background; following it…")
        self._following()

    def sample_device(self) -> None:
        disk = f" · offload wrote {self.disk_written / 1e9:.2f} GB to disk" if self.disk_written else ""
        self.device_line.setText("Device now: " + device_monitor.sample(*self.device).text() + disk)

    def pause(self, paused: bool) -> None:
        if not self.running:
            return
        self.job.pause(paused)
        self._show_paused(paused)
        if paused:
            self.status.start("Pausing after the current step…")
        else:
            self.try_box.hide()
            self.status.start("Continuing…")

    def _show_paused(self, paused: bool) -> None:
        """The button as the run is (also when another window paused or continued it), without asking again."""
        self.pause_button.blockSignals(True)
        self.pause_button.setChecked(paused)
        self.pause_button.blockSignals(False)
        self.pause_button.setText("Continue" if paused else "Pause")

    def _not_started(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)
        self.start_button.setEnabled(True)

    def stop(self) -> None:
        if self.running:
            self.job.stop()
            self.stop_button.setEnabled(False)
            self.pause_button.setEnabled(False)
            self.try_box.hide()
            self.status.start("Stopping after the current step and saving a checkpoint…")
            self.append("Stop requested.")

    def append(self, line: str) -> None:
        self.log.appendPlainText(line)

    @Slot(dict)
    def _on_event(self, e: dict) -> None:
        kind = e.get("event")
        if kind == "status" and e.get("fraction") is not None:  # progress of a long step: the bar, not the log
            self.status.report(e["fraction"], e.get("text", ""))
        elif kind == "status":
            self.status.start(e.get("text", ""))
            self.append(e.get("text", ""))
        elif kind == "start":
            total = int(e.get("total_steps") or 1)
            self.progress.setRange(0, total)
            self.progress.setValue(int(e.get("start_step") or 0))
            for chart in self.charts:
                chart.set_total(total)
            self.rate_charts.show()
            self.device = (e.get("device") or "cpu", e.get("gpu_index"))
            self.name_prefers(e.get("objective") or "")
            self.status.start("Training…")
            self.append(f"Training {counted(total, 'step')} on {e.get('device')} ({e.get('precision')}), "
                        f"{e.get('train_examples')} examples, {e.get('eval_examples')} held out for validation.")
        elif kind == "step":
            step, total = int(e["step"]), int(e.get("total_steps") or self.progress.maximum())
            if total != self.progress.maximum():  # cut to the time limit: the charts end where the run now does
                for chart in self.charts:
                    chart.set_total(total)
            self.progress.setRange(0, total)
            self.progress.setValue(step)
            self.show_in_title(f"{100 * step // total}% · {duration(e.get('eta_s'))} left")
            self.stat["loss"].setText(f"{e['loss']:.4f}")
            self.stat["eta"].setText(duration(e.get("eta_s")))
            self.stat["speed"].setText(f"{e.get('tokens_per_s', 0):,.0f} tokens/s")
            self.stat["memory"].setText(f"{(e.get('memory_bytes') or 0) / 1024**3:.2f} GiB")
            if e.get("prefers") is not None:  # a preference run (ORPO, DPO, SimPO)
                self.show_prefers(e["prefers"])
            self.loss_chart.add_point(step, float(e["loss"]))
            if e.get("lr") is not None:
                self.lr_chart.add_point(step, float(e["lr"]))
            if e.get("tokens_per_s") is not None:
                self.speed_chart.add_point(step, float(e["tokens_per_s"]))
            self.disk_written += int((e.get("io") or {}).get("written_last_step") or 0)
            if step == 1 or step == total or step % max(1, total // 20) == 0:
                self.append(f"Step {step}/{total}: loss {e['loss']:.4f}")
        elif kind == "eval":
            self.loss_chart.add_eval(int(e["step"]), float(e["loss"]))
            self.append(f"Validation loss at step {e['step']}: {e['loss']:.4f}"
                        + (" (the lowest so far)" if e.get("lowest") else "")
                        + (f"; {self.share[0].lower()}: {e['prefers']:.0%} of the validation {self.share[1]}s"
                           if e.get("prefers") is not None else ""))
            self._watch_validation(e)
        elif kind == "checkpoint":
            self.append(f"Checkpoint saved at step {e['step']}.")
        elif kind == "done":
            self.append(f"Done: {e.get('text', '')}.")
        elif kind == "error":
            self.append(f"Error: {e.get('text', '')}")
        elif kind == "replan":  # out of memory, or a kernel failed: the trainer re-planned and continues
            self.status.start("Re-planned without the kernel that failed; continuing…" if e.get("cause") == "kernel"
                              else "Re-planned after running out of memory; continuing…")
            self.append(f"{e.get('text', '')} Continuing from the last checkpoint.")
        elif kind == "paused":
            self.show_in_title(f"Paused at {100 * self.progress.value() // max(1, self.progress.maximum())}%")
            self.status.stop(sentence(e.get("text", "Paused")))
            self.append(sentence(e.get("text", "Paused")))
            self._show_paused(True)
            self.try_box.open_for(self.job, e.get("tools"))
        elif kind == "resumed":
            self.try_box.hide()
            self._show_paused(False)
            self.status.start("Training…")
            self.append(sentence(e.get("text", "Continuing")))
        elif kind == "answer":
            self.try_box.answered(e)
        elif kind == "calibration" and e.get("factor"):
            self.append(f"Measured peak memory: {e['factor']:.2f}× the plan's estimate (recorded with the run)."
                        + (f" Its pace is not kept: {e['pace_note']}." if e.get("pace_note") else ""))

    def show_prefers(self, share: float) -> None:
        """A preference run's share of its last step's pairs preferred, shown beside the loss."""
        self._show_prefers(True)
        self.stat["prefers"].setText(f"{share:.0%}")

    def name_prefers(self, objective: str) -> None:
        """Call the share what the run's objective counts: 'Chosen preferred' pairs, or 'Rated right' answers."""
        self.share = objectives.share_words(objective)
        self.captions["prefers"].setText(self.share[0])
        self.captions["prefers"].setToolTip(
            "KTO: the share of the last step's rated answers the model has moved the way their rating says, "
            "against the starting model (raised if rated good, lowered if bad)."
            if self.share != objectives.share_words("")
            else "Preference tuning: the share of the last step's pairs whose chosen answer the model now finds "
                 "likelier per token than the rejected one (DPO: raised more than the rejected one, against the "
                 "starting model).")

    def _show_prefers(self, shown: bool) -> None:
        self.captions["prefers"].setVisible(shown)
        self.stat["prefers"].setVisible(shown)

    def show_in_title(self, progress: str | None) -> None:
        """The run's progress ahead of the window's own title, where a taskbar shows it while the window is
        minimised or behind others ("45% · 12 min left — Tuneforge"); None gives the window its title back."""
        window = self.window()
        own = window.property("own_title") or window.windowTitle()
        window.setProperty("own_title", own)
        window.setWindowTitle(f"{progress} — {own}" if progress else own)

    @Slot(object)
    def _on_finished(self, outcome) -> None:
        self.session.outcome = outcome
        self.show_in_title(None)
        self.stop_button.setEnabled(False)
        self.device_timer.stop()
        self.try_box.hide()
        self.pause_button.setEnabled(False)
        self._show_paused(False)
        self.start_button.setEnabled(not outcome.ok)
        self.start_button.setText("Start again" if not outcome.ok else "Start training")
        if outcome.ok:
            self.status.stop(f"✔ {sentence(outcome.text)}")
            if getattr(self.error, "kind", None) == "info":  # a note for while it trained; the log keeps the rest
                self.error.clear()
        else:
            self.status.stop()
            self.error.show_message(f"Training {outcome.status}: {sentence(outcome.text, capital=False)}",
                                    details=log_tail(self.job.log_path) if self.job else None)
        self.running_changed.emit(False)
        self.completeChanged.emit()
        self._tell(outcome)

    def _tell(self, outcome) -> None:
        """Say how the run ended where the person may be looking elsewhere (ui/run_end_notice.py)."""
        try:
            run = ops.get_run(self.session.run_id) if self.session.run_id else {}
        except KnownError:  # deleted meanwhile: told by its id
            run = {"id": self.session.run_id}
        told = tell(self.window(), run, outcome)
        if told:
            self.told.emit(*told)

    def isComplete(self) -> bool:
        return bool(self.session.outcome is not None and self.session.outcome.ok and not self.running)

    def shutdown(self, keep_running: bool = False) -> None:
        """Closing the window stops the run politely (the trainer saves a checkpoint and exits), unless the
        person chose to keep it training in the background: then it is only let go of."""
        super().shutdown()
        self.show_in_title(None)
        self.device_timer.stop()
        if self.running and not keep_running:
            self.job.stop()
        elif self.running and hasattr(self.job, "detach"):
            self.job.detach()
        if self.events is not None:
            self.events.closed = True
