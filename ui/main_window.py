"""The main window: a navigation list on the left (New fine-tune, History, Settings), the page on the right.

"New fine-tune" hosts the wizard as a child widget. When it ends (Close on its last page, or Cancel) a
fresh wizard takes its place, and a run it made is shown in History. Closing the window while a run
trains asks whether to keep it training in the background (the trainer is its own process) or stop
it politely (it saves a checkpoint); background work is dropped either way. Opening the app while a
run trains in the background shows it in History, followed live (reattached).
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QMainWindow, QMessageBox, QStackedWidget, QWidget

from app import operations as ops
from core.errors import KnownError

from ui.history.history_page import HistoryPage
from ui.settings_page import SettingsPage
from ui.wizard import NewFineTuneWizard

TITLE = "Tuneforge"
NAV = ["New fine-tune", "History", "Settings"]
NEW, HISTORY, SETTINGS = range(3)
KEEP, STOP, CANCEL = "keep", "stop", "cancel"


class MainWindow(QMainWindow):
    def __init__(self, model: str = "default", data: str | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self._wizard_args = (model, data)
        self.nav = QListWidget(accessibleName="Navigation")
        self.nav.addItems(NAV)
        self.nav.setFixedWidth(170)
        self.nav.setSpacing(3)
        self.nav.setObjectName("nav")
        self.nav.setStyleSheet("QListWidget#nav { font-size: 11pt; border: none; "
                               "border-right: 1px solid palette(mid); background: palette(window); }"
                               "QListWidget#nav::item { padding: 6px 10px; }")
        self.wizard_slot = QWidget()
        self.wizard_layout = QHBoxLayout(self.wizard_slot)
        self.wizard_layout.setContentsMargins(0, 0, 0, 0)
        self.wizard: NewFineTuneWizard | None = None
        self.history = HistoryPage()
        self.history.train_more.connect(self.train_more)
        self.settings = SettingsPage()
        self.pages = QStackedWidget()
        for page in (self.wizard_slot, self.history, self.settings):
            self.pages.addWidget(page)
        self.nav.currentRowChanged.connect(self.show_page)

        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.nav)
        layout.addWidget(self.pages, 1)
        self.setCentralWidget(central)
        for i in range(len(NAV)):  # Ctrl+1, Ctrl+2, Ctrl+3 go to a page from anywhere
            QShortcut(QKeySequence(f"Ctrl+{i + 1}"), self, lambda i=i: self.nav.setCurrentRow(i))
        self.new_wizard()
        # A settings file that cannot be read opens on its sentence instead of passing unseen.
        self.nav.setCurrentRow(SETTINGS if self.settings.error.message else NEW)
        self.resize(QSize(1180, 800))
        self.setMinimumSize(QSize(980, 660))
        QTimer.singleShot(0, self.reattach)

    def reattach(self) -> None:
        """Runs left training in the background by an earlier window: show the newest in History, live."""
        try:
            live = ops.live_runs()
        except Exception:  # noqa: BLE001  an unreadable history is shown by the History page itself
            return
        if live:
            self.show_page(HISTORY)
            self.history.select(live[:1])

    def new_wizard(self, going_on=None) -> NewFineTuneWizard:
        """A fresh wizard in the New fine-tune page (at start, after the previous one ended, and for Train more:
        `going_on`, an app.operations.GoingOn)."""
        old = self.wizard
        self.wizard = NewFineTuneWizard(*self._wizard_args, parent=self.wizard_slot, going_on=going_on)
        self.wizard.setWindowFlags(Qt.Widget)  # a QWizard is a dialog: make it a child, not a window
        self.wizard.finished.connect(self._wizard_ended)
        self.wizard.export_page.train_more.connect(self.train_more)
        if old is not None:
            self.wizard_layout.replaceWidget(old, self.wizard)
            old.hide()  # gone from sight now; deleted once control is back in the event loop
            old.deleteLater()
        else:
            self.wizard_layout.addWidget(self.wizard)
        self.wizard.show()
        return self.wizard

    def train_more(self, run_id: str, weights: str) -> None:
        """A new fine-tune that goes on from a run's weights, in place of the New fine-tune page's wizard (whose
        own run, if it made one, is in History); refused while that wizard's run trains."""
        if self.wizard is not None and self.wizard.train_page.running:
            QMessageBox.information(self, "A run is training", "The New fine-tune page is training a run; let it "
                                    "finish or stop it, then train more from these weights.")
            return
        try:
            going = ops.going_on(run_id, weights)
        except KnownError as e:
            QMessageBox.warning(self, "Cannot train more", str(e))
            return
        if self.wizard is not None:
            self.wizard.shutdown()
        self.new_wizard(going)
        self.show_page(NEW)

    def _wizard_ended(self, _result: int) -> None:
        # The wizard's done() already stopped its run and dropped its work, as closing its window did.
        run_id = self.wizard.session.run_id
        self.new_wizard()
        if run_id:
            self.show_page(HISTORY)
            self.history.select([run_id])

    def show_page(self, index: int) -> None:
        if self.nav.currentRow() != index:
            self.nav.setCurrentRow(index)  # comes back here through currentRowChanged
            return
        self.pages.setCurrentIndex(index)
        if index == HISTORY:
            self.history.refresh()

    @property
    def running(self) -> bool:
        return bool(self.wizard and self.wizard.train_page.running) or self.history.running

    def closeEvent(self, event) -> None:
        choice = self.ask_keep_running() if self.running else STOP
        if choice == CANCEL:
            event.ignore()
            return
        self.shutdown(keep_running=choice == KEEP)
        super().closeEvent(event)

    def keep_running_box(self) -> QMessageBox:
        box = QMessageBox(QMessageBox.Question, "Training is running",
                          "A training run is in progress. Keep it training in the background?", parent=self)
        box.setInformativeText("It goes on without the window; open Tuneforge again to follow it, pause it or "
                               "stop it. Stopping now saves a checkpoint you can resume from.")
        box.addButton("Keep training", QMessageBox.AcceptRole).setObjectName(KEEP)
        box.addButton("Stop the run", QMessageBox.DestructiveRole).setObjectName(STOP)
        box.setDefaultButton(box.addButton(QMessageBox.Cancel))
        box.defaultButton().setObjectName(CANCEL)
        return box

    def ask_keep_running(self) -> str:
        """KEEP, STOP or CANCEL (closing the question's window cancels)."""
        box = self.keep_running_box()
        box.exec()
        clicked = box.clickedButton()
        return clicked.objectName() if clicked is not None else CANCEL

    def shutdown(self, keep_running: bool = False) -> None:
        if self.wizard is not None:
            self.wizard.shutdown(keep_running)
        self.history.shutdown(keep_running)
