"""Step 1: which model to fine-tune. The bundled default is preselected; pick another from the models found on
this machine (with the planner's answer to "will it fit?"), type a name, browse, or drop a folder or .gguf."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMenu, QToolButton,
                               QTreeWidgetItem, QVBoxLayout)

from app import model_catalog
from app import operations as ops
from core.model_shape import ModelShape
from core.model_source import DEFAULT_NAME, is_gguf
from core.words import short_count
from ui import theme
from ui.pages.base import BusyLine, Page, Session
from ui.pages.model_list import ModelList


def describe_model(ref) -> str:
    """'135M parameters · 30 layers · context 8192' from the model's config, or '' when it is unusual."""
    try:
        shape = ModelShape.from_config(ref.config())
    except (KeyError, TypeError, ValueError, OSError):
        return ""
    return f"{short_count(shape.params)} parameters · {shape.layers} layers · context {shape.max_positions}"


def dropped_model(mime) -> str | None:
    """The local folder or GGUF file (by its name, or its first bytes: Ollama's blobs have no suffix) in a drag, or
    None when the drag holds anything else."""
    urls = [u for u in mime.urls() if u.isLocalFile()] if mime.hasUrls() else []
    if len(urls) != 1:
        return None
    path = Path(urls[0].toLocalFile())
    return str(path) if path.is_dir() or (path.suffix.lower() == ".gguf" and path.is_file()) or is_gguf(path) else None


