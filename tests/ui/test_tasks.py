"""ui.tasks runs plain functions off the UI thread and answers on it; the error panel routes errors."""

from __future__ import annotations

import threading
import time

from core.errors import DatasetError
from ui import tasks
from ui.error_panel import ErrorPanel


def work(x, progress):
    progress.update(0.5, "halfway")
    return x * 2, threading.current_thread() is threading.main_thread()


def test_result_and_progress_arrive_on_the_main_thread(qtbot):
    seen = {}
    reports = []

    def done(result):
        seen["result"] = result
        seen["main"] = threading.current_thread() is threading.main_thread()

    tasks.run_task(work, 21, on_done=done, on_progress=lambda f, t: reports.append((f, t)))
    qtbot.waitUntil(lambda: "result" in seen, timeout=5000)
    assert seen["result"] == (42, False)  # computed on a worker thread…
    assert seen["main"]  # …delivered on the main thread
    assert reports == [(0.5, "halfway")]


def test_errors_go_to_on_error(qtbot):
    errors = []

    def bad(progress):
        raise DatasetError("data.jsonl:3: broken JSON; fix the file.")

    tasks.run_task(bad, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert isinstance(errors[0], DatasetError)


def test_cancel_stops_the_work_and_drops_its_callbacks(qtbot):
    steps, called = [], []
    started = threading.Event()

    def slow(progress):
        started.set()
        for i in range(200):
            progress.update(i / 200, "")
            steps.append(i)
            time.sleep(0.01)
        return "finished"

    task = tasks.run_task(slow, on_done=called.append, on_error=called.append)
    started.wait(5)
    task.cancel()
    qtbot.waitUntil(lambda: task.done, timeout=5000)
    assert called == [] and len(steps) < 200


def test_known_error_is_a_sentence_and_a_bug_has_details(qtbot):
    panel = ErrorPanel()
    qtbot.addWidget(panel)
    panel.show_error(DatasetError("data.jsonl: no usable rows; fix the file and try again."))
    assert panel.message == "data.jsonl: no usable rows; fix the file and try again."
    assert panel.details_button.isHidden()
    try:
        {}["missing"]
    except KeyError as e:
        panel.show_error(e)
    assert "bug" in panel.message and "KeyError" in panel.message
    assert "Traceback" in panel.details.toPlainText() and not panel.details_button.isHidden()


def test_a_busy_line_cancels_its_work_and_offers_to_try_again(qtbot):
    from ui.pages.base import BusyLine

    calls = []
    line = BusyLine(on_cancel=lambda: calls.append("cancel"), on_retry=lambda: calls.append("retry"))
    qtbot.addWidget(line)
    assert line.isHidden()  # idle: nothing to show
    line.start("Making a plan…")
    assert line.button.isVisible() and line.button.text() == "Cancel"
    line.button.click()
    assert calls == ["cancel"] and line.label.text() == "Cancelled." and line.button.text() == "Try again"
    line.button.click()
    assert calls == ["cancel", "retry"]
    line.start("Again…")
    line.stop()
    assert line.isHidden() and not line.button.isVisible()
    plain = BusyLine()  # without a cancel, no button
    qtbot.addWidget(plain)
    plain.start("Working…")
    assert not plain.button.isVisible()


def make_cycles(n: int, progress) -> int:
    """Garbage that only the cycle collector frees, made on a worker thread."""
    for _ in range(n):
        a, b = [], []
        a.append(b)
        b.append(a)
    return n


def test_cycles_made_by_a_task_are_collected_on_the_main_thread_only(qtbot, main_thread_gc):
    """A collection on a worker thread can destroy a Qt object there and crash the app; with the collector of
    ui/main_thread_gc.py every collection runs on the UI thread, however much garbage a task makes."""
    import gc

    threads = []

    def note(phase, info):
        if phase == "start":
            threads.append(threading.current_thread() is threading.main_thread())

    gc.callbacks.append(note)
    try:
        before = main_thread_gc.collections
        done = []
        tasks.run_task(make_cycles, 50 * gc.get_threshold()[0], on_done=done.append)
        qtbot.waitUntil(lambda: bool(done), timeout=10000)
        qtbot.waitUntil(lambda: main_thread_gc.collections > before, timeout=5000)
    finally:
        gc.callbacks.remove(note)
    assert threads and all(threads), threads
    assert not gc.isenabled()  # automatic collection stays off while the app runs
