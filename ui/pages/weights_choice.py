"""Which of a run's weights the export page tries, measures and exports: shown only when the run kept the
weights of its lowest validation loss beside its last step's (core/results.py), and set to the one the CLI
would take by itself (the best, when the last step measured worse)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget

from app import operations as ops
from core import results
from core.errors import KnownError


def choices(run: dict) -> list[tuple[str, str]]:
    """[(weights, label)] for the combo box, best first; empty when the run kept only its last step."""
    found = results.best_of(run["run_dir"]) if run.get("run_dir") else None
    if found is None:
        return []
    last = found.get("last_loss")
    return [(results.BEST, f"Lowest validation loss: step {found['step']} ({found['loss']:.4f})"),
            (results.LAST, f"Last step: {found.get('last_step', run.get('steps_done'))} "
                           + (f"({last:.4f})" if last is not None else "(validation not measured)"))]


class WeightsChoice(QWidget):
    changed = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setToolTip("A run that trained past its lowest validation loss has begun memorizing its rows; "
                              "the weights of that lowest point usually answer new questions better.")
        self.combo.currentIndexChanged.connect(lambda _: self.changed.emit(self.value()))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("&Weights:", buddy=self.combo))
        row.addWidget(self.combo, 1)
        self.setVisible(False)

    def show_run(self, run_id: str | None) -> None:
        """Offer the run's kept weights, picking the default; hidden when there is nothing to choose."""
        try:
            run = ops.get_run(run_id) if run_id else {}
        except KnownError:  # a run the history does not hold (any more)
            run = {}
        found = choices(run)
        self.combo.blockSignals(True)
        self.combo.clear()
        for which, label in found:
            self.combo.addItem(label, which)
        if found:
            self.combo.setCurrentIndex(self.combo.findData(results.choose(run).which))
        self.combo.blockSignals(False)
        self.setVisible(bool(found))

    def value(self) -> str:
        """"best" or "last" as chosen; "auto" when the run offers no choice."""
        return self.combo.currentData() or results.AUTO
