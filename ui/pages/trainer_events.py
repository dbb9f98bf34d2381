"""The trainer's events on their way to a page: the supervisor calls back on its reader thread, and
`TrainerEvents` hands each event and the outcome to the main thread as Qt signals; plus the small
texts the train page makes of them."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

LOG_TAIL_LINES = 60


class TrainerEvents(QObject):
    """Carries the trainer's callbacks (called on the supervisor's reader thread) to the main thread."""

    event = Signal(dict)
    finished = Signal(object)

    def __init__(self):
        super().__init__()
        self.closed = False

    def on_event(self, event: dict) -> None:  # reader thread
        self._emit(self.event, event)

    def on_finished(self, outcome) -> None:  # reader thread
        self._emit(self.finished, outcome)

    def _emit(self, signal, value) -> None:
        if self.closed:
            return
        try:
            signal.emit(value)
        except RuntimeError:  # the window is gone; the trainer keeps recording to its run folder
            self.closed = True


def sentence(text: str, capital: bool = True) -> str:
    text = text.strip()
    if capital:
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
