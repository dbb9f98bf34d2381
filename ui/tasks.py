"""Run a plain function off the UI thread and hear back on it (STYLE §4).

The function takes a Qt-free `core.progress.Progress` as its `progress` keyword; its reports, its
result and its error all come back on the main thread through queued signals. Like Orange3's
`concurrent.py` and Anki's `CollectionOp`, this is the only place the UI touches threads for work.

    task = run_task(ops.inspect_data, path, on_done=show, on_error=show_error, on_progress=status)
    task.cancel()  # asks the work to stop at its next progress report and drops its callbacks
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from core.progress import Cancelled, Progress

_running: set["Task"] = set()  # keeps each Task alive until its result has been delivered


class Task(QObject):
    """One call of a function on the thread pool; lives on the main thread, which its slots run on."""

    _progressed = Signal(object, str)
    _finished = Signal(object, object)  # result, exception (one of them is None)

    def __init__(self, fn: Callable, args: tuple, kwargs: dict, on_done, on_error, on_progress):
        super().__init__()
        self.progress = Progress(self._report)
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._on_done, self._on_error, self._on_progress = on_done, on_error, on_progress
        self.done = False
        self._progressed.connect(self._deliver_progress)
        self._finished.connect(self._deliver_result)

    def cancel(self) -> None:
        """Ask the function to stop (it raises Cancelled at its next report) and forget its callbacks."""
        self.progress.cancel()
        self._on_done = self._on_error = self._on_progress = None

    @property
    def cancelled(self) -> bool:
        return self.progress.cancelled

    def _report(self, fraction: float | None, text: str) -> None:  # worker thread
        self._progressed.emit(fraction, text)

    def _work(self) -> None:  # worker thread
        try:
            result = self._fn(*self._args, progress=self.progress, **self._kwargs)
        except BaseException as e:  # noqa: BLE001  every error goes back to the page, bugs included
            self._finished.emit(None, e)
        else:
            self._finished.emit(result, None)

    @Slot(object, str)
    def _deliver_progress(self, fraction, text) -> None:
        if self._on_progress and not self.cancelled:
            self._on_progress(fraction, text)

    @Slot(object, object)
    def _deliver_result(self, result, error) -> None:
        self.done = True
        _running.discard(self)
        if self.cancelled:
            return
        if error is None:
            if self._on_done:
                self._on_done(result)
        elif isinstance(error, Cancelled):
            pass  # nobody is waiting for it any more
        elif self._on_error:
            self._on_error(error)
        else:
            raise error


class _Runnable(QRunnable):
    def __init__(self, task: Task):
        super().__init__()
        self.task = task

    def run(self) -> None:
        self.task._work()


def run_task(fn: Callable[..., Any], *args, on_done: Callable[[Any], None] | None = None,
             on_error: Callable[[BaseException], None] | None = None,
             on_progress: Callable[[float | None, str], None] | None = None, **kwargs) -> Task:
    """Call fn(*args, progress=Progress, **kwargs) on the thread pool; callbacks run on the main thread."""
    assert threading.current_thread() is threading.main_thread(), "start tasks from the UI thread"
    task = Task(fn, args, kwargs, on_done, on_error, on_progress)
    _running.add(task)
    QThreadPool.globalInstance().start(_Runnable(task))
    return task


def wait_idle(msecs: int = 30000) -> bool:
    """Block until no task is running (for shutdown and tests); True when they all ended."""
    return QThreadPool.globalInstance().waitForDone(msecs)


class TaskGroup:
    """Named background tasks of one panel: a newer task of a name replaces (cancels) the older one, and
    `cancel_all` drops them when the panel closes (what `Page.run_task` does for the wizard's pages)."""

    def __init__(self, on_error: Callable[[BaseException], None]):
        self.on_error = on_error
        self.tasks: dict[str, Task] = {}

    def run(self, name: str, fn: Callable, *args, on_done=None, on_error=None, on_progress=None, **kwargs) -> Task:
        self.cancel(name)
        task = run_task(fn, *args, on_done=on_done, on_error=on_error or self.on_error, on_progress=on_progress,
                        **kwargs)
        self.tasks[name] = task
        return task

    def cancel(self, name: str) -> None:
        old = self.tasks.pop(name, None)
        if old is not None and not old.done:
            old.cancel()

    def busy(self, name: str) -> bool:
        task = self.tasks.get(name)
        return task is not None and not task.done

    def cancel_all(self) -> None:
        for name in list(self.tasks):
            self.cancel(name)
