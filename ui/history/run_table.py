"""The list of runs: one row per run with its figures, sortable, several rows selectable."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem

from app.history_service import RunSummary, disk_text
from core.words import duration, when

COLUMNS = ["Run", "Project", "Status", "Model", "Strategy", "Dataset", "Steps", "Final loss", "Best train loss",
           "Duration", "Disk"]
STATUS_COLOURS = {"done": "#3b7d4f", "running": "#1d4f91", "failed": "#b03a3c", "interrupted": "#9a6a00"}


def loss_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def lowest_text(evals: list[tuple[int, float]], kept_step: int | None = None) -> str:
    """'2.9146 at step 60' (', its weights kept' when best/ holds that step), '—' without validation checks."""
    if not evals:
        return "—"
    step, loss = min(evals, key=lambda point: point[1])
    return f"{loss_text(loss)} at step {step}" + (", its weights kept" if kept_step == step else "")


class RunItem(QTreeWidgetItem):
    """A row that sorts numbers as numbers (losses, durations, steps) and runs by creation time."""

    def __init__(self, run: RunSummary):
        # A named run shows its name alone, so the column stays as narrow as an id; the id is in its tooltip.
        super().__init__([run.name or run.id, run.project, run.status, run.model, run.strategy, run.dataset,
                          f"{run.steps_done}/{run.total_steps}" if run.total_steps else str(run.steps_done),
                          loss_text(run.final_loss), loss_text(run.best_loss), duration(run.duration_s),
                          disk_text(run.disk_bytes)])
        self.run = run
        self.setToolTip(0, (f"Run {run.id}, created " if run.name else "Created ") + when(run.created_at)
                        + (f": {run.outcome}" if run.outcome else ""))
        self.setToolTip(2, run.outcome or run.status)
        if run.status in STATUS_COLOURS:
            self.setForeground(2, QBrush(QColor(STATUS_COLOURS[run.status])))
        for col in range(6, len(COLUMNS)):
            self.setTextAlignment(col, Qt.AlignRight | Qt.AlignVCenter)

    def sort_key(self, column: int):
        r = self.run
        keys = {0: r.created_at, 6: r.steps_done, 7: r.final_loss, 8: r.best_loss, 9: r.duration_s,
                10: r.disk_bytes}
        if column in keys:
            value = keys[column]
            return (value is None, value or 0)
        return (False, self.text(column).lower())

    def __lt__(self, other: "RunItem") -> bool:
        column = self.treeWidget().sortColumn() if self.treeWidget() else 0
        return self.sort_key(column) < other.sort_key(column)


class RunTable(QTreeWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(COLUMNS)
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(True)
        self.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSortingEnabled(True)
        self.sortByColumn(0, Qt.DescendingOrder)
        self.setAccessibleName("Runs")
        for col in range(6, len(COLUMNS)):  # figures line up on the right, their titles too
            self.headerItem().setTextAlignment(col, Qt.AlignRight | Qt.AlignVCenter)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.Stretch)

    def set_runs(self, runs: list[RunSummary]) -> None:
        """Show these runs, keeping the selection (and the current row) where the runs are still there."""
        selected, current = set(self.selected_ids()), self.currentItem()
        current_id = current.run.id if isinstance(current, RunItem) else None
        self.blockSignals(True)
        self.clear()
        items = [RunItem(r) for r in runs]
        self.addTopLevelItems(items)
        for item in items:
            item.setSelected(item.run.id in selected)
            if item.run.id == current_id:
                self.setCurrentItem(item, 0, self.selectionModel().SelectionFlag.NoUpdate)
        self.blockSignals(False)
        self.itemSelectionChanged.emit()

    def selected_ids(self) -> list[str]:
        """The selected runs, in the order they are listed."""
        items = [self.topLevelItem(i) for i in range(self.topLevelItemCount())]
        return [item.run.id for item in items if item.isSelected()]

    def select(self, run_ids: list[str]) -> None:
        self.blockSignals(True)
        self.clearSelection()
        for i in range(self.topLevelItemCount()):
            item = self.topLevelItem(i)
            if item.run.id in run_ids:
                item.setSelected(True)
                self.setCurrentItem(item, 0, self.selectionModel().SelectionFlag.NoUpdate)
                self.scrollToItem(item)
        self.blockSignals(False)
        self.itemSelectionChanged.emit()

    def run(self, run_id: str) -> RunSummary | None:
        for i in range(self.topLevelItemCount()):
            if self.topLevelItem(i).run.id == run_id:
                return self.topLevelItem(i).run
        return None
