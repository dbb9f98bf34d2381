"""One model's answer in the export page's "Try it" box: a title, its own busy line, error and text."""

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
        self.text.setMaximumHeight(160)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(self.text)

    def start(self, text: str) -> None:
        self.text.clear()
        self.error.clear()
        self.status.start(text)

    def answered(self, text: str) -> None:
        self.status.stop()
        self.text.setPlainText(text or "(an empty answer)")

    def failed(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)
