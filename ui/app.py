"""The desktop app's entry: `run_app(argv)` opens the main window (called by `app.cli.main` without arguments)."""

from __future__ import annotations

from core import runtime_env


def run_app(argv: list[str]) -> int:
    """Show the main window until it is closed; argv is the process's argv (Qt takes its own options from it).
    Raises KnownError (a sentence) when there is no display to show it on."""
    from core.errors import KnownError
    from ui.display import why_no_window

    if why := why_no_window():
        raise KnownError(why)
    from PySide6.QtWidgets import QApplication

    from app import user_settings
    from ui import theme
    from ui.main_thread_gc import MainThreadGC
    from ui.main_window import MainWindow
    from ui.wizard import wait_for_background

    runtime_env.prepare()
    app = QApplication.instance() or QApplication(list(argv) or ["tuneforge"])
    app.setApplicationName("Tuneforge")
    app.setApplicationDisplayName("Tuneforge")
    collector = MainThreadGC(app)  # cycles are collected on this thread only: see ui/main_thread_gc.py
    try:
        theme.apply(user_settings.load().theme)
    except KnownError:
        pass  # the Settings page shows what is wrong with the file; the system's colours meanwhile
    window = MainWindow()
    window.show()
    code = app.exec()
    wait_for_background(5000)
    collector.stop()
    return code
