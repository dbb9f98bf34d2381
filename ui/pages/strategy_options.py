"""A strategy's own settings as typed controls, built from `core.strategies.describe_options`, so a new
strategy, or a new setting of one, shows in the plan's Advanced panel with no change here.

Each control starts at "Default" and counts as a wish only once it is changed: a setting left alone stays
the strategy's (or the planner's) choice, exactly as `--option` left out does on the command line.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit, QSizePolicy, QSpinBox, QWidget

from core import strategies


def listed_choices(help_text: str) -> list[str]:
    """The single quoted words of a setting's help ("'uniform' (LISA) or 'owlore' ..."): its choices."""
    return list(dict.fromkeys(re.findall(r"'([\w.-]+)'", help_text)))


def kind_of(type_name: str) -> str | None:
    """'int', 'float', 'bool' or 'str' from a field's annotation ('int | None' too); None for other types."""
    match = re.match(r"(?:Optional\[)?(bool|int|float|str)\b", type_name.strip())
    return match.group(1) if match else None


class DefaultSpin(QSpinBox):
    """Its lowest value reads "Default (16)": left to the strategy. A step from there starts at the default."""

    def __init__(self, default):
        super().__init__(minimum=-1, maximum=1_000_000)
        self.default = default if isinstance(default, int) else 0
        self.setSpecialValueText(f"Default ({default})")
        self.setValue(self.minimum())

    def stepBy(self, steps: int) -> None:
        if self.value() == self.minimum():
            self.setValue(self.default)
        else:
            super().stepBy(steps)


class DefaultDoubleSpin(QDoubleSpinBox):
    """DefaultSpin for a float setting; shows the shortest form of the number (0.05, not 0.0500)."""

    def __init__(self, default):
        super().__init__(minimum=-1, maximum=1_000_000, decimals=4)
        self.default = float(default) if isinstance(default, (int, float)) else 0.0
        self.setSingleStep(0.01 if abs(self.default) < 1 else 0.5)
        self.setSpecialValueText(f"Default ({default:g})" if default is not None else "Default")
        self.setValue(self.minimum())

    def stepBy(self, steps: int) -> None:
        if self.value() == self.minimum():
            self.setValue(self.default)
        else:
            super().stepBy(steps)

    def textFromValue(self, value: float) -> str:
        return f"{value:g}"


class OptionControl:
    """One setting: bool → Default/On/Off; a str whose help lists its choices (the default among them) → a
    drop-down; int/float → a spin box; any other str → a text field. `value()` is None until changed."""

    def __init__(self, spec: dict):
        self.name, self.default = spec["name"], spec["default"]
        self.kind = kind_of(spec["type"])
        choices = listed_choices(spec["help"]) if self.kind == "str" else []
        if self.kind == "bool" or (len(choices) > 1 and self.default in choices):
            shown = {True: "on", False: "off"}.get(self.default, self.default) if self.kind == "bool" else self.default
            self.widget = QComboBox()
            self.widget.addItem(f"Default ({shown})" if self.default is not None else "Default", None)
            for text, data in ([("On", True), ("Off", False)] if self.kind == "bool" else [(c, c) for c in choices]):
                self.widget.addItem(text, data)
        elif self.kind in ("int", "float"):
            self.widget = (DefaultSpin if self.kind == "int" else DefaultDoubleSpin)(self.default)
        else:
            self.widget = QLineEdit(placeholderText=f"Default ({self.default})")
        self.widget.setMinimumWidth(200)
        self.widget.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self.widget.setToolTip(spec["help"])

    def value(self):
        w = self.widget
        if isinstance(w, QComboBox):
            return w.currentData()
        if isinstance(w, QLineEdit):
            return w.text().strip() or None
        return None if w.value() == w.minimum() else round(w.value(), 6) if self.kind == "float" else w.value()

    def set_value(self, value) -> None:
        """Show a value kept from another strategy's setting of the same name (where this control can)."""
        w = self.widget
        if isinstance(w, QComboBox):
            w.setCurrentIndex(max(0, w.findData(value)))
        elif isinstance(w, QLineEdit):
            w.setText(str(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            w.setValue(value)

    def reset(self) -> None:
        w = self.widget
        if isinstance(w, QComboBox):
            w.setCurrentIndex(0)
        elif isinstance(w, QLineEdit):
            w.clear()
        else:
            w.setValue(w.minimum())

    def connect(self, slot) -> None:
        w = self.widget
        signal = (w.currentIndexChanged if isinstance(w, QComboBox) else w.textChanged if isinstance(w, QLineEdit)
                  else w.valueChanged)
        signal.connect(slot)


class StrategyOptions(QWidget):
    """The settings of one strategy as a form; `edited` fires on every change."""

    edited = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.controls: list[OptionControl] = []
        self.strategy: str | None = None
        self.dense = False  # the model is known to have no experts (the last plan's): their settings are left out

    def show_strategy(self, name: str | None) -> None:
        """Rebuild for `name`; a changed setting it shares with the last one keeps its value, the rest go."""
        kept = dict(self.state())
        while self.form.rowCount():
            self.form.removeRow(0)
        self.strategy = name
        controls = [OptionControl(spec) for spec in strategies.describe_options(name)
                    if not (self.dense and spec["experts_only"])] if name else []
        self.controls = [c for c in controls if c.kind]  # a list or dict setting is for config files
        for c in self.controls:
            if c.name in kept:
                c.set_value(kept[c.name])
            c.connect(lambda *_: self.edited.emit())
            self.form.addRow(QLabel(f"{c.name}:", toolTip=c.widget.toolTip()), c.widget)
        self.setVisible(bool(self.controls))

    def state(self) -> tuple:
        """(name, value) of each changed setting."""
        return tuple((c.name, c.value()) for c in self.controls if c.value() is not None)

    def values(self) -> dict:
        """The changed settings; BadArgument (a sentence naming the setting and the fix) for a bad one."""
        values = dict(self.state())
        if values:
            strategies.get(self.strategy, need_built=False).options(values)
        return values

    def reset(self) -> None:
        for c in self.controls:
            c.reset()
