"""The plan page's "Advanced" panel: override any setting the planner chose; every control starts at Auto.

The strategy's own settings (ui/pages/strategy_options.py) are those of the chosen strategy, or, while the
strategy is Auto, of the one the last plan chose (`show_plan`, called by the page after each plan).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QPushButton,
                               QSizePolicy, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from core import objectives, strategies
from core.errors import BadArgument
from core.hardware import HardwareProfile
from core.planner import Wishes
from core.words import duration
from tuneforge_kernels import OPS
from ui import theme
from ui.pages.strategy_options import StrategyOptions

AUTO = "Auto"
LONGEST_SEQ = 131072  # the sequence-length box's limit until a plan names the model's context
LEARNING_RATES = ("1e-5", "2e-5", "5e-5", "1e-4", "2e-4", "5e-4", "1e-3")
BETAS = ("0.05", "0.1", "0.2", "0.5", "1", "2", "5")  # preference strengths offered (ORPO, DPO 0.1; SimPO 2)
GIB = 1024**3
TIME_LIMITS_MIN = (15, 30, 60, 120, 240, 480, 720)  # the time limits offered, in minutes
THIS_MACHINE = "this machine"  # HardwareProfile.source when it is not a what-if


def fixed(widget, width: int = 160):
    widget.setMinimumWidth(width)
    widget.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
    return widget


def typed_number(box: QComboBox, what: str, example: str, rule: str = "a number ", valid=lambda v: True):
    """The number picked or typed in an editable combo whose first item is Auto (None), or BadArgument."""
    text = box.currentText().strip()
    if text in ("", AUTO):
        return None
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise BadArgument(f"{what} '{text}' is not usable; write {rule}like {example}, or pick Auto.")
    return value


def auto_spin(maximum: int, step: int = 1, suffix: str = "") -> QSpinBox:
    """A spin box whose 0 reads "Auto" (the planner decides)."""
    box = QSpinBox(minimum=0, maximum=maximum, singleStep=step, suffix=suffix)
    box.setSpecialValueText(AUTO)
    return fixed(box)


def auto_combo(items: list[tuple[str, object]]) -> QComboBox:
    box = QComboBox()
    box.addItem(AUTO, None)
    for text, data in items:
        box.addItem(text, data)
    return fixed(box)


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
        self.options_title = theme.muted(QLabel(wordWrap=True))
        self.options = StrategyOptions()
        self.options.edited.connect(self._edited)
        self.planned: str | None = None  # what the last plan chose, shown while the strategy is Auto
        self.seq_len = auto_spin(LONGEST_SEQ, 128, " tokens")
        self.micro_batch = auto_spin(256)
        self.grad_accum = auto_spin(1024)
        self.lr = fixed(QComboBox(editable=True))
        self.lr.addItems([AUTO, *LEARNING_RATES])
        self.epochs = fixed(QDoubleSpinBox(minimum=0, maximum=100, singleStep=0.5, decimals=2, suffix=" epochs"))
        self.epochs.setSpecialValueText(AUTO)
        self.checkpointing = auto_combo([("On", True), ("Off", False)])
        self.packing = fixed(QComboBox())
        self.packing.addItem("Auto (on)", True)
        self.packing.addItem("Off", False)
        # All, none, or all but one: enough to set aside one that misbehaves (the plan page re-plans without it);
        # any other subset on the command line: `tuneforge train --kernels rmsnorm,rope,...`.
        self.kernels = fixed(QComboBox())
        self.kernels.addItem("Auto (all, on a GPU)", None)
        self.kernels.addItem("Off", [])
        for op in OPS:
            self.kernels.addItem(f"All but {op}", [other for other in OPS if other != op])
        # Auto: core.plan_length's rule (after 3 checks when the plan chose several passes)
        self.stop_early = auto_combo([("Off", 0), *((f"After {checks} checks", checks) for checks in (2, 3, 5))])
        self.keep_best = auto_combo([("Yes", True), ("No", False)])  # Auto: yes, unless the disk lacks room
        self.beta = fixed(QComboBox(editable=True))
        self.beta.addItems([AUTO, *BETAS])
        self.objective = auto_combo([(("Rated answers" if m.RATED else "Preference" if m.PAIRS else "Supervised")
                                      + f" ({m.LABEL})", m.NAME) for m in objectives.OBJECTIVES.values()])
        self.train_on = auto_combo([("Every answer", "assistant"), ("The last answer", "last"), ("Every token", "all")])
        self.time_limit = fixed(QComboBox())  # (any other on the command line: `--time-limit 1h45m`)
        for text, seconds in (("No limit", None), *((duration(m * 60), m * 60.0) for m in TIME_LIMITS_MIN)):
            self.time_limit.addItem(text, seconds)
        self.memory_cap = fixed(QDoubleSpinBox(minimum=0, maximum=4096, singleStep=0.5, decimals=1, suffix=" GiB"))
        self.memory_cap.setSpecialValueText(AUTO)
        self.device = auto_combo([("CPU", "cpu")])  # this machine's GPUs join once a plan names them
        self.reset_button = QPushButton("All back to Auto")
        self.reset_button.clicked.connect(self.reset)

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        for title, widget, hint in (
                ("Strategy:", self.strategy, "how the model is trained (LoRA adapters, 4-bit base, all weights…)"),
                ("Its settings:", self.options_title, ""),
                ("", self.options, ""),
                ("Device:", self.device, "where it trains; Auto takes the GPU with the most free memory"),
                ("Memory cap:", self.memory_cap, "use at most this much of the GPU (of RAM on the CPU)"),
                ("Sequence length:", self.seq_len, "longer rows are cut"),
                ("Micro-batch:", self.micro_batch, "examples per forward pass; the main memory cost"),
                ("Accumulation:", self.grad_accum, "micro-batches per optimizer step"),
                ("Learning rate:", self.lr, "pick or type one, like 2e-4"),
                ("Objective:", self.objective, "the answers, or from preference pairs the chosen over the rejected "
                 "(Auto: ORPO for pairs, KTO for answers rated good or bad; DPO, SimPO: for a model already "
                 "answering in the right form; KTO on pairs splits each into a good answer and a bad one)"),
                ("Learns from:", self.train_on, "which tokens a supervised run learns from (Auto: every assistant "
                 "answer; the last answer: earlier turns are its prompt; every token: prompts too). Preference "
                 "tuning learns from the last answer"),
                ("Strength (beta):", self.beta, "how hard preference tuning pushes (Auto: the objective's paper's, "
                 "ORPO 0.1, DPO 0.1, SimPO 2, KTO 0.1)"),
                ("Epochs:", self.epochs, "passes over the data, unless a step limit stops it first"),
                ("Time limit:", self.time_limit, "train for at most this long: the plan cuts the run to fit, "
                 "and the run stops there, keeping what it learned"),
                ("Stop early:", self.stop_early, "end when the validation loss has not reached a new low for this "
                 "many checks; the lowest point's weights are kept either way"),
                ("Keep the lowest's weights:", self.keep_best, "a copy of the weights at the lowest validation loss, "
                 "beside the last step's (Auto: unless the disk lacks room)"),
                ("Gradient checkpointing:", self.checkpointing, "recompute activations: less memory, slower"),
                ("Packing:", self.packing, "several short rows share one sequence"),
                ("Our GPU kernels:", self.kernels,
                 "fused Triton kernels: faster, leaner; what is off runs plain PyTorch")):
            row = QHBoxLayout()
            row.addWidget(widget, 0 if hint else 1)
            if hint:
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

        for box in (self.seq_len, self.micro_batch, self.grad_accum, self.epochs, self.memory_cap):
            box.valueChanged.connect(self._edited)
        for box in (self.checkpointing, self.packing, self.kernels, self.device, self.stop_early, self.keep_best,
                    self.time_limit, self.objective, self.train_on):
            box.currentIndexChanged.connect(self._edited)
        self.strategy.currentIndexChanged.connect(self._strategy_chosen)
        self.lr.currentTextChanged.connect(self._edited)
        self.beta.currentTextChanged.connect(self._edited)
        self._show_options(None)

    def _fold(self, open_: bool) -> None:
        self.toggle.setArrowType(Qt.DownArrow if open_ else Qt.RightArrow)
        self.body.setVisible(open_)

    def _edited(self, *_) -> None:
        n = self.count_overrides()
        self.overridden.setText(f"{n} setting{'s' if n != 1 else ''} overridden" if n else "")
        self.changed.emit()

    # --- the strategy's own settings ---------------------------------------------------------------------
    def _strategy_chosen(self, *_) -> None:
        self._show_options(self.strategy.currentData() or self.planned)
        self._edited()

    def show_plan(self, bundle) -> None:
        """After each plan (app.operations.PlanBundle): its strategy's settings while the strategy is Auto, and
        this machine's GPUs in the device list, and the model's context as the longest sequence to ask for."""
        self.show_hardware(bundle.hardware)
        if self.options.dense != (not bundle.plan.experts):  # a dense model: no settings for experts
            self.options.dense = not bundle.plan.experts
            before = self.options.state()
            self._show_options(self.strategy.currentData() or bundle.plan.strategy)
            if self.options.state() != before:
                self._edited()
        self.show_strategy(bundle.plan.strategy)
        self.show_context(bundle.context)

    def show_context(self, context: int | None) -> None:
        """The sequence length stops at the model's context (the planner refuses more: those positions were never
        trained); a longer value already asked is brought down to it, which plans again."""
        self.seq_len.setMaximum(context or LONGEST_SEQ)
        self.seq_len.setToolTip(f"at most {context} tokens, this model's context" if context else "")

    def show_strategy(self, name: str) -> None:
        """The planned strategy, whose settings show while the strategy is Auto. A changed setting the new one
        lacks is dropped (and the plan made again), so the controls always say what the plan was asked."""
        self.planned = name
        if self.strategy.currentData() is None and name != self.options.strategy:
            before = self.options.state()
            self._show_options(name)
            if self.options.state() != before:
                self._edited()

    def _show_options(self, name: str | None) -> None:
        self.options.show_strategy(name)
        auto = self.strategy.currentData() is None
        self.options_title.setText(
            "those of the planned strategy show once there is a plan" if not name else
            f"{name}'s{' (the planned strategy)' if auto else ''}; each starts at its default (hover for help)"
            if self.options.controls else f"{name} has none")

    # --- the device --------------------------------------------------------------------------------------
    def show_hardware(self, hardware: HardwareProfile) -> None:
        """List this machine's GPUs (a what-if profile's are not this machine's, so they are not listed)."""
        if hardware.source != THIS_MACHINE:
            return
        wanted = [(f"GPU {g.index}: {g.name} ({g.total_bytes / GIB:.0f} GiB)", f"cuda:{g.index}")
                  for g in hardware.gpus]
        listed = [(self.device.itemText(i), self.device.itemData(i)) for i in range(2, self.device.count())]
        if wanted == listed:
            return
        chosen = self.device.currentData()
        self.device.blockSignals(True)
        while self.device.count() > 2:
            self.device.removeItem(2)
        for text, data in wanted:
            self.device.addItem(text, data)
        self.device.setCurrentIndex(max(0, self.device.findData(chosen)))
        self.device.blockSignals(False)
        if self.device.currentData() != chosen:
            self._edited()

    def device_wish(self) -> tuple[str | None, int | None]:
        data = self.device.currentData()
        if not data:
            return None, None
        kind, _, index = data.partition(":")
        return kind, int(index) if index else None

    # --- all of them -------------------------------------------------------------------------------------
    def state(self) -> tuple:
        """The raw control values, to tell whether the plan on screen was made for them."""
        return (self.strategy.currentIndex(), self.seq_len.value(), self.micro_batch.value(), self.grad_accum.value(),
                self.lr.currentText().strip(), self.epochs.value(), self.checkpointing.currentIndex(),
                self.packing.currentIndex(), self.kernels.currentIndex(), self.memory_cap.value(),
                self.device.currentData(), self.options.state(), self.stop_early.currentIndex(),
                self.keep_best.currentIndex(), self.time_limit.currentIndex(), self.objective.currentIndex(),
                self.beta.currentText().strip(), self.train_on.currentIndex())

    def count_overrides(self) -> int:
        return sum((self.strategy.currentIndex() > 0, self.seq_len.value() > 0, self.micro_batch.value() > 0,
                    self.grad_accum.value() > 0, self.lr.currentText().strip() not in ("", AUTO),
                    self.epochs.value() > 0, self.checkpointing.currentIndex() > 0, self.packing.currentIndex() > 0,
                    self.kernels.currentIndex() > 0, self.memory_cap.value() > 0, self.device.currentIndex() > 0,
                    self.stop_early.currentIndex() > 0, self.keep_best.currentIndex() > 0,
                    self.time_limit.currentIndex() > 0, self.objective.currentIndex() > 0,
                    self.beta.currentText().strip() not in ("", AUTO), self.train_on.currentIndex() > 0,
                    len(self.options.state())))

    def reset(self) -> None:
        self.options.reset()
        for box in (self.seq_len, self.micro_batch, self.grad_accum, self.epochs, self.memory_cap):
            box.setValue(0)
        for box in (self.strategy, self.checkpointing, self.packing, self.kernels, self.lr, self.device,
                    self.stop_early, self.keep_best, self.time_limit, self.objective, self.beta, self.train_on):
            box.setCurrentIndex(0)

    def learning_rate(self) -> float | None:
        return typed_number(self.lr, "Learning rate", "2e-4", "a number between 0 and 1 ", lambda v: 0 < v < 1)

    def wishes(self, max_steps: int | None = None) -> Wishes:
        """What the controls ask for; raises BadArgument (a sentence) for a value that cannot be a wish."""
        device, gpu_index = self.device_wish()
        return Wishes(strategy=self.strategy.currentData(), seq_len=self.seq_len.value() or None,
                      micro_batch=self.micro_batch.value() or None, grad_accum=self.grad_accum.value() or None,
                      lr=self.learning_rate(), epochs=self.epochs.value() or None, max_steps=max_steps,
                      checkpointing=self.checkpointing.currentData(), packing=self.packing.currentData(),
                      memory_cap_bytes=int(self.memory_cap.value() * GIB) or None, device=device,
                      gpu_index=gpu_index, options=self.options.values(), kernels=self.kernels.currentData(),
                      stop_early=self.stop_early.currentData(), keep_best=self.keep_best.currentData(),
                      time_limit_s=self.time_limit.currentData(), objective=self.objective.currentData(),
                      train_on=self.train_on.currentData(),
                      beta=typed_number(self.beta, "Strength (beta)", "0.1", valid=lambda v: v >= 0))
