"""The table of models found on this machine (app.model_catalog), with the planner's fit answer for each."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRect, Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QStyledItemDelegate, QTreeWidget, QTreeWidgetItem

from core.plan_text import size_text
from core.words import short_count
from ui import theme

COLUMNS = ("Model", "Source", "Size", "Parameters", "Architecture", "Context", "Fits this machine")
FIT = len(COLUMNS) - 1
# (light theme, dark theme) ink for the fit phrase, by the catalog's level
LEVEL_INK = {"good": ("#2e7d32", "#81c784"), "slow": ("#9a5b00", "#ffb74d"), "no": ("#b03a3c", "#ff6b6b")}


class WrappingDelegate(QStyledItemDelegate):
    """Row heights that fit the fit phrase wrapped at its column's width (Qt measures text on one line)."""

    def sizeHint(self, option, index):
        size = super().sizeHint(option, index)
        width = self.parent().columnWidth(index.column()) - 10  # the cell's text margins
        text = index.data() or ""
        if width > 20 and text:
            lines = option.fontMetrics.boundingRect(QRect(0, 0, width, 10_000), Qt.TextWordWrap, text)
            size.setHeight(max(size.height(), lines.height() + 4))
        return size


class ModelList(QTreeWidget):
    """The catalog's table. The name and the fit phrase share what the short columns leave, the phrase
    wrapping onto more lines (rows grow) rather than being cut short in a narrow window."""

    def __init__(self):
        super().__init__(rootIsDecorated=False, uniformRowHeights=False, alternatingRowColors=True, wordWrap=True)
        self.setHeaderLabels(COLUMNS)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        header = self.header()
        header.setStretchLastSection(False)
        for column in range(1, FIT):
            header.setSectionResizeMode(column, QHeaderView.ResizeToContents)
        self.setItemDelegateForColumn(FIT, WrappingDelegate(self))
        # Row heights are measured once per layout; a new width needs a new one for the wrapping.
        header.sectionResized.connect(lambda *_: QTimer.singleShot(0, self.doItemsLayout))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.share_width()

    def share_width(self) -> None:
        free = self.viewport().width() - sum(self.columnWidth(c) for c in range(1, FIT))
        fit = max(150, int(free * 0.55))
        self.setColumnWidth(0, max(90, free - fit))
        self.setColumnWidth(FIT, max(150, free - self.columnWidth(0)))

    def show_entries(self, entries) -> None:
        """One row per app.model_catalog.CatalogEntry, kept on the row (Qt.UserRole of column 0)."""
        dark = theme.is_dark()
        self.clear()
        for entry in entries:
            m = entry.model
            item = QTreeWidgetItem([m.label, m.source, size_text(m.size_bytes), short_count(m.params), m.architecture,
                                    f"{m.context:,}" if m.context else "", entry.fit])
            item.setData(0, Qt.UserRole, entry)
            tip = "\n".join(x for x in (m.name, m.path if m.path != m.name else "", m.note, entry.fit) if x)
            for column in range(len(COLUMNS)):
                item.setToolTip(column, tip)
            for column in (2, 3, 5):
                item.setTextAlignment(column, Qt.AlignRight | Qt.AlignVCenter)
            if entry.level in LEVEL_INK:
                item.setForeground(FIT, QColor(LEVEL_INK[entry.level][dark]))
            if m.problem:
                for column in range(FIT):
                    item.setForeground(column, self.palette().color(QPalette.PlaceholderText))
            self.addTopLevelItem(item)
        self.share_width()  # the short columns were just sized to their new contents

    def select_model(self, name: str, path: str | None) -> None:
        """Select the row of `name`, or of the folder it resolved to; none when it is not listed."""
        for i in range(self.topLevelItemCount()):
            entry = self.topLevelItem(i).data(0, Qt.UserRole).model
            if entry.name == name or (path and entry.path and Path(entry.path) == Path(path)):
                self.setCurrentItem(self.topLevelItem(i))
                return
        self.clearSelection()
        self.setCurrentItem(None)
