"""The painted charts take their colours from the theme: dark under dark, and they follow a switch."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from ui import theme
from ui.charts import PALETTE, LengthHistogram, LossChart, MemoryBar
from ui.curves_chart import CurvesChart, run_series


@pytest.fixture
def themed(qtbot):
    def apply(name: str) -> None:
        theme.apply(name)
        QApplication.processEvents()  # Qt posts the palette change to the widgets

    yield apply
    theme.apply("system")  # the next tests see the palette they started with


def background(widget) -> QColor:
    """A pixel of the chart's own background, from a real render."""
    widget.resize(400, 200)
    return widget.grab().toImage().pixelColor(2, 2)


def sample_loss() -> LossChart:
    chart = LossChart()
    chart.set_total(10)
    for step in range(1, 6):
        chart.add_point(step, 2.0 / step)
    chart.add_eval(5, 0.6)
    return chart


def test_charts_built_under_dark_are_dark_and_follow_a_switch(themed, qtbot):
    themed("dark")
    curves = CurvesChart()
    curves.set_series(run_series({"a": {"train": [(1, 2.0), (2, 1.5)], "eval": [(2, 1.7)]}}))
    charts = [sample_loss(), curves]
    for chart in charts:
        qtbot.addWidget(chart)
        assert background(chart).lightness() < 60, type(chart).__name__
    themed("light")  # built under dark, then switched: Qt repaints with the new palette
    for chart in charts:
        assert background(chart).lightness() > 200, type(chart).__name__


def test_ink_keeps_series_readable_and_text_on_the_theme(themed, qtbot):
    themed("dark")
    dark = theme.ChartInk(LossChart().palette())
    assert dark.dark and dark.text.lightness() > 180 and dark.muted.lightness() > dark.background.lightness() + 60
    assert all(dark.series(c).lightnessF() >= 0.6 for c in PALETTE)  # mid-tones lifted off the dark background
    themed("light")
    light = theme.ChartInk(LossChart().palette())
    assert not light.dark and light.text.lightness() < 80
    assert [light.series(c).name() for c in PALETTE] == PALETTE  # light keeps the usual colours


def test_bar_and_histogram_paint_under_both_themes(themed, qtbot):
    bar, histogram = MemoryBar(), LengthHistogram()
    bar.set_memory({"weights": 2 << 30, "activations": 3 << 30}, 4 << 30)  # over the limit: the warning line
    histogram.set_histogram({"edges": [0, 10, 20, 30], "counts": [3, 5, 1]}, cutoff=25)
    qtbot.addWidget(bar)
    qtbot.addWidget(histogram)
    for name in ("dark", "light"):
        themed(name)
        for widget in (bar, histogram):
            widget.resize(400, 120)
            assert not widget.grab().toImage().isNull()


def test_a_widget_with_a_style_sheet_hears_of_the_switch(themed, qtbot):
    """Qt alone would not tell it (a child whose sheet sets its colours); widgets that pick colours per theme,
    like the wizard's step list, rely on this."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    heard = []

    class Styled(QWidget):
        def changeEvent(self, event):
            heard.append(event.type())
            super().changeEvent(event)

    themed("light")
    window = QWidget()
    child = Styled(objectName="styled")
    child.setStyleSheet("QWidget#styled { background: #ffffff; }")
    QVBoxLayout(window).addWidget(child)
    qtbot.addWidget(window)
    window.show()
    QApplication.processEvents()
    heard.clear()
    themed("dark")
    assert QEvent.PaletteChange in heard


@pytest.mark.parametrize("n, text", [(3 << 30, "3.00 GiB"), (304 << 20, "304 MiB"), (12 << 10, "12 KiB"),
                                     (-(304 << 20), "-304 MiB")])  # a calibration that lowers the estimate
def test_memory_terms_read_in_the_unit_of_their_size(n, text):
    from ui.charts import _size

    assert _size(n) == text
