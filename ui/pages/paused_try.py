"""The train page's "try it now" box, shown while a run is paused: the model as it is at this step
answers a prompt, inside the trainer (it is already loaded there; nothing is loaded twice)."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

from ui.pages.answer_pane import AnswerPane


class PausedTry(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.job = None
        self.waiting: str | None = None  # id of the prompt asked, until its answer arrives
        self.prompt_edit = QLineEdit(placeholderText="Ask the model as it is now, e.g. a question from your data")
        self.ask_button = QPushButton("Ask")
        self.ask_button.setAutoDefault(False)
        self.pane = AnswerPane("Answer at this step", "The answer appears here; Continue resumes training.")
        self.prompt_edit.returnPressed.connect(self.ask)
        self.ask_button.clicked.connect(self.ask)
        row = QHBoxLayout()
        row.addWidget(self.prompt_edit, 1)
        row.addWidget(self.ask_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.pane)

    def open_for(self, job) -> None:
        self.job, self.waiting = job, None
        self.ask_button.setEnabled(True)
        self.show()
        self.prompt_edit.setFocus()

    def ask(self) -> None:
        prompt = self.prompt_edit.text().strip()
        if not prompt or self.job is None or self.waiting:
            return
        try:
            self.waiting = self.job.ask(prompt)
        except OSError as e:  # the run folder cannot be written: say so in the pane
            self.pane.failed(e)
            return
        self.ask_button.setEnabled(False)
        self.pane.start("The paused model is answering…")

    def answered(self, event: dict) -> None:
        if event.get("id") != self.waiting:
            return  # an answer to a prompt asked from another window
        self.waiting = None
        self.ask_button.setEnabled(True)
        if event.get("error"):
            self.pane.status.stop()
            self.pane.error.show_message(f"The model could not answer: {event['error']}.")
        else:
            self.pane.answered(event.get("text", ""))
