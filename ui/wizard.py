"""The first window: a wizard from model to exported result, with the bundled model and demo data preselected."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QWizard

from ui import tasks
from ui.pages.base import Session
from ui.pages.data_page import DataPage
from ui.pages.export_page import ExportPage
from ui.pages.model_page import ModelPage
from ui.pages.plan_page import PlanPage
from ui.pages.train_page import TrainPage

TITLE = "Tuneforge — new fine-tune"


class NewFineTuneWizard(QWizard):
    MODEL, DATA, PLAN, TRAIN, EXPORT = range(5)

    def __init__(self, model: str = "default", data: str | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setWizardStyle(QWizard.ModernStyle)
        self.setOption(QWizard.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.NoCancelButtonOnLastPage, True)
        self.setButtonText(QWizard.FinishButton, "Close")
        self.session = Session(model_name=model, data_path=data or "")
        self.model_page = ModelPage(self.session)
        self.data_page = DataPage(self.session)
        self.plan_page = PlanPage(self.session)
        self.train_page = TrainPage(self.session)
        self.export_page = ExportPage(self.session)
        for page_id, page in enumerate(self.pages):
            self.setPage(page_id, page)
        self.train_page.running_changed.connect(self._lock_back)
        self.resize(QSize(900, 720))
        self.setMinimumSize(QSize(720, 560))

    @property
    def pages(self) -> list:
        return [self.model_page, self.data_page, self.plan_page, self.train_page, self.export_page]

    def _lock_back(self, running: bool) -> None:
        # QWizard disables Back on the page after a commit page: no leaving the train page mid-run.
        self.plan_page.setCommitPage(running)
        self.train_page.completeChanged.emit()  # makes QWizard refresh its buttons

    def done(self, result: int) -> None:
        """Closing (Cancel, Close, the window's X) stops a running training cleanly and drops background work."""
        self.shutdown()
        super().done(result)

    def shutdown(self) -> None:
        for page in self.pages:
            page.shutdown()


def wait_for_background(msecs: int = 30000) -> bool:
    """After the window closed: let started background work end before the process exits."""
    return tasks.wait_idle(msecs)
