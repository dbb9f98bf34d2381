"""The one route from an error to the person (STYLE §7), inside the page that hit it.

A KnownError is its own sentence. Anything else is a bug: a short line plus "Details" with the
traceback, selectable and copyable, so it can be pasted into a report. No dialog, no raw traceback.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout

from core.errors import KnownError
from ui import theme

# kind → theme is dark → (background, border, text)
STYLES = {
    "error": {False: ("#fdecea", "#f5c2bd", "#7a1c12"), True: ("#3b2220", "#7a3b35", "#ffb4a8")},
    "warning": {False: ("#fff6e0", "#f0d48a", "#6b4b00"), True: ("#3a3120", "#8a6d2a", "#ffd98a")},
    "info": {False: ("#e8f1fd", "#b9d3f5", "#173f73"), True: ("#1d2a3a", "#3d5f8a", "#b3d1ff")},
}


def sentence_for(error: BaseException) -> tuple[str, str | None]:
    """(what to show, details to copy or None) for any exception."""
    if isinstance(error, KnownError):
        return str(error), None
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    short = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (f"Something went wrong inside Tuneforge ({type(error).__name__}: {short}). This is a bug; "
            "please copy the details into a report."), details


class ErrorPanel(QFrame):
    """A hidden-until-needed box: one sentence, and optional details to copy."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("messagePanel")
        self.text = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.details_button = QPushButton("Details", checkable=True)
        self.copy_button = QPushButton("Copy details")
        self.details = QPlainTextEdit(readOnly=True)
        self.details.setMaximumHeight(160)
        self.details.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.details.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.details_button)
        buttons.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        layout.addWidget(self.details)
        self.details_button.toggled.connect(self.details.setVisible)
        self.copy_button.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.details.toPlainText()))
        self.clear()

    def show_error(self, error: BaseException) -> None:
        text, details = sentence_for(error)
        self.show_message(text, details)

    def show_message(self, text: str, details: str | None = None, kind: str = "error") -> None:
        self.kind = kind
        self._style()
        self.text.setText(text)
        self.details.setPlainText(details or "")
        has_details = bool(details)
        self.details_button.setVisible(has_details)
        self.copy_button.setVisible(has_details)
        self.details_button.setChecked(False)
        self.details.setVisible(False)
        self.show()

    def _style(self) -> None:
        background, border, ink = STYLES[self.kind][theme.is_dark()]
        sheet = (f"QFrame#messagePanel {{ background: {background}; border: 1px solid {border}; "
                 f"color: {ink}; border-radius: 6px; }}"
                 f"QFrame#messagePanel QLabel {{ border: none; background: transparent; color: {ink}; }}")
        if sheet != self.styleSheet():  # setting a sheet may itself signal a palette change: set it only once
            self.setStyleSheet(sheet)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange and getattr(self, "kind", None):  # the theme switched
            self._style()

    def clear(self) -> None:
        self.text.clear()
        self.details.clear()
        self.hide()

    @property
    def message(self) -> str:
        return "" if self.isHidden() else self.text.text()
