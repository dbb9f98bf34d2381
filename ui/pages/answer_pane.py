"""One model's answers: a title, its own busy line, error and text. The export page's "Try it" box shows a
conversation in it (each question with its answer, below the ones before); a paused run shows one answer."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from ui.error_panel import ErrorPanel
from ui.pages.base import BusyLine


class AnswerPane(QWidget):
    def __init__(self, title: str, placeholder: str, parent=None):
        super().__init__(parent)
        self.title = QLabel(f"<b>{title}</b>")
        self.status = BusyLine()
        self.error = ErrorPanel()
        self.text = QPlainTextEdit(readOnly=True, placeholderText=placeholder)
        self.text.setMinimumHeight(90)
        self.text.setMaximumHeight(260)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(self.text)

    def start(self, text: str, keep: bool = False) -> None:
        """Busy with `text`; the answers so far stay with keep (a conversation goes on)."""
        if not keep:
            self.text.clear()
        self.error.clear()
        self.status.start(text)

    def answered(self, text: str) -> None:
        """One answer, in place of the one before."""
        self.status.stop()
        self.text.setPlainText(text or "(an empty answer)")

    def added(self, prompt: str, text: str) -> None:
        """The next turn of a conversation, below the ones before (the view follows it)."""
        self.status.stop()
        gap = "\n" if self.text.toPlainText() else ""
        self.text.appendPlainText(f"{gap}You: {prompt}\n{text or '(an empty answer)'}")

    def clear(self) -> None:
        self.text.clear()
        self.error.clear()

    def failed(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)
