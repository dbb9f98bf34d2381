"""Light, dark, or the system's colours.

Qt 6.8+ can ask the platform for a colour scheme (`QStyleHints.setColorScheme`); where the platform
does not follow (older Qt, X11 without a theme plugin, offscreen) a palette of our own is set, so the
choice always shows.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette

DARK = {
    QPalette.Window: "#2b2d31", QPalette.WindowText: "#e3e5e8", QPalette.Base: "#1e1f22",
    QPalette.AlternateBase: "#26282c", QPalette.ToolTipBase: "#1e1f22", QPalette.ToolTipText: "#e3e5e8",
    QPalette.Text: "#e3e5e8", QPalette.Button: "#35373c", QPalette.ButtonText: "#e3e5e8",
    QPalette.BrightText: "#ff6b6b", QPalette.Highlight: "#3d6fb4", QPalette.HighlightedText: "#ffffff",
    QPalette.Link: "#79a8ff", QPalette.PlaceholderText: "#8b9099", QPalette.Light: "#45484e",
    QPalette.Midlight: "#3a3c41", QPalette.Mid: "#4a4d53", QPalette.Dark: "#1a1b1e", QPalette.Shadow: "#000000",
}
LIGHT = {
    QPalette.Window: "#efefef", QPalette.WindowText: "#1f2933", QPalette.Base: "#ffffff",
    QPalette.AlternateBase: "#f5f6f8", QPalette.ToolTipBase: "#ffffdc", QPalette.ToolTipText: "#000000",
    QPalette.Text: "#1f2933", QPalette.Button: "#efefef", QPalette.ButtonText: "#1f2933",
    QPalette.BrightText: "#ffffff", QPalette.Highlight: "#3071c8", QPalette.HighlightedText: "#ffffff",
    QPalette.Link: "#1d4f91", QPalette.PlaceholderText: "#8a8f98", QPalette.Light: "#ffffff",
    QPalette.Midlight: "#e3e3e3", QPalette.Mid: "#b8b8b8", QPalette.Dark: "#9f9f9f", QPalette.Shadow: "#767676",
}
DISABLED_TEXT = {"dark": "#6f737a", "light": "#9aa0a6"}


def palette(name: str) -> QPalette:
    pal = QPalette()
    for role, colour in (DARK if name == "dark" else LIGHT).items():
        pal.setColor(role, QColor(colour))
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        pal.setColor(QPalette.Disabled, role, QColor(DISABLED_TEXT[name]))
    return pal


def apply(name: str) -> None:
    """'light', 'dark' or 'system', for the whole application, at once."""
    app = QGuiApplication.instance()
    if app is None:
        return
    hints = app.styleHints()
    can_ask = hasattr(hints, "setColorScheme")  # Qt 6.8+
    if name == "system":
        if can_ask:
            hints.unsetColorScheme()
        app.setPalette(QPalette())  # back to the platform's own palette
        return
    wanted = Qt.ColorScheme.Dark if name == "dark" else Qt.ColorScheme.Light
    if can_ask:
        hints.setColorScheme(wanted)
    if can_ask and hints.colorScheme() == wanted:
        app.setPalette(QPalette())  # the platform switched its palette itself
    else:
        app.setPalette(palette(name))


def is_dark() -> bool:
    app = QGuiApplication.instance()
    return app is not None and app.palette().color(QPalette.Window).lightness() < 128


def muted(widget):
    """Secondary text (hints, captions) in the palette's placeholder colour, so it follows light and dark."""
    widget.setForegroundRole(QPalette.PlaceholderText)
    return widget
