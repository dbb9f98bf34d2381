"""The desktop app's entry: `run_app(argv)` opens the wizard (called by `app.cli.main` without arguments)."""

from __future__ import annotations

from core import runtime_env


def run_app(argv: list[str]) -> int:
    """Show the wizard until it is closed; argv is the process's argv (Qt takes its own options from it)."""
    from PySide6.QtWidgets import QApplication

    from ui.wizard import NewFineTuneWizard, wait_for_background

    runtime_env.prepare()
    app = QApplication.instance() or QApplication(list(argv) or ["tuneforge"])
    app.setApplicationName("Tuneforge")
    app.setApplicationDisplayName("Tuneforge")
    wizard = NewFineTuneWizard()
    wizard.show()
    code = app.exec()
    wait_for_background(5000)
    return code
