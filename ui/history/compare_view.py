"""Two runs side by side: their results, the settings that differ, and both loss curves on one chart."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QLabel, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from app.history_service import Comparison
from core.words import counted, duration
from ui import theme
from ui.charts import PALETTE
from ui.curves_chart import CurvesChart, run_series
from ui.history.run_table import loss_text, lowest_text


def value_text(value) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value)


def short(run_id: str) -> str:
    """'…091512-a3f9': enough of an id to tell two runs apart in a legend."""
    return run_id if len(run_id) <= 12 else "…" + run_id[-11:]


class CompareView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.comparison: Comparison | None = None
        self.title = QLabel(wordWrap=True)
        self.table = QTableWidget(0, 3)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.setMinimumWidth(340)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        self.table.setAccessibleName("Differences between the two runs")
        self.chart = CurvesChart()
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self.chart)
        split.setChildrenCollapsible(False)
        split.setSizes([440, 560])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(split, 1)

    def show_comparison(self, comparison: Comparison) -> None:
        self.comparison = comparison
        a, b = comparison.runs
        n = len(comparison.differences)
        self.title.setText(f"Comparing <b style='color:{PALETTE[0]}'>{a.id}</b> and "
                           f"<b style='color:{PALETTE[1]}'>{b.id}</b>: "
                           + (f"{counted(n, 'setting')} differ{'s' if n == 1 else ''}." if n
                              else "their settings are the same."))
        results = [("status", a.status, b.status), ("final loss", loss_text(a.final_loss), loss_text(b.final_loss)),
                   ("best train loss", loss_text(a.best_loss), loss_text(b.best_loss)),
                   ("validation loss", loss_text(a.eval_loss), loss_text(b.eval_loss)),
                   ("lowest validation", *(lowest_text(comparison.curves[r.id].get("eval", [])) for r in (a, b))),
                   ("duration", duration(a.duration_s), duration(b.duration_s)),
                   ("dataset", a.dataset, b.dataset)] + [
            (f"held-out loss: {Path(f).name}", loss_text(x), loss_text(y)) for f, x, y in comparison.held_out]
        rows = results + [(k, value_text(x), value_text(y)) for k, x, y in comparison.differences]
        self.table.clearContents()
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(["", short(a.id), short(b.id)])
        for col, colour in ((1, PALETTE[0]), (2, PALETTE[1])):
            self.table.horizontalHeaderItem(col).setForeground(QBrush(QColor(colour)))
        for row, (key, x, y) in enumerate(rows):
            for col, text in enumerate((key, x, y)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                if row < len(results):  # results first, set apart from the settings below them
                    item.setBackground(QBrush(QColor("#2a3441" if theme.is_dark() else "#eef2f7")))
                self.table.setItem(row, col, item)
        self.chart.set_series(run_series(comparison.curves, {a.id: short(a.id), b.id: short(b.id)}))

    @property
    def differing_keys(self) -> list[str]:
        return [k for k, _, _ in self.comparison.differences] if self.comparison else []
