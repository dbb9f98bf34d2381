"""Python's cycle collector, run on the UI thread only.

The collector runs on whichever thread happens to allocate when a generation's threshold is crossed. When
that is a worker thread (a task loading a model, a reply being generated) and the garbage holds a Qt object,
Qt destroys it off its own thread and the process can die: a segmentation fault inside the garbage collector
while the base and the tuned model answered side by side. So while the app runs, automatic collection is off
and a timer on the main thread collects, by the same thresholds (Anki does the same, for the same reason).
Reference counting still frees everything that is not in a cycle at once, on any thread.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500


class MainThreadGC(QObject):
    """Turns automatic collection off until `stop`; collects on a main-thread timer instead."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.was_enabled = gc.isenabled()
        self.collections = 0
        gc.disable()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.collect)
        self.timer.start(interval_ms)

    def collect(self) -> None:
        """The oldest generation whose count is past its threshold, with the younger ones (as Python would)."""
        due = [g for g, (count, limit) in enumerate(zip(gc.get_count(), self.thresholds)) if limit and count > limit]
        if due:
            gc.collect(max(due))
            self.collections += 1

    def stop(self) -> None:
        self.timer.stop()
        if self.was_enabled:
            gc.enable()
