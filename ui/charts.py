"""Small painted widgets: the live loss curve and other per-step curves (learning rate, speed), the planned-memory bar and the token-length histogram
(no QtCharts needed). Their colours come from the palette (ui.theme.ChartInk), so they follow the theme."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ui.theme import ChartInk

GIB = 1024**3
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]


class StepChart(QWidget):
    """Values per step as a line (and optional dots), the x axis spanning the whole run. `points` is the
    line; `label` names it in the legend; `fmt` writes its axis values; `empty` shows until a point comes."""

    def __init__(self, label: str, empty: str, fmt: str = "{:.3g}", colour: str = PALETTE[0], parent=None):
        super().__init__(parent)
        self.label, self.empty, self.fmt, self.colour = label, empty, fmt, colour
        self.points: list[tuple[int, float]] = []
        self.total_steps = 0
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(480, 190)

    def clear(self) -> None:
        self.points, self.total_steps = [], 0
        self.update()

    def set_total(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.update()

    def add_point(self, step: int, value: float) -> None:
        self.points.append((step, value))
        self.update()

    def dots(self) -> list[tuple[int, float]]:
        """Points drawn as dots in the second colour (the loss chart's validation losses)."""
        return []

    def legend(self) -> str:
        return f"— {self.label}"

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fm = QFontMetrics(self.font())
        ink = ChartInk(self.palette())
        p.fillRect(self.rect(), ink.background)
        left, bottom = fm.horizontalAdvance("00.000e-0") + 12, fm.height() + 8
        area = QRectF(left, 10, max(10, self.width() - left - 14), max(10, self.height() - bottom - 18))
        p.setPen(QPen(ink.frame, 1))
        p.drawRect(area)
        dots = self.dots()
        values = [v for _, v in self.points + dots]
        if not values:
            p.setPen(ink.muted)
            p.drawText(area, Qt.AlignCenter | Qt.TextWordWrap, self.empty)
            return
        lo, hi = min(values), max(values)
        if hi - lo < 1e-12 * max(1.0, abs(hi)):
            lo, hi = lo - max(abs(lo) * 0.1, 1e-9), hi + max(abs(hi) * 0.1, 1e-9)
        pad = (hi - lo) * 0.08
        lo, hi = lo - pad, hi + pad
        span = max(self.total_steps, max(s for s, _ in self.points + dots), 1)
        inner = area.adjusted(6, 0, -6, 0)  # so end points are not cut by the frame

        def at(step: float, value: float) -> QPointF:
            return QPointF(inner.left() + inner.width() * step / span,
                           area.bottom() - area.height() * (value - lo) / (hi - lo))

        p.setPen(ink.muted)
        for value in (lo + pad, hi - pad):
            y = at(0, value).y()
            p.drawText(QRectF(0, y - fm.height() / 2, left - 6, fm.height()), Qt.AlignRight | Qt.AlignVCenter,
                       self.fmt.format(value))
        under = QRectF(area.left(), area.bottom() + 4, area.width(), fm.height())
        p.drawText(under, Qt.AlignLeft, "step 0")
        p.drawText(under, Qt.AlignRight, f"{span}")
        if self.points:
            path = QPainterPath(at(*self.points[0]))
            for step, value in self.points[1:]:
                path.lineTo(at(step, value))
            p.setPen(QPen(ink.series(self.colour), 2))
            p.setBrush(Qt.NoBrush)
            p.drawPath(path)
            if len(self.points) == 1:
                p.setBrush(ink.series(self.colour))
                p.drawEllipse(at(*self.points[0]), 3, 3)
        p.setPen(Qt.NoPen)
        p.setBrush(ink.series(PALETTE[1]))
        for step, value in dots:
            p.drawEllipse(at(step, value), 4, 4)
        p.setPen(ink.muted)
        p.drawText(under, Qt.AlignHCenter, self.legend())


class LossChart(StepChart):
    """Training loss per step as a line, validation loss as dots."""

    def __init__(self, parent=None):
        super().__init__("training loss", "The loss curve appears here once training starts.", parent=parent)
        self.eval_points: list[tuple[int, float]] = []
        self.setMinimumHeight(150)

    def clear(self) -> None:
        self.eval_points = []
        super().clear()

    def add_eval(self, step: int, loss: float) -> None:
        self.eval_points.append((step, loss))
        self.update()

    def dots(self) -> list[tuple[int, float]]:
        return self.eval_points

    def legend(self) -> str:
        return super().legend() + ("   ● validation loss" if self.eval_points else "")


class MemoryBar(QWidget):
    """One horizontal bar: each planned memory term a coloured segment, the device's limit its end."""

    ROW = 20

    def __init__(self, parent=None):
        super().__init__(parent)
        self.terms: dict[str, int] = {}
        self.limit = 0
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def set_memory(self, terms: dict[str, int], limit: int) -> None:
        self.terms, self.limit = dict(terms), int(limit)
        self.setFixedHeight(self._height())
        self.update()

    def _height(self) -> int:
        rows = (len(self.terms) + 1) // 2
        return 26 + 8 + rows * self.ROW + 4

    def sizeHint(self) -> QSize:
        return QSize(480, self._height())

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fm = QFontMetrics(self.font())
        ink = ChartInk(self.palette())
        total = sum(self.terms.values())
        full = max(self.limit, total, 1)
        bar = QRectF(0.5, 0.5, self.width() - 1, 26)
        p.setPen(QPen(ink.frame, 1))
        p.setBrush(ink.track)
        p.drawRoundedRect(bar, 4, 4)
        x = bar.left()
        p.setPen(Qt.NoPen)
        for i, value in enumerate(self.terms.values()):
            w = bar.width() * value / full
            if value > 0:
                w = max(w, 2.0)
            p.setBrush(ink.series(PALETTE[i % len(PALETTE)]))
            p.drawRect(QRectF(x, bar.top() + 1, min(w, bar.right() - x), bar.height() - 2))
            x += w
        if total > self.limit > 0:  # the part beyond what the device offers
            p.setPen(QPen(ink.warn, 2))
            limit_x = bar.left() + bar.width() * self.limit / full
            p.drawLine(QPointF(limit_x, bar.top() - 0), QPointF(limit_x, bar.bottom()))
        p.setPen(ink.text)
        share = f" ({100 * total / self.limit:.0f}%)" if self.limit else ""
        caption = f"{total / GIB:.2f} GiB of {self.limit / GIB:.1f} GiB{share}"
        p.drawText(bar.adjusted(8, 0, -8, 0), Qt.AlignRight | Qt.AlignVCenter, caption)
        col_w = self.width() / 2
        for i, (name, value) in enumerate(self.terms.items()):
            row, col = divmod(i, 2)
            top = bar.bottom() + 8 + row * self.ROW
            left = col * col_w
            p.setPen(Qt.NoPen)
            p.setBrush(ink.series(PALETTE[i % len(PALETTE)]))
            p.drawRoundedRect(QRectF(left, top + (self.ROW - 12) / 2, 12, 12), 2, 2)
            p.setPen(ink.text)
            text = fm.elidedText(f"{name}: {_size(value)}", Qt.ElideRight, int(col_w - 24))
            p.drawText(QRectF(left + 18, top, col_w - 20, self.ROW), Qt.AlignLeft | Qt.AlignVCenter, text)


class LengthHistogram(QWidget):
    """Rows per token-length bin, with an optional cut-off line (the sequence length: rows right of it are cut)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.edges: list[float] = []
        self.counts: list[int] = []
        self.cutoff: int | None = None
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def sizeHint(self) -> QSize:
        return QSize(480, 110)

    def set_histogram(self, histogram: dict | None, cutoff: int | None = None) -> None:
        self.edges = list((histogram or {}).get("edges", []))
        self.counts = list((histogram or {}).get("counts", []))
        self.cutoff = cutoff
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        fm = QFontMetrics(self.font())
        area = QRectF(4, 4, self.width() - 8, self.height() - fm.height() - 10)
        ink = ChartInk(self.palette())
        p.setPen(QPen(ink.frame))
        p.drawLine(area.bottomLeft(), area.bottomRight())
        if not self.counts or len(self.edges) != len(self.counts) + 1:
            p.setPen(ink.muted)
            p.drawText(area, Qt.AlignCenter, "Token lengths appear here once a model is chosen.")
            return
        first = next(i for i, c in enumerate(self.counts + [1]) if c)  # start at the first bin with rows
        # A cut-off far right of every row (a long context) would squash the bars; it is named instead.
        on_chart = self.cutoff is not None and self.cutoff <= 1.5 * self.edges[-1]
        lo, hi = self.edges[min(first, len(self.counts) - 1)], max(self.edges[-1], self.cutoff if on_chart else 0)
        span = max(1e-9, hi - lo)
        top = max(self.counts) or 1

        def x(value: float) -> float:
            return area.left() + (value - lo) / span * area.width()

        for count, a, b in zip(self.counts, self.edges, self.edges[1:]):
            h = area.height() * count / top
            cut = self.cutoff is not None and a >= self.cutoff
            p.fillRect(QRectF(x(a) + 0.5, area.bottom() - h, max(1.0, x(b) - x(a) - 1), h),
                       ink.series("#e15759" if cut else PALETTE[0]))
        p.setPen(ink.muted)
        baseline = area.bottom() + fm.ascent() + 4
        p.drawText(QPointF(area.left(), baseline), f"{lo:.0f} tokens")
        right = f"{self.edges[-1]:.0f}"
        p.drawText(QPointF(x(self.edges[-1]) - fm.horizontalAdvance(right), baseline), right)
        if self.cutoff is None:
            return
        p.setPen(ink.warn)
        if not on_chart:
            p.drawText(area, Qt.AlignRight | Qt.AlignTop, f"cut-off at {self.cutoff} →")
            return
        label = f"cut-off {self.cutoff}"
        at = x(self.cutoff)
        left = at + 4 + fm.horizontalAdvance(label) > area.right()  # near the right edge: write it on the left
        p.drawText(QPointF(at - 4 - fm.horizontalAdvance(label) if left else at + 4, area.top() + fm.ascent()), label)
        p.setPen(QPen(ink.warn, 1.5, Qt.DashLine))
        p.drawLine(QPointF(at, area.top()), QPointF(at, area.bottom()))


def _size(n: int) -> str:
    """'1.50 GiB', '304 MiB', '12 KiB'; a negative term (a calibration that lowers the estimate) in the unit of its
    size, '-304 MiB'."""
    if abs(n) >= GIB:
        return f"{n / GIB:.2f} GiB"
    if abs(n) >= 1024**2:
        return f"{n / 1024**2:.0f} MiB"
    return f"{n / 1024:.0f} KiB"
