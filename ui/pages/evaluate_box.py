"""The export page's "Measure it" box: the run against its base on a file of examples it did not train on
(app.evaluations.evaluate_run): the loss of their answers with each model, in one sentence, and both models'
answers to the first questions beside the expected ones. The history keeps each measurement; the latest is
shown when the run is opened again. A run that read one split of a dataset with a test split (a cached hub
dataset, a folder with train and test files) is offered that split (app.evaluations.held_out_split)."""

from __future__ import annotations

import time
from typing import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFileDialog, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton,
                               QVBoxLayout)

from app import evaluations
from core.data import dataset as data_mod
from core.errors import KnownError
from ui.error_panel import ErrorPanel
from ui.pages.base import BusyLine
from ui.tasks import TaskGroup

ASK = 3  # questions whose answers are shown


def answers_text(report: dict) -> str:
    """Each question with the expected answer and both models' answers (a report as the history keeps it)."""
    return "\n\n".join(f"{a['source']}\nAsked: {a['prompt']}\nExpected: {a['expected']}\nBase: {a['base']}\n"
                       f"Tuned: {a['tuned']}" for a in report["answers"])


class EvaluateBox(QGroupBox):
    def __init__(self, weights: Callable[[], str] = lambda: "auto", parent=None):
        super().__init__("Measure it: both models on examples the run did not train on", parent)
        self.run_id: str | None = None
        self.weights = weights  # which of the run's weights are measured (ui/pages/weights_choice.py)
        self.tasks = TaskGroup(self._failed)
        self.file_edit = QLineEdit(placeholderText="A file of held-out examples, in any dataset format, or a "
                                                   "dataset's split (DATASET:test)")
        self.offered = ""  # the run's own test split, when the box filled it in (not the person)
        self.browse_button = QPushButton("Choose…", autoDefault=False)
        self.browse_button.clicked.connect(self._choose)
        self.measure_button = QPushButton("Measure", autoDefault=False)
        self.measure_button.setToolTip("The loss of the file's answers with the base and the tuned model, and their "
                                       f"answers to its first {ASK} questions; one model is loaded at a time.")
        self.measure_button.clicked.connect(self.measure)
        self.status = BusyLine(on_cancel=self.cancel)
        self.error = ErrorPanel()
        self.summary = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.answers = QPlainTextEdit(readOnly=True)
        self.answers.setMinimumHeight(120)
        row = QHBoxLayout()
        row.addWidget(self.file_edit, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.measure_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(self.summary)
        layout.addWidget(self.answers)
        self._show(None)

    def show_run(self, run_id: str) -> None:
        """Point the box at a run, showing its latest measurement from the history, if any."""
        if run_id != self.run_id:
            self.cancel()
            self.run_id = run_id
            self.error.clear()
            try:
                kept = evaluations.run_evaluations(run_id)
            except KnownError:  # a run the history does not hold (any more): nothing measured to show
                kept = []
            if not kept and self.file_edit.text().strip() in ("", self.offered):  # ours to change, not theirs
                self.offered = evaluations.held_out_split(run_id) or ""
                self.file_edit.setText(self.offered)
            self._show(kept[-1]["report"] if kept else None, kept[-1]["created_at"] if kept else None)

    def measure(self) -> None:
        path = self.file_edit.text().strip()
        if not path or self.run_id is None or self.tasks.busy("evaluate"):
            return
        self.error.clear()
        self._show(None)
        self.measure_button.setEnabled(False)
        self.status.start("Measuring…")
        self.tasks.run("evaluate", evaluations.evaluate_run, self.run_id, path, ASK, None, weights=self.weights(),
                       on_done=self._done, on_progress=self.status.report)

    def cancel(self) -> None:
        self.tasks.cancel_all()
        self.status.stop()
        self.measure_button.setEnabled(True)

    def shutdown(self) -> None:
        self.tasks.cancel_all()

    def _done(self, report) -> None:
        self.status.stop()
        self.measure_button.setEnabled(True)
        self._show(report.to_dict())

    def _failed(self, error: BaseException) -> None:
        self.status.stop()
        self.measure_button.setEnabled(True)
        self.error.show_error(error)

    def _show(self, report: dict | None, measured_at: float | None = None) -> None:
        when = f"Measured {time.strftime('%Y-%m-%d %H:%M', time.localtime(measured_at))}: " if measured_at else ""
        self.summary.setText(when + report["summary"] if report else "")
        self.summary.setVisible(report is not None)
        self.answers.setPlainText(answers_text(report) if report else "")
        self.answers.setVisible(bool(report and report["answers"]))
        if report and not self.file_edit.text():
            self.file_edit.setText(report["data"])

    def _choose(self) -> None:
        patterns = " ".join(f"*{suffix}" for suffix in data_mod.SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Held-out examples", self.file_edit.text(),
                                              f"Datasets ({patterns})")
        if path:
            self.file_edit.setText(path)
