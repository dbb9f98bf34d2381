"""What every page shares: the wizard's session, background tasks, a busy line and an error panel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSpinBox, QWidget, QWizardPage

from ui import tasks, theme
from ui.error_panel import ErrorPanel


@dataclass
class Session:
    """What the pages hand on to each other, filled in as the person goes."""

    model_name: str = "default"
    model_ref: object | None = None  # core.model_source.ModelRef
    data_path: str = ""
    data_report: dict | None = None
    data_mapping: dict | None = None  # fields to columns, e.g. {"prompt": "frage"}; None: the schema is detected
    bad_rows: str = "skip"  # "skip": bad rows are left out and listed; "stop": the first one is an error
    good_above: float | None = None  # scored answers above this are rated good; None: the middle of the scores
    eval_data: str | None = None  # a separate validation set; None: held out of the data (or a hub dataset's own)
    train_on: str | None = None  # what the run learns from, as asked on the plan page (None: as its objective does)
    max_steps: int = 0
    run_name: str = ""  # the person's name for the run (core.history.check_name), '' for none
    bundle: object | None = None  # app.operations.PlanBundle
    run_id: str | None = None
    outcome: object | None = None  # app.supervisor.Outcome
    going_on: object | None = None  # app.operations.GoingOn: the earlier run whose weights this one starts from


def longest_box() -> QSpinBox:
    """The longest answer in tokens a model tried may give; 0 shows "auto": the run's default (inference.room)."""
    box = QSpinBox(minimum=0, maximum=8192, singleStep=64)
    box.setSpecialValueText("auto")
    box.setToolTip("The longest answer in tokens. auto: 128, or 512 where the run's data carried reasoning (the "
                   "tuned model thinks before it answers).")
    return box


class BusyLine(QWidget):
    """A thin progress bar with a sentence; busy (indeterminate) when the fraction is unknown.

    With `on_cancel`, a Cancel button shows while it is busy; once cancelled it says so and, with
    `on_retry`, offers to start again."""

    def __init__(self, parent=None, on_cancel: Callable[[], None] | None = None,
                 on_retry: Callable[[], None] | None = None):
        super().__init__(parent)
        self.on_cancel, self.on_retry = on_cancel, on_retry
        self.bar = QProgressBar(textVisible=False, maximumWidth=160, maximumHeight=10)
        self.label = QLabel(wordWrap=True)
        theme.muted(self.label)
        self.button = QPushButton(autoDefault=False)
        self.button.clicked.connect(self._clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 0, Qt.AlignVCenter)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.stop()

    def start(self, text: str) -> None:
        self.bar.setRange(0, 0)
        self.bar.show()
        self.label.setText(text)
        self.button.setText("Cancel")
        self.button.setVisible(self.on_cancel is not None)
        self.show()

    @property
    def busy(self) -> bool:
        return self.bar.isVisibleTo(self)

    def _clicked(self) -> None:
        if self.busy and self.on_cancel is not None:
            self.on_cancel()
            self.stop("Cancelled.")
            if self.on_retry is not None:
                self.button.setText("Try again")
                self.button.show()
        elif self.on_retry is not None:
            self.on_retry()

    def report(self, fraction: float | None, text: str) -> None:
        if fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 100)
            self.bar.setValue(int(fraction * 100))
        if text:
            self.label.setText(text)

    def stop(self, text: str = "") -> None:
        self.bar.hide()
        self.button.hide()
        self.label.setText(text)
        self.setVisible(bool(text))


class Page(QWizardPage):
    def __init__(self, session: Session, title: str, subtitle: str, parent=None):
        super().__init__(parent)
        self.session = session
        self.setTitle(title)
        self.setSubTitle(subtitle)
        self.error = ErrorPanel()
        self._tasks: dict[str, tasks.Task] = {}

    def run_task(self, name: str, fn: Callable, *args, on_done=None, on_error=None, on_progress=None,
                 **kwargs) -> tasks.Task:
        """Start fn in the background; a newer task of the same name replaces (cancels) the older one."""
        self.cancel_task(name)
        task = tasks.run_task(fn, *args, on_done=on_done, on_error=on_error or self.error.show_error,
                              on_progress=on_progress, **kwargs)
        self._tasks[name] = task
        return task

    def cancel_task(self, name: str) -> None:
        old = self._tasks.pop(name, None)
        if old is not None and not old.done:
            old.cancel()

    def busy(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done

    def shutdown(self) -> None:
        """The wizard is closing: drop every callback and ask running work to stop."""
        for name in list(self._tasks):
            self.cancel_task(name)