class ModelPage(Page):
    def __init__(self, session: Session, parent=None):
        super().__init__(session, "Model", "Pick the language model to fine-tune. The small bundled model is a "
                         "good first try; nothing is downloaded.", parent)
        self.setAcceptDrops(True)
        self.model_edit = QLineEdit(session.model_name,
                                    placeholderText="default, a model folder, a .gguf file or ollama:NAME")
        self.model_edit.setClearButtonEnabled(True)
        self.model_edit.setAcceptDrops(False)  # a dropped folder goes to the page, which takes its path, not its URL
        self.browse_button = QToolButton(text="Browse…", popupMode=QToolButton.InstantPopup)
        menu = QMenu(self.browse_button)
        menu.addAction("Model folder…", self._browse_folder)
        menu.addAction("GGUF file…", self._browse_gguf)
        menu.addSeparator()
        menu.addAction("The bundled default", lambda: self.model_edit.setText(DEFAULT_NAME))
        self.browse_button.setMenu(menu)
        row = QHBoxLayout()
        row.addWidget(self.model_edit, 1)
        row.addWidget(self.browse_button)

        self.models = ModelList()
        self.models.itemClicked.connect(self._picked)
        self.models.itemActivated.connect(self._picked)  # Enter or a double click
        self.models.currentItemChanged.connect(self._show_details)
        self.refresh_button = QToolButton(text="Look again", toolTip="Look for models on this machine again")
        self.refresh_button.clicked.connect(self.refresh_list)
        self.list_status = BusyLine()
        self.details = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.assumption = theme.muted(QLabel(model_catalog.ASSUMPTION, wordWrap=True))
        found_row = QHBoxLayout()
        found_row.addWidget(QLabel("<b>On this machine</b> — click a model to use it, or drop a model folder "
                                   "or .gguf file here:", wordWrap=True), 1)
        found_row.addWidget(self.refresh_button)

        self.name_label = QLabel("—", textInteractionFlags=Qt.TextSelectableByMouse)
        self.name_label.setStyleSheet("font-weight: 600;")
        self.path_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.shape_label = QLabel(wordWrap=True)
        self.status = BusyLine(on_cancel=lambda: self.cancel_task("resolve"), on_retry=self.resolve)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        # Two forms around the list: labels of one width keep their fields in one column.
        width = max(self.fontMetrics().horizontalAdvance(t) for t in ("Model:", "Resolved:", "Folder:", "Size:"))

        def label(text: str) -> QLabel:
            return QLabel(text, minimumWidth=width)

        form.addRow(label("Model:"), row)
        form.addRow(label(""), QLabel("“default” is SmolLM2-135M-Instruct, bundled with Tuneforge. The first use "
                                      "converts it once (about 20 s).", wordWrap=True,
                                      foregroundRole=QPalette.PlaceholderText))
        resolved = QFormLayout()
        resolved.addRow(label("Resolved:"), self.name_label)
        resolved.addRow(label("Folder:"), self.path_label)
        resolved.addRow(label("Size:"), self.shape_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(found_row)
        layout.addWidget(self.models, 1)
        layout.addWidget(self.list_status)
        layout.addWidget(self.details)
        layout.addWidget(self.assumption)
        layout.addLayout(resolved)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        self.setTabOrder(self.model_edit, self.browse_button)
        self.setTabOrder(self.browse_button, self.models)

        self._debounce = QTimer(self, singleShot=True, interval=500)
        self._debounce.timeout.connect(self.resolve)
        self.model_edit.textChanged.connect(self._edited)
        self._listed_once = False

    def keep_model(self, why: str) -> None:
        """The model is given (a fine-tune that goes on from a run): shown, not chosen; `why` says so."""
        for widget in (self.model_edit, self.browse_button, self.models, self.refresh_button):
            widget.setEnabled(False)
        self.setAcceptDrops(False)
        self.kept_note = QLabel(why, wordWrap=True)
        self.layout().insertWidget(0, self.kept_note)

    def initializePage(self) -> None:
        if not self._listed_once:
            self.refresh_list()
        if self.session.model_ref is None or self.session.model_ref.name != self.model_edit.text().strip():
            self.resolve()

    # -- the list of models found on this machine ------------------------------------------------------

    def refresh_list(self) -> None:
        self._listed_once = True
        self.list_status.start("Looking for models on this machine…")
        self.refresh_button.setEnabled(False)
        self.run_task("catalog", model_catalog.list_models, self.model_edit.text().strip(), on_done=self._listed,
                      on_error=self._list_failed, on_progress=self.list_status.report)

    def _listed(self, entries) -> None:
        self.refresh_button.setEnabled(self.model_edit.isEnabled())  # (not while the model is given: keep_model)
        self.list_status.stop()
        self.models.show_entries(entries)
        self._select_current()

    def _list_failed(self, error: BaseException) -> None:
        self.refresh_button.setEnabled(self.model_edit.isEnabled())
        self.list_status.stop()
        self.error.show_error(error)

    def _picked(self, item: QTreeWidgetItem) -> None:
        name = item.data(0, Qt.UserRole).model.name
        if name and name != self.model_edit.text().strip():
            self.model_edit.setText(name)
            self.resolve()  # a deliberate pick needs no typing pause

    def _show_details(self, item: QTreeWidgetItem | None) -> None:
        """The whole fit phrase and any note, for a row whose columns are cut short in a narrow window."""
        entry = item.data(0, Qt.UserRole) if item is not None else None
        if entry is None:
            self.details.clear()
            return
        note = f" ({entry.model.note})" if entry.model.note else ""
        self.details.setText(f"<b>{html.escape(entry.model.label)}</b>{html.escape(note)}: {html.escape(entry.fit)}")

    def _select_current(self) -> None:
        ref = self.session.model_ref
        self.models.select_model(self.model_edit.text().strip(), str(ref.path) if ref is not None else None)

    # -- drag and drop of a folder or a .gguf file -----------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        if dropped_model(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        path = dropped_model(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.model_edit.setText(path)
            self.resolve()

    # -- resolving what is typed -----------------------------------------------------------------------

    def _edited(self) -> None:
        self.session.model_ref = None
        self.completeChanged.emit()
        self._debounce.start()

    def resolve(self) -> None:
        self._debounce.stop()
        name = self.model_edit.text().strip()
        self.session.model_name = name
        self.session.model_ref = None
        self.error.clear()
        for label in (self.name_label, self.path_label, self.shape_label):
            label.setText("—")
        self.completeChanged.emit()
        self._select_current()
        if not name:
            self.cancel_task("resolve")
            self.status.stop("Type a model name or path, or choose one with Browse…")
            return
        self.status.start(f"Looking for “{name}”…")
        self.run_task("resolve", ops.resolve_model, name, plan_only=True, on_done=self._resolved,
                      on_error=self._failed, on_progress=self.status.report)

    def _resolved(self, ref) -> None:
        self.session.model_ref = ref
        self.status.stop()
        self.name_label.setText(ref.label)
        self.path_label.setText(str(ref.path))
        self.shape_label.setText(describe_model(ref) or "—")
        if ref.missing:  # its config and tokenizer alone: what training it would take, before fetching the rest
            self.error.show_message(f"Plan only: {ref.missing}. The Plan step shows what training it here would "
                                    "take.", kind="info")
        self._select_current()
        if self._listed_once and not self.busy("catalog") and self.models.currentItem() is None:
            self.refresh_list()  # a model from elsewhere: list it with its fit answer
        self.completeChanged.emit()

    def _failed(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)

    def isComplete(self) -> bool:
        return self.session.model_ref is not None

    def _browse_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model folder (with config.json)")
        if folder:
            self.model_edit.setText(folder)

    def _browse_gguf(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model file", "",  # Ollama's blobs have no suffix
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.model_edit.setText(path)
