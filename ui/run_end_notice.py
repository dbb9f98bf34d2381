"""Telling the person a run has ended while they were looking elsewhere.

A run takes minutes to days, and nobody watches its window all that time: when it ends (finished, stopped,
failed, or its trainer killed) and the window is not the one in front (another is, or it is minimised), the window
asks for attention (its taskbar entry flashes, its Dock icon bounces: QApplication.alert, until it is looked at)
and, where the desktop has a notification area, a notification says how the run ended and its last loss; clicking
it brings the window back. Someone watching the window sees the outcome on the page and is told nothing more.
Settings' "Tell me when a run ends" turns it off.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QStyle, QSystemTrayIcon, QWidget

from app import user_settings
from core.errors import KnownError
from ui.pages.trainer_events import sentence

SHOWN_MS = 15000  # how long the notification stays, where the desktop lets an app say
TITLES = {"done": "Run finished", "stopped": "Run stopped", "failed": "Run failed", "killed": "Run ended"}
_tray: QSystemTrayIcon | None = None  # one notification-area icon for the app, shown while it tells
_told_from: list[QWidget] = []  # the window the last notification came from: a click on it brings that back


def words(run: dict, outcome) -> tuple[str, str]:
    """(title, text) of the notification: how `run` (its history row) ended, by its name where it has one."""
    label = run.get("name") or run.get("id") or "The run"
    loss = run.get("final_loss")
    figures = f" Training loss {loss:.4f} at the end." if outcome.ok and isinstance(loss, float) else ""
    return (f"Tuneforge: {TITLES.get(outcome.status, 'Run ended').lower()}",
            f"{label}: {sentence(outcome.text, capital=False)}{figures}")


def watching(window: QWidget) -> bool:
    """Whether the person has the window in front of them (then the page itself says how the run ended)."""
    return window.isActiveWindow() and not window.isMinimized()


def wanted() -> bool:
    try:
        return user_settings.load().tell_when_done
    except KnownError:  # a broken settings file: the default (the Settings page says what is wrong with it)
        return user_settings.UserSettings().tell_when_done


def tell(window: QWidget, run: dict, outcome) -> tuple[str, str] | None:
    """Tell the person how `run` ended unless they are watching `window`, closed it (closing stops the run: they
    know), or asked not to be told; the (title, text) told, or None."""
    if not window.isVisible() or watching(window) or not wanted():
        return None
    title, text = words(run, outcome)
    QApplication.alert(window, 0)  # until the window is activated
    tray = _notification_area(window)
    if tray is not None:
        tray.showMessage(title, text, QSystemTrayIcon.Critical if not outcome.ok else QSystemTrayIcon.Information,
                         SHOWN_MS)
        QTimer.singleShot(SHOWN_MS + 1000, tray.hide)  # the icon goes with the message
    return title, text


def _notification_area(window: QWidget) -> QSystemTrayIcon | None:
    """The app's notification-area icon, made once; None where the desktop has no notification area."""
    global _tray
    if not QSystemTrayIcon.isSystemTrayAvailable() or not QSystemTrayIcon.supportsMessages():
        return None
    if _tray is None:
        app = QApplication.instance()
        _tray = QSystemTrayIcon(app.windowIcon() if not app.windowIcon().isNull()
                                else app.style().standardIcon(QStyle.SP_ComputerIcon), app)
        _tray.setToolTip("Tuneforge")
        _tray.messageClicked.connect(_bring_back)
    _told_from[:] = [window]
    _tray.show()
    return _tray


def _bring_back() -> None:
    try:
        window = _told_from[0]
        window.showNormal()
        window.raise_()
        window.activateWindow()
    except (IndexError, RuntimeError):  # the window is gone
        pass
