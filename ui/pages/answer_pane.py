"""One model's answers: a title, its own busy line, error and text. The export page's "Try it" box shows a
conversation in it (each question with its answer, below the ones before); a paused run shows one answer.

When the model calls a tool it was offered, the pane asks for the call's result (what the tool would have
returned; nothing is run), and `result_given` carries it to whoever keeps the conversation, which asks the
model to go on from it (core/conversation.py)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

from core.data.formats.tool_calls import shown
from ui.error_panel import ErrorPanel
from ui.pages.answer_marks import YOU, AnswerMarks
from ui.pages.base import BusyLine


class AnswerPane(QWidget):
    result_given = Signal(str)  # the result the person gave for the call offered (offer_result)

    def __init__(self, title: str, placeholder: str, parent=None):
        super().__init__(parent)
        self.title = QLabel(f"<b>{title}</b>")
        self.status = BusyLine()
        self.error = ErrorPanel()
        self.text = QPlainTextEdit(readOnly=True, placeholderText=placeholder)
        self.text.setMinimumHeight(90)
        self.text.setMaximumHeight(260)
        self.marks = AnswerMarks(self.text.document(), self.palette)  # thinking, calls, your turns
        self.call_label = QLabel()
        self.result_edit = QLineEdit(placeholderText="What it returns, e.g. 43")
        self.result_button = QPushButton("Give result")
        self.result_button.setAutoDefault(False)
        self.result_button.clicked.connect(self._give)
        self.result_edit.returnPressed.connect(self._give)
        self.result_row = QWidget()
        row = QHBoxLayout(self.result_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.call_label)
        row.addWidget(self.result_edit, 1)
        row.addWidget(self.result_button)
        self.result_row.hide()
        self.offered: str | None = None  # the call whose result is asked for, as shown
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(self.text)
        layout.addWidget(self.result_row)

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.PaletteChange:  # the marks' colours are the palette's: draw them again
            self.marks.rehighlight()
        super().changeEvent(event)

    def start(self, text: str, keep: bool = False) -> None:
        """Busy with `text`; the answers so far stay with keep (a conversation goes on)."""
        if not keep:
            self.text.clear()
        self.error.clear()
        self.result_row.hide()
        self.status.start(text)

    def answered(self, text: str) -> None:
        """One answer, in place of the one before."""
        self.status.stop()
        self.text.setPlainText(text or "(an empty answer)")

    def added(self, prompt: str | None, text: str) -> None:
        """The next turn of a conversation, below the ones before (the view follows it); `prompt` None: the answer
        after tool results (shown as they were given)."""
        self.status.stop()
        text = text or "(an empty answer)"
        if prompt is not None:
            text = ("\n" if self.text.toPlainText() else "") + f"{YOU}{prompt}\n{text}"
        self.text.appendPlainText(text)

    def offer_result(self, call: dict | None) -> None:
        """Ask for the result of `call` (the first of the model's calls still without one); None: nothing to ask."""
        self.offered = shown(call) if call is not None else None
        self.result_row.setVisible(call is not None)
        if call is not None:
            self.call_label.setText(f"Result of <b>{self.offered}</b>:")
            self.result_edit.clear()
            self.result_edit.setFocus()

    def _give(self) -> None:
        result = self.result_edit.text().strip()
        if result:
            self.result_row.hide()
            self.text.appendPlainText(f"{self.offered} returned: {result}")
            self.result_given.emit(result)

    def clear(self) -> None:
        self.text.clear()
        self.error.clear()
        self.result_row.hide()

    def failed(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)
