"""Several loss curves on one pair of axes, painted like the other charts (ui/charts.py): comparing runs.

Each series is a colour and a style: a solid line for training loss, a dashed line with dots for
validation loss, so two runs read as two colours and two splits as two styles. Background, axes and
text come from the palette, and series colours are lightened on a dark one (ui.theme.ChartInk).
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.charts import PALETTE
from ui.theme import ChartInk


@dataclass
class Series:
    label: str
    points: list[tuple[int, float]]
    color: str
    dashed: bool = False  # validation: dashed, with a dot on each measurement


class CurvesChart(QWidget):
    def __init__(self, empty_text: str = "Select two runs to see their loss curves.", parent=None):
        super().__init__(parent)
        self.series: list[Series] = []
        self.empty_text = empty_text
        self.setMinimumHeight(170)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(520, 240)

    def set_series(self, series: list[Series]) -> None:
        self.series = [s for s in series if s.points]
        self.update()

    def _legend(self, fm: QFontMetrics, width: float) -> list[list[tuple[Series, float]]]:
        """Legend entries in rows that fit the width: (series, entry width)."""
        rows: list[list[tuple[Series, float]]] = [[]]
        used = 0.0
        for s in self.series:
            w = 28 + fm.horizontalAdvance(s.label) + 16
            if rows[-1] and used + w > width:
                rows.append([])
                used = 0.0
            rows[-1].append((s, w))
            used += w
        return rows if rows[0] else []

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fm = QFontMetrics(self.font())
        ink = ChartInk(self.palette())
        p.fillRect(self.rect(), ink.background)
        left, bottom = fm.horizontalAdvance("00.000") + 12, fm.height() + 8
        legend = self._legend(fm, self.width() - left - 14)
        top = 8 + len(legend) * (fm.height() + 4)
        area = QRectF(left, top, max(10, self.width() - left - 14), max(10, self.height() - top - bottom - 6))
        p.setPen(QPen(ink.frame, 1))
        p.drawRect(area)
        points = [pt for s in self.series for pt in s.points]
        if not points:
            p.setPen(ink.muted)
            p.drawText(area, Qt.AlignCenter | Qt.TextWordWrap, self.empty_text)
            return
        lo, hi = min(v for _, v in points), max(v for _, v in points)
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        pad = (hi - lo) * 0.08
        span = max(max(s for s, _ in points), 1)
        inner = area.adjusted(6, 0, -6, 0)

        def at(step: float, value: float) -> QPointF:
            return QPointF(inner.left() + inner.width() * step / span,
                           area.bottom() - area.height() * (value - lo + pad) / (hi - lo + 2 * pad))

        p.setPen(ink.muted)
        for value in (lo, hi):
            y = at(0, value).y()
            p.drawText(QRectF(0, y - fm.height() / 2, left - 6, fm.height()), Qt.AlignRight | Qt.AlignVCenter,
                       f"{value:.3g}")
        axis = QRectF(area.left(), area.bottom() + 4, area.width(), fm.height())
        p.drawText(axis, Qt.AlignLeft, "step 0")
        p.drawText(axis, Qt.AlignRight, str(span))
        for s in self.series:
            pen = QPen(ink.series(s.color), 2, Qt.DashLine if s.dashed else Qt.SolidLine)
            path = QPainterPath(at(*s.points[0]))
            for step, value in s.points[1:]:
                path.lineTo(at(step, value))
            p.setPen(pen)
            p.setBrush(Qt.NoBrush)
            p.drawPath(path)
            if s.dashed or len(s.points) == 1:
                p.setPen(Qt.NoPen)
                p.setBrush(ink.series(s.color))
                for step, value in s.points:
                    p.drawEllipse(at(step, value), 3, 3)
        for row, entries in enumerate(legend):
            x, y = float(left), 6 + row * (fm.height() + 4) + fm.height() / 2
            for s, w in entries:
                p.setPen(QPen(ink.series(s.color), 2, Qt.DashLine if s.dashed else Qt.SolidLine))
                p.drawLine(QPointF(x, y), QPointF(x + 22, y))
                p.setPen(ink.text)
                p.drawText(QRectF(x + 28, y - fm.height() / 2, w - 28, fm.height()), Qt.AlignLeft | Qt.AlignVCenter,
                           s.label)
                x += w


def run_series(curves: dict[str, dict[str, list[tuple[int, float]]]],
               names: dict[str, str] | None = None) -> list[Series]:
    """A colour per run, solid training and dashed validation: the comparison's chart series."""
    series = []
    for i, (run_id, splits) in enumerate(curves.items()):
        color, name = PALETTE[i % len(PALETTE)], (names or {}).get(run_id, run_id)
        series.append(Series(f"{name} training", splits.get("train", []), color))
        series.append(Series(f"{name} validation", splits.get("eval", []), color, dashed=True))
    return series
