"""One run opened from the history: its figures, then the wizard's own train and export pages pointed at it
(resume it, try it, export it) and its settings."""

from __future__ import annotations

import html

from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QFrame, QHeaderView, QLabel, QScrollArea, QTabWidget, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from app.history_service import RunDetail, flat_config
from app.supervisor import Outcome
from core import objectives, results
from core.plan_text import size_text
from core.words import duration, when
from ui.history.resume_page import ResumePage
from ui.history.run_table import loss_text, lowest_text
from ui.pages.base import Session
from ui.pages.export_page import ExportPage

NO_RESULT = "This run has no trained result yet: resume it, or let it finish, to try and export it."
EXPORTS = 3  # the Exports tab's index


def lowest_validation(detail: RunDetail) -> str:
    """'2.9146 at step 60, its weights kept', or '—' without validation checks."""
    return lowest_text(detail.eval, (detail.best_weights or {}).get("step"))


def preferred_text(detail: RunDetail) -> str:
    """'92% of the validation pairs at step 30' (the last check), or '100% of step 30's pairs' without checks
    (KTO: of its rated answers)."""
    unit = objectives.share_words(detail.config.get("objective") or "")[1]
    if detail.eval_preferred:
        step, share = detail.eval_preferred[-1]
        return f"{share:.0%} of the validation {unit}s at step {step}"
    step, share = detail.preferred[-1]
    return f"{share:.0%} of step {step}'s {unit}s"


def figures_html(detail: RunDetail) -> str:
    s = detail.summary
    rows = [("Status", s.status + (f": {s.outcome}" if s.outcome else "")), ("Model", s.model),
            ("Dataset", s.dataset or "—"), ("Strategy", s.strategy), ("Steps", f"{s.steps_done} of {s.total_steps}"),
            ("Final loss", loss_text(s.final_loss)), ("Best train loss", loss_text(s.best_loss)),
            ("Validation loss", loss_text(s.eval_loss)), ("Lowest validation", lowest_validation(detail)),
            ("Duration", duration(s.duration_s)),
            ("Created", when(s.created_at)), ("Project", s.project)]
    if detail.eval_preferred or detail.preferred:  # a preference run: what its objective counts as preferred
        rows.append((objectives.share_words(detail.config.get("objective") or "")[0], preferred_text(detail)))
    if detail.config.get("continues"):  # a run that went on from another's weights (train --from, Train more)
        rows.append(("Started from", results.continued_text(detail.config["continues"])))
    cells = "".join(f"<td style='padding-right:6px;color:#6b7380'>{k}</td><td style='padding-right:18px'>"
                    f"<b>{v}</b></td>" + ("</tr><tr>" if i % 4 == 3 else "") for i, (k, v) in enumerate(rows))
    return f"<span style='font-size:12pt'><b>{html.escape(s.title)}</b></span><table><tr>{cells}</tr></table>"


class ConfigTable(QTreeWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHeaderLabels(["Setting", "Value"])
        self.setRootIsDecorated(False)
        self.setAlternatingRowColors(True)
        self.header().setSectionResizeMode(0, QHeaderView.ResizeToContents)

    def set_config(self, config: dict) -> None:
        self.clear()
        self.addTopLevelItems([QTreeWidgetItem([k, "—" if v is None else str(v)])
                               for k, v in sorted(flat_config(config).items())])


class ExportsTable(QTreeWidget):
    """Where the run's exports went (the history keeps each one): a double click opens the folder; one that is no
    longer there (moved, deleted) says so."""

    GONE = "(no longer there)"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHeaderLabels(["Format", "Size", "Folder", "When"])
        self.setRootIsDecorated(False)
        self.setAlternatingRowColors(True)
        for column in (0, 1, 3):
            self.header().setSectionResizeMode(column, QHeaderView.ResizeToContents)
        self.header().setSectionResizeMode(2, QHeaderView.Stretch)
        self.setToolTip("Double-click an export to open its folder.")
        self.itemDoubleClicked.connect(self._open)

    def set_exports(self, exports: list[dict]) -> None:
        self.clear()
        for e in reversed(exports):  # newest first
            here = Path(e["path"]).is_dir()
            item = QTreeWidgetItem([e["format"] + (f" ({e['quant']})" if e.get("quant") else ""),
                                    size_text(e.get("bytes")), e["path"] + ("" if here else f"  {self.GONE}"),
                                    when(e.get("created_at"))])
            item.setData(2, Qt.UserRole, e["path"])
            if not here:
                item.setDisabled(True)
            self.addTopLevelItem(item)

    def _open(self, item: QTreeWidgetItem) -> None:
        folder = item.data(2, Qt.UserRole)
        if folder and Path(folder).is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(folder))


class RunDetailView(QWidget):
    running_changed = Signal(bool)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.detail: RunDetail | None = None
        self.session = Session()
        self.header = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.train_page = ResumePage(self.session)
        self.export_page = ExportPage(self.session)
        self.config_table = ConfigTable()
        self.exports_table = ExportsTable()
        self.tabs = QTabWidget()
        self.tabs.addTab(self.train_page, "Training")
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)  # a short window scrolls the page
        scroll.setWidget(self.export_page)
        self.tabs.addTab(scroll, "Try and export")
        self.tabs.addTab(self.config_table, "Settings")
        self.tabs.addTab(self.exports_table, "Exports")
        self.export_page.exported_to.connect(self._exported)
        self.train_page.running_changed.connect(self._running)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.header)
        layout.addWidget(self.tabs, 1)

    @property
    def run_id(self) -> str | None:
        return self.detail.id if self.detail else None

    @property
    def running(self) -> bool:
        return self.train_page.running

    def show_run(self, detail: RunDetail) -> None:
        """Point the pages at this run. While it trains here, only the figures are refreshed."""
        self.detail = detail
        self.header.setText(figures_html(detail))
        self.config_table.set_config(detail.config)
        self._show_exports(detail.exports)
        if self.running:
            return
        self.train_page.show_run(detail)
        if self.running:  # it trains in the background and the page has just reattached to it
            self.tabs.setTabEnabled(1, False)
            return
        s = detail.summary
        self.session.outcome = Outcome(s.status, s.outcome or s.status, None)
        can_export = detail.has_result
        if can_export and not self.export_page.busy("export") and not self.export_page.busy("ask"):
            self.export_page.initializePage()
        self.tabs.setTabEnabled(1, can_export)
        self.tabs.setTabToolTip(1, "" if can_export else NO_RESULT)

    def _show_exports(self, exports: list[dict]) -> None:
        self.exports_table.set_exports(exports)
        self.tabs.setTabText(EXPORTS, f"Exports ({len(exports)})" if exports else "Exports")

    def _exported(self, path: str) -> None:
        """An export made on the Try and export tab joins the list (the history has it by now)."""
        from app import operations as ops

        if self.detail is not None:
            with ops.open_history() as db:
                self.detail.exports = db.exports(self.detail.id)
            self._show_exports(self.detail.exports)

    def _running(self, running: bool) -> None:
        if running:  # the result is being trained again: try and export it once the run ends
            self.tabs.setTabEnabled(1, False)
        self.running_changed.emit(running)

    def shutdown(self, keep_running: bool = False) -> None:
        """The window closes: the train page stops a resumed run politely, as in the wizard (or lets it be)."""
        self.train_page.shutdown(keep_running)
        self.export_page.shutdown()
