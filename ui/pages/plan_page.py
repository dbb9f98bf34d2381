"""Step 3: the plan. The planner picks how to train on this machine and says why; memory is drawn as a bar."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QComboBox, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QScrollArea, QSizePolicy, QSpinBox, QVBoxLayout, QWidget)

from app import operations as ops
from core import objectives, strategies
from core.data.token_stats import length_stats
from core.errors import KnownError
from core.history import NAME_MAX
from core.plan_text import length_note, size_text
from core.words import counted, duration
from ui.charts import LengthHistogram, MemoryBar
from ui.error_panel import ErrorPanel
from ui.pages.base import BusyLine, Page, Session
from ui.pages.plan_wishes import WishesPanel

THIS_MACHINE = "This machine"


def bullets(lines: list[str]) -> str:
    return "".join(f"<p style='margin: 0 0 4px 0;'>•&nbsp;{html.escape(line)}</p>" for line in lines)


class PlanPage(Page):
    def __init__(self, session: Session, parent=None):
        super().__init__(session, "Plan", "How the training will run on this machine, and why. "
                         "Set a step limit for a short first try, override any setting, or see what another GPU "
                         "would do.", parent)
        self.max_steps = QSpinBox(minimum=0, maximum=1_000_000, value=session.max_steps, singleStep=10)
        self.max_steps.setSpecialValueText("no limit (the planned epochs)")
        self.max_steps.setSuffix(" steps")
        self.max_steps.setMinimumWidth(200)
        self.max_steps.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self._debounce = QTimer(self, singleShot=True, interval=400)
        self._debounce.timeout.connect(self.replan)
        self.max_steps.valueChanged.connect(self._steps_changed)

        self.labels = {key: QLabel("—", wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
                       for key in ("strategy", "settings", "device", "batch", "seq_len", "lr", "steps", "time")}
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        for key, title in (("strategy", "Strategy:"), ("settings", "Its settings:"), ("device", "Device:"),
                           ("batch", "Batch:"),
                           ("seq_len", "Sequence length:"), ("lr", "Learning rate:"), ("steps", "Steps:"),
                           ("time", "Estimated time:")):
            form.addRow(title, self.labels[key])
        steps_row = QHBoxLayout()
        steps_row.addWidget(self.max_steps)
        steps_row.addWidget(QLabel("a few steps make a quick test run", foregroundRole=QPalette.PlaceholderText))
        steps_row.addStretch(1)
        form.addRow("Stop after:", steps_row)
        self.name_edit = QLineEdit(session.run_name, maxLength=NAME_MAX, minimumWidth=200,
                                   placeholderText="optional, e.g. pirate, longer")
        self.name_edit.textChanged.connect(lambda text: setattr(self.session, "run_name", text))
        name_row = QHBoxLayout()
        name_row.addWidget(self.name_edit)
        name_row.addWidget(QLabel("how History lists the run; chat --run NAME finds it too",
                                  foregroundRole=QPalette.PlaceholderText))
        name_row.addStretch(1)
        form.addRow("Name:", name_row)
        self.advanced = WishesPanel()
        self.advanced.changed.connect(self._wishes_changed)
        self.settings = QGroupBox("Settings")
        settings_layout = QVBoxLayout(self.settings)
        settings_layout.addLayout(form)
        settings_layout.addWidget(self.advanced)

        self.what_if = QComboBox()
        self.what_if.addItem(THIS_MACHINE, None)
        for label, path in ops.what_if_profiles():
            self.what_if.addItem(f"What if: {label}", path)
        self.what_if.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self.what_if.currentIndexChanged.connect(self._wishes_changed)
        self.what_if_note = ErrorPanel()
        what_if_row = QHBoxLayout()
        what_if_row.addWidget(QLabel("Plan for:"))
        what_if_row.addWidget(self.what_if)
        what_if_row.addWidget(QLabel("a GPU you do not have, to see what it would change",
                                     foregroundRole=QPalette.PlaceholderText), 1)

        self.memory_bar = MemoryBar()
        self.host_memory = QLabel(wordWrap=True, foregroundRole=QPalette.PlaceholderText)
        self.histogram = LengthHistogram()
        self.cut_caption = QLabel(wordWrap=True, foregroundRole=QPalette.PlaceholderText)
        lengths = QGroupBox("Tokens per row, against the sequence length")
        lengths_layout = QVBoxLayout(lengths)
        lengths_layout.addWidget(self.histogram)
        lengths_layout.addWidget(self.cut_caption)

        memory = QGroupBox("Estimated peak memory")
        memory_layout = QVBoxLayout(memory)
        memory_layout.addWidget(self.memory_bar)
        memory_layout.addWidget(self.host_memory)

        self.reasons = QLabel(wordWrap=True, textFormat=Qt.RichText, textInteractionFlags=Qt.TextSelectableByMouse)
        self.rejected = QLabel(wordWrap=True, textFormat=Qt.RichText, textInteractionFlags=Qt.TextSelectableByMouse)
        why = QGroupBox("Why")
        why_layout = QVBoxLayout(why)
        why_layout.addWidget(self.reasons)
        self.rejected_title = QLabel("<b>Not chosen</b>")
        why_layout.addWidget(self.rejected_title)
        why_layout.addWidget(self.rejected)
        self.warnings = ErrorPanel()
        self.status = BusyLine(on_cancel=lambda: self.cancel_task("plan"), on_retry=self.replan)

        content = QWidget()
        inner = QVBoxLayout(content)
        inner.setContentsMargins(0, 0, 10, 0)
        inner.addLayout(what_if_row)
        self.going_label = QLabel(wordWrap=True, visible=False)  # a run that goes on from another's weights
        inner.addWidget(self.going_label)
        for w in (self.what_if_note, self.status, self.error, self.warnings, self.settings, lengths, memory, why):
            inner.addWidget(w)
        inner.addStretch(1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setWidget(content)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(layout.contentsMargins().left(), 0, 0, 0)
        layout.addWidget(scroll)
        self._planned_for: tuple | None = None

    def initializePage(self) -> None:
        going = self.session.going_on
        self.going_label.setText(f"Goes on from {going.describe()}: its strategy and settings, its weights as the "
                                 "start." if going else "")
        self.going_label.setVisible(going is not None)
        if self._planned_for != self._key() or self.session.bundle is None:
            self.replan()

    def _key(self) -> tuple:
        ref = self.session.model_ref
        s = self.session
        return (str(ref.path) if ref else None, s.data_path, (s.data_report or {}).get("digest"), s.data_mapping,
                s.bad_rows, s.good_above, s.eval_data, self.max_steps.value(), self.advanced.state(),
                self.hardware_file())

    def hardware_file(self) -> str | None:
        """The what-if profile planned for, or None for this machine."""
        return self.what_if.currentData()

    def _steps_changed(self, value: int) -> None:
        self.session.max_steps = value
        self._wishes_changed()

    def _wishes_changed(self, *_) -> None:
        self.session.bundle = None
        if self.hardware_file() is None:
            self.what_if_note.clear()
        self.completeChanged.emit()
        self._debounce.start()

    def replan(self) -> None:
        self._debounce.stop()
        self.session.bundle = None
        self._planned_for = self._key()
        self.error.clear()
        self.completeChanged.emit()
        self.cancel_task("plan")
        try:
            wishes = self.advanced.wishes(self.max_steps.value() or None)
            if self.session.going_on is not None:  # its strategy and settings, under the ones set here
                wishes = self.session.going_on.apply(wishes)
            self.session.train_on = wishes.train_on  # the data page's preview marks what the run learns from
        except KnownError as e:
            self.status.stop()
            self.error.show_error(e)
            return
        self.status.start("Making a plan…")
        self.run_task("plan", ops.make_plan, self.session.model_ref.name, self.session.data_path, wishes,
                      hardware_file=self.hardware_file(), mapping=self.session.data_mapping,
                      on_bad=self.session.bad_rows, eval_data=self.session.eval_data,
                      good_above=self.session.good_above, plan_only=True, on_done=self._planned, on_error=self._failed,
                      on_progress=self.status.report)

    def _planned(self, bundle) -> None:
        self.session.bundle = bundle
        self.status.stop()
        self.advanced.show_plan(bundle)  # the planned strategy's settings while Strategy is Auto; this machine's GPUs
        p = bundle.plan
        self.labels["strategy"].setText(p.strategy + ("" if p.strategy_built else " (not built yet)")
                                        + (f", preference tuning ({objectives.label(p.objective)})"
                                           if objectives.learns_pairs(p.objective) else ""))
        self.labels["settings"].setText(", ".join([setting_text(k, v) for k, v in p.shown_options.items()]
                                                  + [f"optimizer {p.optimizer}"]))
        self.labels["settings"].setToolTip(settings_help(p.strategy, p.shown_options))
        hypothetical = bundle.hardware.source.removeprefix("what-if: ") if self.hardware_file() else ""
        self.labels["device"].setText(f"{p.device}" + (f" {p.gpu_index}: {p.gpu_name}" if p.gpu_name else "")
                                      + f" in {p.precision}" + (" (hypothetical, a what-if)" if hypothetical else ""))
        self.settings.setTitle(f"Settings, hypothetical: planned for {hypothetical}" if hypothetical else "Settings")
        notes = [f"This plan is a what-if for {hypothetical}, not this machine; you cannot train on a GPU you do "
                 f"not have, so Next waits until you plan for “{THIS_MACHINE}” again."] if hypothetical else []
        if bundle.model.missing:
            notes.append(f"Plan only: {bundle.model.missing}, so Next waits for the whole model.")
        if notes:
            self.what_if_note.show_message(" ".join(notes), kind="info")
        else:
            self.what_if_note.clear()
        unit = (objectives.share_words(p.objective)[1] if objectives.learns_pairs(p.objective)  # two sequences each
                else "example")
        self.labels["batch"].setText(f"{counted(p.micro_batch, unit)} × {p.grad_accum} accumulation = "
                                     f"{p.micro_batch * p.grad_accum} per step"
                                     + (", gradient checkpointing on" if p.gradient_checkpointing else ""))
        self.labels["seq_len"].setText(f"{p.seq_len} tokens" + (f" ({p.truncated_rows} rows cut)" if p.truncated_rows else ""))
        self.labels["lr"].setText(f"{p.lr:g}")
        self.labels["steps"].setText(f"{p.total_steps}{length_note(p)}"
                                     + (f", ending early after {p.stop_early} checks without a new low"
                                        if p.stop_early else ""))
        self.labels["time"].setText(("at most " if p.stop_early else "about ")
                                    + f"{duration(p.total_time_s)} ({duration(p.step_time_s)} per step)")
        self.show_lengths(bundle.token_lengths, p.seq_len)
        self.memory_bar.set_memory(p.memory, p.memory_limit)
        gib = 1024**3
        self.host_memory.setText(
            (f"Host RAM: about {sum(p.ram.values()) / gib:.1f} GiB. " if p.device == "cuda" and p.ram else "")
            + f"Disk for checkpoints and results: about {size_text(sum(p.disk.values())) or '0 KB'}. "
            + (f"Weights offloaded: {p.offload}." if p.offload else ""))
        self.reasons.setText(bullets(p.reasons))
        self.rejected.setText(bullets([f"{r['strategy']}: {r['why']}" for r in p.rejected]))
        self.rejected_title.setVisible(bool(p.rejected))
        if p.warnings:
            self.warnings.show_message("\n".join(p.warnings), kind="warning" if p.fits else "error")
        else:
            self.warnings.clear()
        self.completeChanged.emit()

    def show_lengths(self, lengths: list[int], seq_len: int) -> None:
        stats = length_stats(lengths, seq_len)
        self.histogram.set_histogram(stats.get("histogram"), seq_len)
        cut = stats.get("truncated_rows", 0)
        self.cut_caption.setText(
            f"{cut} row{'s' if cut != 1 else ''} longer than the planned sequence length ({seq_len} tokens) "
            f"{'are' if cut != 1 else 'is'} cut; the part past it is not trained." if cut else
            f"No row is longer than the planned sequence length ({seq_len} tokens): nothing is cut.")

    def _failed(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)

    def isComplete(self) -> bool:
        bundle = self.session.bundle
        return (bundle is not None and bundle.plan.strategy_built and self.hardware_file() is None
                and not bundle.model.missing)


def setting_text(name: str, value) -> str:
    """'rslora off', 'activations on host on', 'r 16': a strategy setting as words, not Python."""
    shown = ("on" if value else "off") if isinstance(value, bool) else value
    return f"{name.replace('_', ' ')} {shown}"


def settings_help(strategy: str, options: dict) -> str:
    """Each planned setting's help (the strategy's own), for the settings line's tooltip; its
    `--option` name, so the CLI spelling is one hover away."""
    helps = {o["name"]: o["help"] for o in strategies.describe_options(strategy)}
    return "\n".join(f"{k} ({k}={v} on the command line): {helps.get(k, '')}" for k, v in options.items())
