"""Progress and cancellation for long plain functions (STYLE §4).

Background work (converting a model, scanning data, exporting) takes a Progress. The CLI prints it,
the UI forwards it to the main thread; the function itself never knows which.
"""

from __future__ import annotations

import threading
from typing import Callable


class Cancelled(Exception):
    """Raised inside work whose Progress was cancelled."""


class Progress:
    def __init__(self, callback: Callable[[float | None, str], None] | None = None):
        self._callback = callback
        self._cancel = threading.Event()

    def update(self, fraction: float | None = None, text: str = "") -> None:
        """Report progress (fraction in 0..1 or None when unknown); raise Cancelled if cancelled."""
        if self._cancel.is_set():
            raise Cancelled()
        if self._callback is not None:
            self._callback(fraction, text)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()




class Span:
    """The part [start, end] of a Progress: 0..1 here is start..end there (cancel passes through)."""

    def __init__(self, progress, start: float, end: float):
        self.progress, self.start, self.end = progress, start, end

    def update(self, fraction: float | None = None, text: str = "") -> None:
        at = None if fraction is None else self.start + (self.end - self.start) * fraction
        self.progress.update(at, text)
