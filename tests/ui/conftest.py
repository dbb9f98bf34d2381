"""Qt tests run offscreen, in a private TUNEFORGE_HOME, and fail on any dialog that opens (STYLE §10).

The shared fixtures (`home`, `default_model_dir`, `tiny_model_dir`) live in tests/conftest.py: the
default model is converted once per session and linked into each test's home, so the wizard's
preselected "default" resolves at once; the tiny random Llama keeps training and planning fast.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402
from PySide6.QtWidgets import QDialog, QFileDialog, QInputDialog, QMessageBox, QWizard  # noqa: E402

from ui import tasks  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def main_thread_gc(qapp):
    """As in the app: cycles are collected on the UI thread only, never by a worker thread (ui/main_thread_gc.py)."""
    from ui.main_thread_gc import MainThreadGC

    collector = MainThreadGC()
    yield collector
    collector.stop()


class UnexpectedDialog(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_dialogs(monkeypatch):
    """Any message box, file chooser or modal dialog fails the test instead of blocking it."""

    def refuse(name):
        def raiser(*args, **kwargs):
            raise UnexpectedDialog(f"a dialog was opened: {name}{args[1:3] if len(args) > 1 else ''}")
        return raiser

    for name in ("critical", "warning", "information", "question", "about"):
        monkeypatch.setattr(QMessageBox, name, staticmethod(refuse(f"QMessageBox.{name}")))
    for name in ("exec", "open", "show"):
        monkeypatch.setattr(QMessageBox, name, refuse(f"QMessageBox.{name}"))
    for name in ("getOpenFileName", "getOpenFileNames", "getSaveFileName", "getExistingDirectory"):
        monkeypatch.setattr(QFileDialog, name, staticmethod(refuse(f"QFileDialog.{name}")))
    for name in ("getText", "getInt", "getDouble", "getItem"):
        monkeypatch.setattr(QInputDialog, name, staticmethod(refuse(f"QInputDialog.{name}")))
    monkeypatch.setattr(QDialog, "exec", refuse("QDialog.exec"))


@pytest.fixture
def make_wizard(qtbot, home, default_model_dir):
    """Open the wizard (optionally on another model); closes it, stops its run and joins its work afterwards."""
    from ui.wizard import NewFineTuneWizard

    opened = []

    def make(model: str = "default", data: str | None = None) -> NewFineTuneWizard:
        wizard = NewFineTuneWizard(model=model, data=data)
        qtbot.addWidget(wizard)
        wizard.show()
        opened.append(wizard)
        return wizard

    yield make
    for wizard in opened:
        wizard.close()
        job = wizard.train_page.job
        if job is not None:
            job.stop()
            assert job.wait(60) is not None, "the trainer did not stop within 60 s after the window closed"
    assert tasks.wait_idle(60000), "background work still running 60 s after the test"


@pytest.fixture
def advance(qtbot):
    """advance(wizard): wait for the current page to be complete, then press Next as a person would."""

    def press_next(wizard, timeout: int = 30000):
        page = wizard.currentPage()
        qtbot.waitUntil(page.isComplete, timeout=timeout)
        next_button = wizard.button(QWizard.NextButton)
        assert next_button.isEnabled()
        next_button.click()
        assert wizard.currentPage() is not page
        return wizard.currentPage()

    return press_next
