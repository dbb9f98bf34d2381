"""The plan page's "Advanced" panel: override any setting the planner chose; every control starts at Auto."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QPushButton,
                               QSizePolicy, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from core import strategies
from core.errors import BadArgument
from core.planner import Wishes
from ui import theme

AUTO = "Auto"
LEARNING_RATES = ("1e-5", "2e-5", "5e-5", "1e-4", "2e-4", "5e-4", "1e-3")


def auto_spin(maximum: int, step: int = 1, suffix: str = "") -> QSpinBox:
    """A spin box whose 0 reads "Auto" (the planner decides)."""
    box = QSpinBox(minimum=0, maximum=maximum, singleStep=step, suffix=suffix)
    box.setSpecialValueText(AUTO)
    box.setMinimumWidth(160)
    box.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
    return box


def auto_combo(items: list[tuple[str, object]]) -> QComboBox:
    box = QComboBox()
    box.addItem(AUTO, None)
    for text, data in items:
        box.addItem(text, data)
    box.setMinimumWidth(160)
    box.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
    return box


class WishesPanel(QWidget):
    """A header that folds the controls open; `changed` fires on every edit, `wishes()` reads them."""

    changed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.toggle = QToolButton(text="Advanced: override the plan", checkable=True, arrowType=Qt.RightArrow,
                                  toolButtonStyle=Qt.ToolButtonTextBesideIcon, autoRaise=True)
        self.toggle.toggled.connect(self._fold)
        self.overridden = theme.muted(QLabel())
        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.toggle)
        header.addWidget(self.overridden, 1)

        built = [(name, name) for name, s in strategies.REGISTRY.items() if s.built]
        self.strategy = auto_combo(built)
        self.seq_len = auto_spin(131072, 128, " tokens")
        self.micro_batch = auto_spin(256)
        self.grad_accum = auto_spin(1024)
        self.lr = QComboBox(editable=True)
        self.lr.addItems([AUTO, *LEARNING_RATES])
        self.lr.setMinimumWidth(160)
        self.lr.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self.epochs = QDoubleSpinBox(minimum=0, maximum=100, singleStep=0.5, decimals=2, suffix=" epochs")
        self.epochs.setSpecialValueText(AUTO)
        self.epochs.setMinimumWidth(160)
        self.epochs.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self.checkpointing = auto_combo([("On", True), ("Off", False)])
        self.packing = QComboBox()
        self.packing.addItem("Auto (on)", True)
        self.packing.addItem("Off", False)
        self.packing.setMinimumWidth(160)
        self.packing.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self.reset_button = QPushButton("All back to Auto")
        self.reset_button.clicked.connect(self.reset)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        for title, widget, hint in (
                ("Strategy:", self.strategy, "how the model is trained (LoRA adapters, 4-bit base, all weights…)"),
                ("Sequence length:", self.seq_len, "longer rows are cut"),
                ("Micro-batch:", self.micro_batch, "examples per forward pass; the main memory cost"),
                ("Accumulation:", self.grad_accum, "micro-batches per optimizer step"),
                ("Learning rate:", self.lr, "pick or type one, like 2e-4"),
                ("Epochs:", self.epochs, "passes over the data, unless a step limit stops it first"),
                ("Gradient checkpointing:", self.checkpointing, "recompute activations: less memory, slower"),
                ("Packing:", self.packing, "several short rows share one sequence")):
            row = QHBoxLayout()
            row.addWidget(widget)
            row.addWidget(theme.muted(QLabel(hint, wordWrap=True)), 1)
            form.addRow(title, row)
        reset_row = QHBoxLayout()
        reset_row.addWidget(self.reset_button)
        reset_row.addStretch(1)
        form.addRow("", reset_row)
        self.body = QWidget(visible=False)
        self.body.setLayout(form)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.body)

        for box in (self.seq_len, self.micro_batch, self.grad_accum, self.epochs):
            box.valueChanged.connect(self._edited)
        for box in (self.strategy, self.checkpointing, self.packing):
            box.currentIndexChanged.connect(self._edited)
        self.lr.currentTextChanged.connect(self._edited)

    def _fold(self, open_: bool) -> None:
        self.toggle.setArrowType(Qt.DownArrow if open_ else Qt.RightArrow)
        self.body.setVisible(open_)

    def _edited(self, *_) -> None:
        n = self.count_overrides()
        self.overridden.setText(f"{n} setting{'s' if n != 1 else ''} overridden" if n else "")
        self.changed.emit()

    def state(self) -> tuple:
        """The raw control values, to tell whether the plan on screen was made for them."""
        return (self.strategy.currentIndex(), self.seq_len.value(), self.micro_batch.value(), self.grad_accum.value(),
                self.lr.currentText().strip(), self.epochs.value(), self.checkpointing.currentIndex(),
                self.packing.currentIndex())

    def count_overrides(self) -> int:
        return sum((self.strategy.currentIndex() > 0, self.seq_len.value() > 0, self.micro_batch.value() > 0,
                    self.grad_accum.value() > 0, self.lr.currentText().strip() not in ("", AUTO),
                    self.epochs.value() > 0, self.checkpointing.currentIndex() > 0, self.packing.currentIndex() > 0))

    def reset(self) -> None:
        for box in (self.seq_len, self.micro_batch, self.grad_accum, self.epochs):
            box.setValue(0)
        for box in (self.strategy, self.checkpointing, self.packing, self.lr):
            box.setCurrentIndex(0)

    def learning_rate(self) -> float | None:
        text = self.lr.currentText().strip()
        if text in ("", AUTO):
            return None
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not 0 < value < 1:
            raise BadArgument(f"Learning rate '{text}' is not usable; write a number between 0 and 1 like 2e-4, "
                              "or pick Auto.")
        return value

    def wishes(self, max_steps: int | None = None) -> Wishes:
        """What the controls ask for; raises BadArgument (a sentence) for a value that cannot be a wish."""
        return Wishes(strategy=self.strategy.currentData(), seq_len=self.seq_len.value() or None,
                      micro_batch=self.micro_batch.value() or None, grad_accum=self.grad_accum.value() or None,
                      lr=self.learning_rate(), epochs=self.epochs.value() or None, max_steps=max_steps,
                      checkpointing=self.checkpointing.currentData(), packing=self.packing.currentData())
