"""History: every run with its figures; one selected opens it (resume, try, export), two are compared, and
selected runs can be deleted (app.run_removal: their folders and history go, their exports stay) and one can
be named (shown beside its id, and usable wherever a run id is).

Reading the history and the metrics happens off the UI thread (app.history_service through ui.tasks).
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QInputDialog, QLabel, QMessageBox, QPushButton, QSplitter,
                               QStackedWidget, QVBoxLayout, QWidget)

from app import history_service as hs
from app import operations as ops
from app import run_removal
from core import history
from core.errors import KnownError
from core.plan_text import size_text
from ui import theme
from ui.error_panel import ErrorPanel
from ui.history.compare_view import CompareView
from ui.history.run_detail import RunDetailView
from ui.history.run_table import RunTable
from ui.pages.base import BusyLine
from ui.tasks import TaskGroup

ALL = "All projects"
HINT = "Select a run to open it, or two runs (Ctrl+click) to compare them."
EMPTY = "No runs yet: start one under New fine-tune."


def load(project: str | None, progress=None) -> tuple[list[str], list[hs.RunSummary]]:
    return hs.projects(), hs.run_summaries(project)


class HistoryPage(QWidget):
    running_changed = Signal(bool)
    train_more = Signal(str, str)  # a run's Train more (run id, weights), for the main window's new fine-tune

    def __init__(self, parent=None):
        super().__init__(parent)
        self.error = ErrorPanel()
        self.tasks = TaskGroup(self._failed)
        self.project_combo = QComboBox(accessibleName="Project")
        self.project_combo.addItem(ALL)
        self.project_combo.currentIndexChanged.connect(lambda _: self.refresh())
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the history again (F5).")
        self.refresh_button.setShortcut("F5")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        project_label = QLabel("&Project:")
        project_label.setBuddy(self.project_combo)
        top.addWidget(project_label)
        top.addWidget(self.project_combo)
        top.addWidget(self.refresh_button)
        self.delete_button = QPushButton("Delete…", enabled=False)
        self.delete_button.setToolTip("Delete the selected runs: their folders (checkpoints, trained results, logs) "
                                      "and their history. Exports stay. (Del)")
        self.delete_button.setShortcut("Del")
        self.delete_button.clicked.connect(self.ask_delete)
        top.addWidget(self.delete_button)
        self.rename_button = QPushButton("Rename…", enabled=False)
        self.rename_button.setToolTip("Give the selected run a name, shown beside its id (F2).")
        self.rename_button.setShortcut("F2")
        self.rename_button.clicked.connect(self.ask_rename)
        top.addWidget(self.rename_button)
        self.free_button = QPushButton("Free checkpoints…", enabled=False)
        self.free_button.setToolTip("Delete the checkpoints of the selected finished runs: what resuming starts "
                                    "from, never needed again once a run is done. Trained weights, history and "
                                    "exports stay.")
        self.free_button.clicked.connect(lambda: self.ask_delete(checkpoints=True))
        top.addWidget(self.free_button)
        top.addStretch(1)
        self.count_label = QLabel()
        top.addWidget(self.count_label)

        self.table = RunTable()
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.status = BusyLine()
        self.placeholder = QLabel(HINT, alignment=Qt.AlignCenter, wordWrap=True)
        theme.muted(self.placeholder)
        self.compare_view = CompareView()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.compare_view)
        self.details: dict[str, RunDetailView] = {}
        self._to_select: list[str] | None = None  # runs to select once the list being read arrives
        self._then: Callable[[], None] | None = None  # what to say once the list being read arrives

        split = QSplitter(Qt.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.stack)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 5)
        split.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addWidget(split, 1)
        self.setTabOrder(self.project_combo, self.refresh_button)
        self.setTabOrder(self.refresh_button, self.rename_button)
        self.setTabOrder(self.rename_button, self.delete_button)
        self.setTabOrder(self.delete_button, self.free_button)
        self.setTabOrder(self.free_button, self.table)
        self.setTabOrder(self.table, self.stack)

    # -- the list ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        project = self.project_combo.currentText()
        self.status.start("Reading the history…")
        self.tasks.run("list", load, None if project == ALL else project, on_done=self._listed)

    def _listed(self, found) -> None:
        projects, runs = found
        current = self.project_combo.currentText()
        if current not in (ALL, *projects):  # its runs were all deleted: the project is gone, show them all
            self.project_combo.setCurrentText(ALL)  # which reads the list again
            return
        self.status.stop()
        self.error.clear()
        self.project_combo.blockSignals(True)
        self.project_combo.clear()
        self.project_combo.addItems([ALL, *projects])
        self.project_combo.setCurrentText(current)
        self.project_combo.blockSignals(False)
        self.count_label.setText(f"{len(runs)} run{'s' if len(runs) != 1 else ''}")
        self.table.set_runs(runs)  # keeps the selection, which reloads the opened run or comparison
        self.placeholder.setText(HINT if runs else EMPTY)
        if self._to_select is not None:
            self.table.select(self._to_select)
            self._to_select = None
        if self._then is not None:
            self._then, then = None, self._then
            then()
        self._enable_delete()

    def select(self, run_ids: list[str]) -> None:
        """Select these runs (at once, or when the list being read arrives)."""
        if self.tasks.busy("list"):
            self._to_select = list(run_ids)
        else:
            self.table.select(run_ids)

    # -- the selection ----------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        ids = self.table.selected_ids()
        self._enable_delete()
        self.tasks.cancel("detail")
        self.tasks.cancel("compare")
        if len(ids) == 1:
            self.status.start("Reading the run…")
            self.tasks.run("detail", hs.run_detail, ids[0], on_done=self._show_detail)
        elif len(ids) == 2:
            ids.sort(key=lambda run_id: self.table.run(run_id).created_at)  # the older run first, in blue
            self.status.start("Reading both runs…")
            self.tasks.run("compare", hs.compare, ids[0], ids[1], on_done=self._show_comparison)
        else:
            self.status.stop()
            self.placeholder.setText("Select two runs to compare them, not more." if len(ids) > 2 else
                                     HINT if self.table.topLevelItemCount() else EMPTY)
            self.stack.setCurrentWidget(self.placeholder)

    def _show_detail(self, detail: hs.RunDetail) -> None:
        if self.status.busy:  # (a message said since the reading began, such as what was freed, stays)
            self.status.stop()
        view = self.details.get(detail.id)
        if view is None:
            view = self.details[detail.id] = RunDetailView()
            view.running_changed.connect(self._run_running)
            view.export_page.train_more.connect(self.train_more)
            self.stack.addWidget(view)
        view.show_run(detail)
        self.stack.setCurrentWidget(view)
        self._drop_idle_details(keep=detail.id)

    def _show_comparison(self, comparison: hs.Comparison) -> None:
        if self.status.busy:
            self.status.stop()
        self.compare_view.show_comparison(comparison)
        self.stack.setCurrentWidget(self.compare_view)

    def _drop_idle_details(self, keep: str) -> None:
        """Views of other runs go, unless their run trains: it keeps its live view while you look elsewhere."""
        for run_id, view in list(self.details.items()):
            if run_id != keep and not view.running:
                self._drop_view(run_id)

    def _drop_view(self, run_id: str) -> None:
        view = self.details.pop(run_id, None)
        if view is not None:
            view.shutdown()
            self.stack.removeWidget(view)
            view.deleteLater()

    # -- deleting ---------------------------------------------------------------------------------
    def _enable_delete(self) -> None:
        """Selected runs can be deleted unless one trains (app.run_removal would refuse it with a sentence)."""
        ids = self.table.selected_ids()
        self.delete_button.setEnabled(bool(ids) and not any(self._training(run_id) for run_id in ids))
        runs = [self.table.run(run_id) for run_id in ids]
        self.free_button.setEnabled(bool(runs) and all(run and run.status == history.DONE and
                                                       not self._training(run.id) for run in runs))
        self.rename_button.setEnabled(len(ids) == 1)

    # -- naming -----------------------------------------------------------------------------------
    def ask_rename(self) -> None:
        ids = self.table.selected_ids()
        run = self.table.run(ids[0]) if len(ids) == 1 else None
        if run is None:
            return
        name, ok = QInputDialog.getText(self, "Rename run", f"A name for run {run.id} (empty: none):",
                                        text=run.name)
        if ok:
            self.rename(run.id, name)

    def rename(self, run_id: str, name: str) -> None:
        """Name the run (a sentence in the error panel for a name that cannot be), then show the list again."""
        try:
            ops.rename_run(run_id, name)
        except KnownError as e:
            self._failed(e)
            return
        self.error.clear()
        self._then = lambda: self.status.stop(f"Named it “{' '.join(name.split())}”." if name.strip() else
                                              "Its name is gone.")
        self.refresh()

    def _training(self, run_id: str) -> bool:
        view, run = self.details.get(run_id), self.table.run(run_id)
        return bool(run and run.status == history.RUNNING) or bool(view and view.running)

    def ask_delete(self, checkpoints: bool = False) -> None:
        """Read what deleting the selected runs (or only their checkpoints) frees, off the UI thread, then ask."""
        ids = self.table.selected_ids()
        if ids and not self.tasks.busy("delete"):
            self.status.start("Reading what deleting frees…")
            self.tasks.run("delete", run_removal.removals, ids, checkpoints=checkpoints, on_done=self._confirm_delete)

    def delete_box(self, found: list[run_removal.Removal]) -> QMessageBox:
        n, total = len(found), sum(what.bytes for what in found)
        what = ("the checkpoints of " if found[0].checkpoints else "") + ("this run" if n == 1 else f"these {n} runs")
        box = QMessageBox(QMessageBox.Warning, "Free checkpoints" if found[0].checkpoints else "Delete runs",
                          f"Delete {what}{f', freeing {size_text(total)}' if total else ''}? This cannot be undone.",
                          parent=self)
        box.setInformativeText("\n".join(f"• {what.text()[0].upper()}{what.text()[1:]}." for what in found))
        box.setStyleSheet("QLabel#qt_msgbox_informativelabel { min-width: 520px; }")  # a run per line or two, not four
        box.addButton("Delete", QMessageBox.DestructiveRole).setObjectName("delete")
        box.setDefaultButton(box.addButton(QMessageBox.Cancel))
        return box

    def confirm_delete(self, found: list[run_removal.Removal]) -> bool:
        box = self.delete_box(found)
        box.exec()
        return box.clickedButton() is not None and box.clickedButton().objectName() == "delete"

    def _confirm_delete(self, found: list[run_removal.Removal]) -> None:
        self.status.stop()
        if not self.confirm_delete(found):
            return
        for what in found:  # their open views go first: nothing of a deleted run stays on screen (nor old figures)
            self._drop_view(what.run_id)
        self.status.start("Deleting…")
        self.tasks.run("delete", run_removal.delete_runs, [what.run_id for what in found],
                       checkpoints=found[0].checkpoints, on_done=self._deleted, on_error=self._delete_failed)

    def _delete_failed(self, error: BaseException) -> None:
        """Those deleted before the one that failed are gone: the list says so, then the panel says why."""
        self._then = lambda: self._failed(error)
        self.refresh()

    def _deleted(self, done: list[run_removal.Removal]) -> None:
        freed = sum(what.bytes for what in done)
        runs = f"{len(done)} run{'s' if len(done) != 1 else ''}"
        said = (f"Deleted the checkpoints of {runs}" if done and done[0].checkpoints else f"Deleted {runs}") + (
            f", {size_text(freed)} freed." if freed else ".")
        self._then = lambda: self.status.stop(said)
        self.refresh()

    def _run_running(self, running: bool) -> None:
        self.running_changed.emit(running)
        self._enable_delete()
        self.refresh()  # the status and figures changed

    def _failed(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)

    @property
    def detail_view(self) -> RunDetailView | None:
        current = self.stack.currentWidget()
        return current if isinstance(current, RunDetailView) else None

    @property
    def running(self) -> bool:
        return any(view.running for view in self.details.values())

    def shutdown(self, keep_running: bool = False) -> None:
        """The window closes: drop background reads and stop resumed runs politely (or let them train on)."""
        self.tasks.cancel_all()
        for view in self.details.values():
            view.shutdown(keep_running)
