"""Step 2: the training data. The demo set is preselected; drop a file or folder to use your own."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QHBoxLayout, QLabel,
                               QPushButton, QScrollArea, QTextEdit, QVBoxLayout, QWidget)

from app import operations as ops
from app import paths
from core.data import dataset, formats, hub_datasets, split
from core.data import scores as scores_mod
from ui import theme
from ui.charts import LengthHistogram
from ui.pages.base import BusyLine, Page, Session
from ui.pages.reading_choices import ReadingChoices

SHOWN_PROBLEMS = 5
HUB_PROMPT = "From the Hugging Face cache…"
VALIDATION_AUTO = "Auto (held out of the data)"
VALIDATION_FILE = "From another file…"
CHOOSE = "choose"  # the item that opens a file dialog


def cached_datasets(progress=None) -> list[str]:
    """The cached hub datasets' splits by id; none when the cache cannot be read (the page works without).
    It walks every cached snapshot and reads its card, so the page asks for it in the background."""
    try:
        return hub_datasets.cached()
    except Exception:  # an odd cache folder must not keep the page from opening
        return []


def local_path(mime: QMimeData) -> str | None:
    """The first local file or folder in dragged data, if any."""
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile():
            return url.toLocalFile()
    return None


class DropZone(QFrame):
    """A dashed box that takes a dropped file or folder and names the one in use."""

    dropped = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setObjectName("dropZone")
        self.title = QLabel("Drop a dataset here", alignment=Qt.AlignCenter)
        self.title.setStyleSheet("font-size: 11pt; font-weight: 600; border: none;")
        self.hint = theme.muted(QLabel(alignment=Qt.AlignCenter, wordWrap=True))
        self.hint.setStyleSheet("border: none;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(self.title)
        layout.addWidget(self.hint)
        self._highlight(False)

    def show_path(self, path: str) -> None:
        hub = hub_datasets.looks_like_id(path) and not Path(path).exists()
        self.title.setText(path if hub else Path(path).name or path)
        where = "a dataset from the Hugging Face cache" if hub else path
        self.hint.setText(f"{where}\nDrop another dataset file (JSONL, JSON, CSV, TSV, Parquet, Arrow, text) or a "
                          "folder here to change it.")

    def _highlight(self, on: bool) -> None:
        self.lit = on
        colour, background = (("#6fa3ff", "#1f2b3d") if on else ("#6b7380", "#25272b")) if theme.is_dark() else \
            (("#2f6fce", "#eaf2fe") if on else ("#9aa5b1", "#f8f9fb"))
        sheet = f"QFrame#dropZone {{ border: 2px dashed {colour}; border-radius: 8px; background: {background}; }}"
        if sheet != self.styleSheet():  # setting a sheet may itself signal a palette change: set it only once
            self.setStyleSheet(sheet)

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange:  # the theme switched: the card's colours follow
            self._highlight(getattr(self, "lit", False))

    def dragEnterEvent(self, event) -> None:
        if local_path(event.mimeData()):
            event.acceptProposedAction()
            self._highlight(True)

    def dragLeaveEvent(self, _event) -> None:
        self._highlight(False)

    def dropEvent(self, event) -> None:
        self._highlight(False)
        path = local_path(event.mimeData())
        if path:
            event.acceptProposedAction()
            self.dropped.emit(path)


class Preview(QTextEdit):
    """Asks only for its minimum height, so the page scrolls only when that does not fit; it grows into the rest."""

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.minimumHeight())


class DataPage(Page):
    def __init__(self, session: Session, parent=None):
        super().__init__(session, "Data", "The examples the model learns from. The demo set teaches it to talk "
                         "like a pirate; drop your own file (JSONL, JSON, CSV, TSV, Parquet, Arrow, text) or a folder "
                         "to use it instead.", parent)
        session.data_path = session.data_path or str(paths.DEMO_DATA)
        self.drop_zone = DropZone()
        self.drop_zone.dropped.connect(self.set_path)
        self.choose_button = QPushButton("Choose file…")
        self.folder_button = QPushButton("Choose folder…")
        self.demo_button = QPushButton("Use the demo data")
        self.choose_button.clicked.connect(self._choose_file)
        self.folder_button.clicked.connect(self._choose_folder)
        self.demo_button.clicked.connect(lambda: self.set_path(str(paths.DEMO_DATA)))
        self.hub_choice = QComboBox(toolTip="Datasets already downloaded to the Hugging Face cache (by "
                                            "huggingface-cli or the datasets library), one entry per split")
        self.hub_choice.addItem(HUB_PROMPT, None)
        self.hub_choice.setVisible(False)  # until the cache is read, and for good when nothing is cached
        self.hub_choice.activated.connect(self._hub_chosen)
        self.run_task("hub", cached_datasets, on_done=self._hub_listed, on_error=lambda _e: None)
        buttons = QHBoxLayout()
        for b in (self.choose_button, self.folder_button, self.demo_button, self.hub_choice):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.validation = QComboBox(toolTip="Which rows measure the validation loss. Auto holds some out of the data "
                                            "(none under 20 rows), or takes a cached hub dataset's own validation "
                                            "split; another file leaves every row of this one to train on.")
        self.validation.addItem(VALIDATION_AUTO, None)
        self.validation.addItem(VALIDATION_FILE, CHOOSE)
        self.validation.activated.connect(self._validation_chosen)
        validation = QHBoxLayout()
        validation_label = QLabel("&Validation:", buddy=self.validation)
        validation.addWidget(validation_label)
        validation.addWidget(self.validation)
        validation.addStretch(1)
        self.choices = ReadingChoices(session.bad_rows)
        self.choices.mapping_applied.connect(self._mapping_applied)
        self.choices.bad_rows_changed.connect(self._bad_rows_changed)

        self.format_label, self.rows_label, self.problems_label, self.tokens_label = (
            QLabel("—", wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse) for _ in range(4))
        form = QFormLayout()
        form.addRow("Format:", self.format_label)
        form.addRow("Rows:", self.rows_label)
        # Scored answers: the line above which they are rated good (core/data/scores.py), shown for them alone.
        self.line = QDoubleSpinBox(decimals=2, minimum=-1e9, maximum=1e9, keyboardTracking=False,
                                   toolTip="Answers scored above this are rated good, the rest bad. It starts in the "
                                           "middle of the file's scores; the run rates its validation rows by it too.")
        self.line.valueChanged.connect(self._line_changed)
        self.line_note = QLabel(wordWrap=True)
        line_row = QHBoxLayout()
        line_row.addWidget(self.line)
        line_row.addWidget(self.line_note, 1)
        form.addRow("Good above:", line_row)
        self.form, self.line_row = form, line_row
        form.setRowVisible(line_row, False)
        form.addRow("Problems:", self.problems_label)
        form.addRow("Tokens per row:", self.tokens_label)
        self.histogram = LengthHistogram()
        form.addRow("", self.histogram)
        labels = [form.labelForField(w) for w in (self.format_label, self.rows_label, self.problems_label,
                                                   self.tokens_label)] + self.choices.labels + [validation_label]
        width = max(label.sizeHint().width() for label in labels)
        for label in labels:  # one label column for the choices and the results, so their fields line up
            label.setMinimumWidth(width)
        self.preview = Preview(readOnly=True, placeholderText="The first examples, as the model will see them.")
        self.preview.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.preview.setMinimumHeight(90)
        self.status = BusyLine(on_cancel=lambda: self.cancel_task("inspect"), on_retry=self.inspect)

        content = QWidget()  # scrolls when the window is small, so nothing is squeezed or clipped
        layout = QVBoxLayout(content)
        layout.setSpacing(8)
        layout.addWidget(self.drop_zone)
        layout.addLayout(buttons)
        layout.addWidget(self.choices)
        layout.addLayout(validation)
        layout.addWidget(self.status)
        layout.addWidget(self.error)
        layout.addSpacing(4)
        layout.addLayout(form)
        layout.addSpacing(6)
        layout.addWidget(QLabel("The first examples as the model sees them; it learns from the highlighted part:"))
        layout.addWidget(self.preview, 1)
        scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._inspected_for: tuple | None = None
        self.drop_zone.show_path(session.data_path)
        chain = [self.choose_button, self.folder_button, self.demo_button, self.choices.schema]
        for a, b in zip(chain, chain[1:]):
            QWidget.setTabOrder(a, b)
        QWidget.setTabOrder(self.choices.bad_rows, self.preview)

    def initializePage(self) -> None:
        if self._inspected_for != self._key():
            self.inspect()

    def showEvent(self, event) -> None:
        """Back from the plan page (Back calls no initializePage), where "Learns from" may have changed what the
        preview marks."""
        super().showEvent(event)
        if self._inspected_for is not None and self._inspected_for != self._key():
            self.inspect()

    def _key(self) -> tuple:
        s = self.session
        return (s.data_path, str(s.model_ref.path) if s.model_ref else None, s.data_mapping, s.bad_rows, s.good_above,
                s.train_on)  # (back from the plan page with another "Learns from": the preview marks it)

    def set_path(self, path: str) -> None:
        self.session.data_path = path
        self.session.data_mapping = None  # another file has other columns: detect its schema first
        self.session.good_above = None  # and other scores: their own middle
        self.choices.reset()
        self.drop_zone.show_path(path)
        self.inspect()

    def _mapping_applied(self, mapping: dict | None) -> None:
        self.session.data_mapping = mapping
        self.session.good_above = None  # another score column, perhaps: its own middle
        self.inspect()

    def _line_changed(self, value: float) -> None:
        scores = (self.session.data_report or {}).get("scores")
        if scores and value != scores["good_above"]:
            self.session.good_above = value
            self.inspect()

    def _bad_rows_changed(self, on_bad: str) -> None:
        self.session.bad_rows = on_bad
        self.inspect()

    def inspect(self) -> None:
        self.session.data_report = None
        self._inspected_for = self._key()
        self.error.clear()
        for label in (self.format_label, self.rows_label, self.problems_label, self.tokens_label):
            label.setText("—")
        self.preview.clear()
        self.histogram.set_histogram(None)
        self.completeChanged.emit()
        self.status.start("Reading the dataset…")
        model = self._inspected_for[1]
        self.run_task("inspect", ops.inspect_data, self.session.data_path, model=model,
                      mapping=self.session.data_mapping, on_bad=self.session.bad_rows,
                      good_above=self.session.good_above, train_on=self.session.train_on, on_done=self._inspected,
                      on_error=self._failed, on_progress=self.status.report)

    def _inspected(self, report: dict) -> None:
        self.session.data_report = report
        self.status.stop()
        self.choices.set_columns(report.get("columns", []))
        self.choices.show_detected(None if self.session.data_mapping else report["format"])
        fmt = formats.FORMATS.get(report["format"])
        why = report.get("schema_reason") or (fmt.DESCRIPTION if fmt else "")
        self.format_label.setText("\n".join([f"{report['format']}" + (f" — {why}" if why else ""),
                                              *report.get("warnings", [])]))
        dup = report.get("duplicates", 0)
        rated = report.get("ratings")
        self.rows_label.setText(f"{report['rows']} usable" + (f", {dup} duplicated" if dup else "")
                                + (f" ({rated['good']} rated good, {rated['bad']} rated bad)" if rated else ""))
        self.rows_label.setToolTip(f"Duplicated rows: {split.REPEATED}." if dup else "")
        self.problems_label.setText(problems_text(report))
        self.show_line(report.get("scores"))
        t = report.get("tokens") or {}
        tokens = (f"min {t['min']}, median {t['median']}, 95% under {t['p95']}, max {t['max']} "
                  f"({t['total']:,} in all)" if t.get("count") else "—")
        if report.get("longer_than_context"):
            tokens += f"; {report['longer_than_context']} longer than the model's context ({report['context']}) and cut"
        self.tokens_label.setText(tokens)
        self.histogram.set_histogram(t.get("histogram"), report.get("context"))
        rows = report.get("preview_rows")
        if rows:
            self.preview.setHtml(preview_html(rows))
        else:
            self.preview.setPlainText(report.get("preview", ""))
        self.completeChanged.emit()

    def show_line(self, scores: dict | None) -> None:
        """The line of scored answers, set where the data drew it, with what it makes of the scores."""
        self.form.setRowVisible(self.line_row, bool(scores))
        if not scores:
            return
        self.line.blockSignals(True)
        self.line.setSingleStep(max(0.01, (scores["high"] - scores["low"]) / 8))
        self.line.setValue(scores["good_above"])
        self.line.blockSignals(False)
        text = scores_mod.describe(scores)
        self.line_note.setText(text[:1].upper() + text[1:])

    def _failed(self, error: BaseException) -> None:
        self.status.stop()
        self.error.show_error(error)
        self.choices.show_detected(None)
        # The columns still help when detection failed: they are what the person maps.
        self.run_task("columns", ops.data_columns, self.session.data_path, on_done=self.choices.set_columns,
                      on_error=lambda _e: self.choices.set_columns([]))

    def isComplete(self) -> bool:
        return bool(self.session.data_report and self.session.data_report.get("rows"))

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a dataset", str(Path(self.session.data_path).parent),
                                              "Datasets (" + " ".join(f"*{s}" for s in dataset.SUFFIXES) + ")")
        if path:
            self.set_path(path)

    def _validation_chosen(self, index: int) -> None:
        if self.validation.itemData(index) == CHOOSE:
            path, _ = QFileDialog.getOpenFileName(self, "Choose the validation rows", "",
                                                  "Datasets (" + " ".join(f"*{s}" for s in dataset.SUFFIXES) + ")")
            self.set_eval_data(path or self.session.eval_data)
        else:
            self.set_eval_data(self.validation.itemData(index))

    def set_eval_data(self, path: str | None) -> None:
        """Validate on this file (None: Auto); the plan page plans for it and the run measures on it."""
        self.session.eval_data = path or None
        while self.validation.count() > 2:
            self.validation.removeItem(2)
        if path:
            self.validation.addItem(path, path)
        self.validation.setCurrentIndex(self.validation.findData(path) if path else 0)

    def _hub_listed(self, ids: list[str]) -> None:
        self.hub_choice.addItems(ids)
        self.hub_choice.setVisible(bool(ids))

    def _hub_chosen(self, index: int) -> None:
        if index > 0:
            self.set_path(self.hub_choice.itemText(index))

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder of dataset files")
        if folder:
            self.set_path(folder)


def preview_html(rows: list[dict]) -> str:
    """Rows as segments (core.data.token_report): trained text highlighted, text past the length greyed."""
    parts = []
    for row in rows:
        body = "".join(
            f'<span style="background:#d9f2d9;color:#1f2933">{html.escape(seg["text"])}</span>'
            if seg.get("trained") and not seg.get("cut")
            else f'<span style="color:#aaa">{html.escape(seg["text"])}</span>' if seg.get("cut")
            else html.escape(seg["text"]) for seg in row["segments"])
        parts.append(f'<p style="color:#777">{html.escape(row["source"])}</p><pre>{body}</pre>')
    return "<hr>".join(parts)


def problems_text(report: dict) -> str:
    n = report.get("problems", 0)
    if not n:
        return "none"
    shown = report.get("problem_list", [])[:SHOWN_PROBLEMS]
    more = f"\n… and {n - len(shown)} more" if n > len(shown) else ""
    return f"{n} rows skipped:\n" + "\n".join(shown) + more
