"""How the data page reads the file: the schema (detected, or chosen with a column per field) and what bad rows do."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QStackedWidget, QWidget

from core.data import formats

DETECTED = "Detected automatically"
NOT_MAPPED = "(none)"
# May be absent (core/data/formats/); a rated answer has a label or a score.
OPTIONAL_FIELDS = {("alpaca", "input"), ("preference", "prompt"), ("rated", "label"), ("rated", "score")}
BAD_ROWS = (("skip", "Skip bad rows (they are listed)"), ("stop", "Stop at the first bad row"))


class ReadingChoices(QWidget):
    """"Read as: [schema]" and "Bad rows: [skip|stop]"; a chosen schema shows a column combo per field and Apply.

    mapping_applied carries the mapping (None: back to detection); bad_rows_changed carries "skip" or "stop".
    """

    mapping_applied = Signal(object)
    bad_rows_changed = Signal(str)

    def __init__(self, bad_rows: str = "skip", parent=None):
        super().__init__(parent)
        self.applied: dict | None = None
        self.schema = QComboBox()
        self.schema.addItem(DETECTED, None)
        for name, fmt in formats.FORMATS.items():
            self.schema.addItem(name, name)
            self.schema.setItemData(self.schema.count() - 1, fmt.DESCRIPTION, Qt.ToolTipRole)
        self.schema.setToolTip("Detection picks the schema most rows match; choose one to name its columns yourself.")
        self.bad_rows = QComboBox()
        for key, text in BAD_ROWS:
            self.bad_rows.addItem(text, key)
        self.bad_rows.setCurrentIndex(self.bad_rows.findData(bad_rows))
        self.bad_rows.setToolTip("A bad row is one that cannot be read or does not fit the schema.")

        self.fields: dict[str, dict[str, QComboBox]] = {}  # schema -> field -> column combo
        self.stack = QStackedWidget()
        self.stack.addWidget(QWidget())  # nothing to map while detecting
        for name, fmt in formats.FORMATS.items():
            page = QWidget()
            grid = QGridLayout(page)  # each field's name over its combo: three fields fit the smallest window
            grid.setContentsMargins(0, 0, 0, 0)
            grid.setVerticalSpacing(2)
            self.fields[name] = {}
            for i, field in enumerate(fmt.FIELDS):
                combo = QComboBox(minimumContentsLength=8, placeholderText="none")
                combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
                grid.addWidget(QLabel(field, buddy=combo), 0, i)
                grid.addWidget(combo, 1, i)
                self.fields[name][field] = combo
            self.stack.addWidget(page)
        # The stack is as wide as its current page, so Apply sits right after the column combos.
        self.stack.currentChanged.connect(lambda: self.stack.setMaximumWidth(
            max(0, self.stack.currentWidget().sizeHint().width())))
        self.apply_button = QPushButton("&Apply")
        self.apply_button.setToolTip("Read the file again with these columns.")

        read_as = QLabel("&Read as:", buddy=self.schema)
        bad_label = QLabel("Bad ro&ws:", buddy=self.bad_rows)
        self.columns_label = QLabel("Columns:")
        self.columns_row = QWidget()
        columns = QHBoxLayout(self.columns_row)
        columns.setContentsMargins(0, 0, 0, 0)
        columns.addWidget(self.stack)
        columns.addWidget(self.apply_button, 0, Qt.AlignBottom)
        columns.addStretch(1)
        grid = QGridLayout(self)  # one choice a row, so the smallest window has room for three column combos
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setVerticalSpacing(6)
        grid.addWidget(read_as, 0, 0)
        grid.addWidget(self.schema, 0, 1, Qt.AlignLeft)
        grid.addWidget(self.columns_label, 1, 0, Qt.AlignBottom)  # level with the combos, under the field names
        grid.addWidget(self.columns_row, 1, 1)
        grid.addWidget(bad_label, 2, 0)
        grid.addWidget(self.bad_rows, 2, 1, Qt.AlignLeft)
        grid.setColumnStretch(1, 1)
        self.labels = [read_as, self.columns_label, bad_label]  # the first column, lined up with the page's form

        chain = [self.schema, *(c for f in self.fields.values() for c in f.values()), self.apply_button,
                 self.bad_rows]
        for a, b in zip(chain, chain[1:]):
            QWidget.setTabOrder(a, b)
        self.schema.currentIndexChanged.connect(self._schema_changed)
        self.apply_button.clicked.connect(self.apply)
        self.bad_rows.currentIndexChanged.connect(lambda: self.bad_rows_changed.emit(self.on_bad()))
        self._schema_changed()

    def chosen(self) -> str | None:
        return self.schema.currentData()

    def on_bad(self) -> str:
        return self.bad_rows.currentData()

    def mapping(self) -> dict | None:
        """The mapping the combos show; None while detecting."""
        name = self.chosen()
        if name is None:
            return None
        return {f: c.currentText() for f, c in self.fields[name].items()
                if c.currentIndex() >= 0 and c.currentData() != NOT_MAPPED}

    def set_columns(self, columns: list[str]) -> None:
        """Offer these columns in every field's combo, keeping what was chosen; otherwise a column named like
        the field is preselected, and the other required fields take the unused columns in order."""
        for name, fields in self.fields.items():
            guesses = {f: c.currentText() if c.currentText() in columns else f if f in columns else None
                       for f, c in fields.items()}
            spare = iter([c for c in columns if c not in guesses.values()])
            for field, combo in fields.items():
                optional = (name, field) in OPTIONAL_FIELDS
                # frage, antwort -> prompt, completion
                guess = guesses[field] or (None if optional else next(spare, None))
                combo.clear()
                if optional:
                    combo.addItem(NOT_MAPPED, NOT_MAPPED)
                combo.addItems(columns)
                combo.setCurrentIndex(combo.findText(guess) if guess else 0 if combo.count() else -1)
        self._update_apply()

    def show_detected(self, schema: str | None) -> None:
        """Name what detection found in the first entry, so "Read as" tells what is read now."""
        self.schema.setItemText(0, f"Detected: {schema}" if schema else DETECTED)

    def reset(self) -> None:
        """Back to detection without telling anyone (a new file starts detected)."""
        self.applied = None
        self.schema.blockSignals(True)
        self.schema.setCurrentIndex(0)
        self.schema.blockSignals(False)
        self.show_detected(None)
        self._schema_changed()

    def apply(self) -> None:
        self.applied = self.mapping()
        self.mapping_applied.emit(self.applied)

    def _schema_changed(self) -> None:
        name = self.chosen()
        self.stack.setCurrentIndex(self.schema.currentIndex())
        self.columns_label.setVisible(name is not None)
        self.columns_row.setVisible(name is not None)
        self._update_apply()
        if name is None and self.applied is not None:
            self.apply()  # "Detected" undoes the mapping at once; there is nothing to fill in

    def _update_apply(self) -> None:
        name = self.chosen()
        self.apply_button.setEnabled(name is not None and bool(self.mapping()))
