"""Light, dark, or the system's colours.

Qt 6.8+ can ask the platform for a colour scheme (`QStyleHints.setColorScheme`); where the platform
does not follow (older Qt, X11 without a theme plugin, offscreen) a palette of our own is set, so the
choice always shows.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

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
    else:
        wanted = Qt.ColorScheme.Dark if name == "dark" else Qt.ColorScheme.Light
        if can_ask:
            hints.setColorScheme(wanted)
        if can_ask and hints.colorScheme() == wanted:
            app.setPalette(QPalette())  # the platform switched its palette itself
        else:
            app.setPalette(palette(name))
    _tell_styled_widgets()


def _tell_styled_widgets() -> None:
    """Qt sends no PaletteChange to a widget with a style sheet (its palette comes from the sheet), so a
    widget that picks colours for the theme would keep the old ones, and palette(...) in a sheet is only read
    when the sheet is set: tell them, and set their sheets again."""
    if not isinstance(QGuiApplication.instance(), QApplication):
        return
    for widget in QApplication.allWidgets():
        if widget.styleSheet():
            QApplication.sendEvent(widget, QEvent(QEvent.PaletteChange))
            widget.setStyleSheet(widget.styleSheet())


def is_dark() -> bool:
    app = QGuiApplication.instance()
    return app is not None and app.palette().color(QPalette.Window).lightness() < 128


def muted(widget):
    """Secondary text (hints, captions) in the palette's placeholder colour, so it follows light and dark."""
    widget.setForegroundRole(QPalette.PlaceholderText)
    return widget


class ChartInk:
    """A painted chart's colours, read from its widget's palette at paint time: the chart matches the theme,
    and since Qt repaints a widget when the application palette changes, it follows a switch at once."""

    def __init__(self, pal: QPalette):
        self.background = pal.color(QPalette.Base)
        self.text = pal.color(QPalette.Text)
        self.dark = self.background.lightness() < 128
        self.frame = mix(self.background, self.text, 0.25)  # the plot's box and axis lines
        self.muted = mix(self.background, self.text, 0.6)  # tick labels, captions, empty-chart text
        self.track = mix(self.background, self.text, 0.06)  # the unfilled part of a bar
        self.warn = QColor("#ff6b6b" if self.dark else "#b03a3c")  # a limit or cut-off

    def series(self, colour: str | QColor) -> QColor:
        """A series colour that reads on this background: mid-tones made lighter on a dark one."""
        c = QColor(colour)
        if self.dark and c.lightnessF() < 0.62:
            c.setHslF(max(c.hslHueF(), 0.0), c.hslSaturationF(), 0.62, c.alphaF())
        return c


def mix(a: QColor, b: QColor, t: float) -> QColor:
    """The colour t of the way from a to b."""
    return QColor.fromRgbF(*(x + (y - x) * t for x, y in zip(a.getRgbF()[:3], b.getRgbF()[:3])))
