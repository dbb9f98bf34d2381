"""The first window: a wizard from model to exported result, with the bundled model and demo data preselected."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QSize, Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget, QWizard

from ui import tasks, theme
from ui.pages.base import Session
from ui.pages.data_page import DataPage
from ui.pages.export_page import ExportPage
from ui.pages.model_page import ModelPage
from ui.pages.plan_page import PlanPage
from ui.pages.train_page import TrainPage

TITLE = "Tuneforge — new fine-tune"


# background, border, done, current, later: for a light and a dark theme
STEP_COLOURS = {False: ("#f4f6f9", "#dde2e8", "#3b7d4f", "#1d4f91", "#7b8794"),
                True: ("#232428", "#3a3c41", "#7cc48f", "#8fb6ff", "#8b9099")}


class StepList(QWidget):
    """The five steps down the side: done ones ticked, the current one bold."""

    def __init__(self, titles: list[str], parent=None):
        super().__init__(parent)
        self.setObjectName("stepList")
        self.setAttribute(Qt.WA_StyledBackground, True)
        self.dark = theme.is_dark()
        self.current = 0
        self._style_background()
        self.setFixedWidth(150)
        self.labels = [QLabel() for _ in titles]
        self.titles = titles
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 18, 12, 12)
        layout.setSpacing(12)
        for label in self.labels:
            layout.addWidget(label)
        layout.addStretch(1)
        self.set_current(0)

    def _style_background(self) -> None:
        background, border = STEP_COLOURS[self.dark][:2]
        self.setStyleSheet(f"QWidget#stepList {{ background: {background}; border-right: 1px solid {border}; }}")

    def set_current(self, current: int) -> None:
        self.current = current
        done, now, later = STEP_COLOURS[self.dark][2:]
        for i, (label, title) in enumerate(zip(self.labels, self.titles)):
            if i < current:
                label.setText(f"✔  {title}")
                label.setStyleSheet(f"color: {done};")
            elif i == current:
                label.setText(f"{i + 1}.  {title}")
                label.setStyleSheet(f"color: {now}; font-weight: 700;")
            else:
                label.setText(f"{i + 1}.  {title}")
                label.setStyleSheet(f"color: {later};")

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        # The application's palette decides (this widget's own follows its style sheet).
        if event.type() == QEvent.PaletteChange and theme.is_dark() != self.dark:
            self.dark = theme.is_dark()
            self._style_background()
            self.set_current(self.current)


class NewFineTuneWizard(QWizard):
    def __init__(self, model: str = "default", data: str | None = None, parent=None, going_on=None):
        """`going_on` (app.operations.GoingOn): a fine-tune that goes on from an earlier run's weights, on its model."""
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setWizardStyle(QWizard.ModernStyle)
        self.setOption(QWizard.NoBackButtonOnStartPage, True)
        self.setOption(QWizard.NoCancelButtonOnLastPage, True)
        self.setButtonText(QWizard.FinishButton, "Close")
        self.session = Session(model_name=going_on.model if going_on else model, data_path=data or "",
                               going_on=going_on)
        self.model_page = ModelPage(self.session)
        if going_on is not None:
            self.model_page.keep_model(f"Goes on from {going_on.describe()}, so it trains that run's model.")
        self.data_page = DataPage(self.session)
        self.plan_page = PlanPage(self.session)
        self.train_page = TrainPage(self.session)
        self.export_page = ExportPage(self.session)
        for page_id, page in enumerate(self.pages):
            self.setPage(page_id, page)
        self.steps = StepList([page.title() for page in self.pages])
        self.setSideWidget(self.steps)
        self.currentIdChanged.connect(self.steps.set_current)
        self.train_page.running_changed.connect(self._lock_back)
        self.resize(QSize(960, 740))
        self.setMinimumSize(QSize(780, 600))

    @property
    def pages(self) -> list:
        return [self.model_page, self.data_page, self.plan_page, self.train_page, self.export_page]

    def _lock_back(self, running: bool) -> None:
        # QWizard disables Back on the page after a commit page: no leaving the train page mid-run.
        self.plan_page.setCommitPage(running)
        self.train_page.completeChanged.emit()  # makes QWizard refresh its buttons

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key_Escape and not self.isWindow():
            return  # embedded in the main window: Escape does not throw the fine-tune away
        super().keyPressEvent(event)

    def done(self, result: int) -> None:
        """Closing (Cancel, Close, the window's X) stops a running training cleanly and drops background work."""
        self.shutdown()
        super().done(result)

    def shutdown(self, keep_running: bool = False) -> None:
        for page in self.pages:
            if page is self.train_page:
                page.shutdown(keep_running)
            else:
                page.shutdown()


def wait_for_background(msecs: int = 30000) -> bool:
    """After the window closed: let started background work end before the process exits."""
    return tasks.wait_idle(msecs)
