"""Step 1: which model to fine-tune. The bundled default is preselected; a folder or .gguf also works."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMenu, QToolButton,
                               QVBoxLayout)

from app import operations as ops
from core.model_shape import ModelShape
from core.model_source import DEFAULT_NAME
from ui.pages.base import BusyLine, Page, Session


def describe_model(ref) -> str:
    """'135M parameters · 30 layers · context 8192' from the model's config, or '' when it is unusual."""
    try:
        shape = ModelShape.from_config(ref.config())
    except (KeyError, TypeError, ValueError, OSError):
        return ""
    params = shape.params
    size = f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"
    return f"{size} parameters · {shape.layers} layers · context {shape.max_positions}"


class ModelPage(Page):
    def __init__(self, session: Session, parent=None):
        super().__init__(session, "Model", "Pick the language model to fine-tune. The small bundled model is a "
                         "good first try; nothing is downloaded.", parent)
        self.model_edit = QLineEdit(session.model_name, placeholderText="default, a model folder or a .gguf file")
        self.model_edit.setClearButtonEnabled(True)
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

        self.name_label = QLabel("—", textInteractionFlags=Qt.TextSelectableByMouse)
        self.name_label.setStyleSheet("font-weight: 600;")
        self.path_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.shape_label = QLabel(wordWrap=True)
        self.status = BusyLine()
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Model:", row)
        form.addRow("", QLabel("“default” is SmolLM2-135M-Instruct, bundled with Tuneforge. The first use "
                               "converts it once (about 20 s).", wordWrap=True,
                               foregroundRole=QPalette.PlaceholderText))
        form.addRow("Resolved:", self.name_label)
        form.addRow("Folder:", self.path_label)
        form.addRow("Size:", self.shape_label)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addStretch(1)

        self._debounce = QTimer(self, singleShot=True, interval=500)
        self._debounce.timeout.connect(self.resolve)
        self.model_edit.textChanged.connect(self._edited)

    def initializePage(self) -> None:
        if self.session.model_ref is None or self.session.model_ref.name != self.model_edit.text().strip():
            self.resolve()

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
        if not name:
            self.cancel_task("resolve")
            self.status.stop("Type a model name or path, or choose one with Browse…")
            return
        self.status.start(f"Looking for “{name}”…")
        self.run_task("resolve", ops.resolve_model, name, on_done=self._resolved, on_error=self._failed,
                      on_progress=self.status.report)

    def _resolved(self, ref) -> None:
        self.session.model_ref = ref
        self.status.stop()
        self.name_label.setText(ref.label)
        self.path_label.setText(str(ref.path))
        self.shape_label.setText(describe_model(ref) or "—")
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
        path, _ = QFileDialog.getOpenFileName(self, "Choose a GGUF model file", "", "GGUF models (*.gguf)")
        if path:
            self.model_edit.setText(path)
