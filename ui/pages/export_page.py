"""Step 5: keep the result. Export the adapter, a merged model or a GGUF of a chosen type, try the base and the
tuned model side by side in a conversation, and measure both on held-out examples (ui/pages/evaluate_box.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFileDialog, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QVBoxLayout)

from app import answerers
from app import operations as ops
from app import user_settings
from core import export as core_export
from core import model_card, ollama_create, other_apps
from core.conversation import Conversation
from core.errors import KnownError, NotBuiltYet
from core.gguf_export import lora_adapter, projectors, tensor_types
from ui.pages.answer_pane import AnswerPane
from ui.pages.base import BusyLine, Page, Session, longest_box
from ui.pages.evaluate_box import EvaluateBox
from ui.pages.weights_choice import WeightsChoice

DEFAULT_PROMPT = "What is 12 plus 5?"


def free_folder(parent: Path, name: str) -> Path:
    """parent/name, or parent/name-2, -3… so an export never lands on an existing folder."""
    candidate, n = parent / name, 1
    while candidate.exists():
        n += 1
        candidate = parent / f"{name}-{n}"
    return candidate


def ollama_name(run: str, quant: str) -> str:
    """The name offered for Ollama: the run's name (or id) in the characters Ollama takes, its GGUF type as the tag."""
    stem = "-".join("".join(c if (c.isascii() and c.isalnum()) or c in "_." else " " for c in run.lower()).split())
    return f"{stem.strip('.')[:80] or 'tuned'}:{quant}"


def ask(run_id: str, prompt: str | None, conversation: Conversation, progress, weights: str = "auto",
        temperature: float = 0.0, longest: int | None = None) -> str:
    """The run's tuned model (its chosen `weights`) answers, within its conversation (`prompt` None: after the tool
    results given), in `longest` tokens at most (None: the run's default); it stays loaded for the next question
    (app/answerers.py)."""
    return ops.chat(prompt, run=run_id, keep=True, progress=progress, conversation=conversation, weights=weights,
                    temperature=temperature, max_new_tokens=longest)


def ask_base(run_id: str, prompt: str | None, conversation: Conversation, progress, temperature: float = 0.0,
             longest: int | None = None) -> str:
    """The same prompt to the model the run started from, without what it learned, within its own conversation."""
    return ops.chat(prompt, model=ops.get_run(run_id)["model_path"], keep=True, progress=progress,
                    conversation=conversation, temperature=temperature, max_new_tokens=longest)


class PromptEdit(QLineEdit):
    """Enter asks the model; it must not travel on to the wizard, whose default button closes the window."""

    def keyPressEvent(self, event) -> None:
        super().keyPressEvent(event)
        if event.key() in (Qt.Key_Return, Qt.Key_Enter):
            event.accept()


def gguf_notes(folder: Path) -> list[str]:
    """The verification sentence, the matrices that fell back to another type, and the Ollama line of a GGUF
    export (nothing for other exports)."""
    report = folder / "export.json"
    if not report.is_file():
        return []
    try:
        found = json.loads(report.read_text(encoding="utf-8"))
        notes = [found["verification"]["summary"]]
        if found.get("fallbacks"):
            notes.append(found["fallbacks"]["summary"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if (folder / "Modelfile").is_file():
        notes.append(f"Ollama: ollama create my-model -f {folder / 'Modelfile'}")
        notes += [said for said in (found.get("ollama"), (found.get("lora") or {}).get("chat_template_why")) if said]
    return notes + [said for said in (lora_adapter.missing(found), projectors.said(found)) if said]


class ExportPage(Page):
    train_more = Signal(str, str)  # (run id, weights): a new fine-tune that goes on from these weights
    exported_to = Signal(str)  # the folder an export was just written to

    def __init__(self, session: Session, parent=None):
        super().__init__(session, "Export", "Save what the run learned where other tools can use it, "
                         "or try it right here.", parent)
        self.summary = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.weights = WeightsChoice()  # the lowest validation loss's weights or the last step's, where both are kept
        self.weights.changed.connect(lambda _: self.new_conversation())
        self.train_more_button = QPushButton("Train more from these weights…", autoDefault=False)
        self.train_more_button.setToolTip("A new fine-tune that starts from what this run learned: on new data, "
                                          "or for more steps, on the same model with the same strategy.")
        self.train_more_button.clicked.connect(
            lambda: self.train_more.emit(self.session.run_id or "", self.weights.value()))
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.train_more_button, 0, Qt.AlignTop)
        self.folder_edit = QLineEdit()
        self.folder_button = QPushButton("Change…")
        self.folder_button.clicked.connect(self._choose_folder)
        folder_row = QHBoxLayout()
        folder_row.addWidget(QLabel("Save exports in:"))
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.folder_button)

        self.adapter_button = QPushButton("Export adapter")
        self.adapter_button.setToolTip("The small LoRA adapter (PEFT layout); load it on top of the base model.")
        self.merged_button = QPushButton("Export merged model (safetensors)")
        self.merged_button.setToolTip("The base model with the adapter merged in, as a normal model folder.")
        self.gguf_button = QPushButton("Export GGUF")
        self.gguf_button.setToolTip("One file for llama.cpp, Ollama and LM Studio, with an Ollama Modelfile beside "
                                    "it; checked by reading it back before it is called done.")
        self.quant_combo = QComboBox()
        for p in tensor_types.PICKS.values():
            self.quant_combo.addItem(f"{p.name} — {p.summary}", p.name)
        self.quant_combo.setCurrentIndex(self.quant_combo.findData(tensor_types.DEFAULT))
        self.quant_combo.setToolTip("How the GGUF stores the weights: smaller files answer a little less like "
                                    "the trained model.")
        self.adapter_button.clicked.connect(lambda: self.export("adapter"))
        self.merged_button.clicked.connect(lambda: self.export("safetensors"))
        self.gguf_button.clicked.connect(lambda: self.export("gguf", self.quant_combo.currentData()))
        buttons = QHBoxLayout()
        for b in (self.adapter_button, self.merged_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        gguf_row = QHBoxLayout()
        quant_label = QLabel("GGUF &type:", buddy=self.quant_combo)
        gguf_row.addWidget(quant_label)
        gguf_row.addWidget(self.quant_combo, 1)
        gguf_row.addWidget(self.gguf_button)
        self.status = BusyLine(on_cancel=self._cancel_export)
        self.result_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextSelectableByMouse)
        self.show_button = QPushButton("Show in folder", visible=False)
        self.show_button.clicked.connect(self._show_in_folder)
        self.lmstudio_button = QPushButton("Add to LM Studio", visible=False)
        self.lmstudio_button.setToolTip("Put the GGUF where LM Studio lists it (under 'tuneforge'): a hard link on the "
                                        "same drive, so a model of many GB takes no more room.")
        self.lmstudio_button.clicked.connect(self._add_to_lmstudio)
        self.ollama_name = QLineEdit(visible=False, placeholderText="name in Ollama")
        self.ollama_name.setToolTip("What to call the model in Ollama: MODEL, MODEL:TAG or NAMESPACE/MODEL:TAG.")
        self.ollama_button = QPushButton("Add to Ollama", visible=False)
        self.ollama_button.setToolTip("Hand the GGUF and its Modelfile to Ollama (`ollama create`), so `ollama run "
                                      "NAME` answers with the fine-tune; Ollama must be running.")
        self.ollama_button.clicked.connect(self._add_to_ollama)
        result_row = QHBoxLayout()  # what was saved, then what to do with it: another app, or the folder
        result_row.addStretch(1)
        for w in (self.ollama_name, self.ollama_button, self.lmstudio_button, self.show_button):
            result_row.addWidget(w)
        export_box = QGroupBox("Export")
        box = QVBoxLayout(export_box)
        box.addLayout(folder_row)
        box.addLayout(buttons)
        box.addLayout(gguf_row)
        box.addWidget(self.status)
        box.addWidget(self.error)
        box.addWidget(self.result_label)
        box.addLayout(result_row)

        self.prompt_edit = PromptEdit(DEFAULT_PROMPT, placeholderText="Ask both models something")
        self.ask_button = QPushButton("Ask")
        self.prompt_edit.returnPressed.connect(self.ask)
        self.ask_button.clicked.connect(self.ask)
        self.new_button = QPushButton("New conversation")
        self.new_button.setToolTip("Both models forget the questions so far; the next one is the first.")
        self.new_button.clicked.connect(self.new_conversation)
        self.temperature = QDoubleSpinBox(minimum=0, maximum=2, singleStep=0.1, decimals=1)
        self.temperature.setSpecialValueText("0 (likeliest)")
        self.temperature.setToolTip("0: each model gives its most likely answer, the same every time. Above 0 the "
                                    "answers are sampled among the likeliest words, more varied the higher "
                                    "(0.7 is a usual choice), as chat apps and Ollama do.")
        self.longest = longest_box()
        ask_row = QHBoxLayout()
        ask_row.addWidget(self.prompt_edit, 1)
        ask_row.addWidget(QLabel("&Temperature:", buddy=self.temperature))
        ask_row.addWidget(self.temperature)
        ask_row.addWidget(QLabel("&Longest:", buddy=self.longest))
        ask_row.addWidget(self.longest)
        ask_row.addWidget(self.ask_button)
        ask_row.addWidget(self.new_button)
        # Each model has its own conversation: a follow-up question goes to each after its own answers.
        self.conversations = {"ask": Conversation(), "ask-base": Conversation()}
        self._talked_with = None  # the run the conversations are with
        self.base_pane = AnswerPane("Base model", "The model before training answers here.")
        self.tuned_pane = AnswerPane("Tuned model", "The model with what the run learned answers here.")
        tuned = self.tuned_pane  # its parts keep the names of the single pane it replaced
        self.answer, self.ask_status, self.ask_error = tuned.text, tuned.status, tuned.error
        for name, pane in (("ask", self.tuned_pane), ("ask-base", self.base_pane)):
            pane.result_given.connect(functools.partial(self._result_given, name, pane))
        panes = QHBoxLayout()
        panes.addWidget(self.base_pane, 1)
        panes.addWidget(self.tuned_pane, 1)
        try_box = QGroupBox("Try it: the base and the tuned model, side by side; each remembers the conversation")
        self.tools_note = QLabel(wordWrap=True)  # shown when the run's data offered tools
        self.tools_note.hide()
        box = QVBoxLayout(try_box)
        box.addWidget(self.tools_note)
        box.addLayout(ask_row)
        box.addLayout(panes)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.weights)
        layout.addWidget(export_box)
        layout.addWidget(try_box)
        self.evaluate_box = EvaluateBox(weights=self.weights.value)
        layout.addWidget(self.evaluate_box)
        layout.addStretch(1)
        self.exported: Path | None = None

    def initializePage(self) -> None:
        outcome = self.session.outcome
        self.summary.setText(f"Run <b>{self.session.run_id}</b>: {outcome.text if outcome else 'no result'}.")
        self.folder_edit.setText(str(user_settings.export_folder()))
        self.error.clear()
        self.result_label.clear()
        self.result_label.hide()
        self.show_button.hide()
        self._hide_other_apps()
        if not self._asking():  # (a question in flight keeps the weights it was asked of)
            self.weights.show_run(self.session.run_id)
        self.evaluate_box.show_run(self.session.run_id)
        if self.session.run_id != self._talked_with and not self._asking():  # another run: a new conversation
            self.new_conversation()
            self._talked_with = self.session.run_id
            try:
                self._offer_tools(ops.run_tools(self.session.run_id))
            except KnownError:  # a run the history does not hold (any more): nothing to offer
                self._offer_tools(None)

    def _offer_tools(self, tools: list[dict] | None) -> None:
        """Both models are asked with the tools the run's data offered, as training wrote them; say which."""
        for conversation in self.conversations.values():
            conversation.tools = tools
        names = ", ".join(t["function"]["name"] for t in tools or ())
        self.tools_note.setText(f"Both models may call the tools the run's data offered ({names}); a call is shown, "
                                "not run: give what the tool would return, and the model goes on from it."
                                if tools else "")
        self.tools_note.setVisible(bool(tools))

    def export(self, fmt: str, quant: str | None = None) -> None:
        weights = self.weights.value()
        which = "" if weights == "auto" else f"-{weights}"  # both weights kept: the folder says which
        name = f"{self.session.run_id}-{fmt}" + (f"-{quant}" if quant else "") + which
        out = free_folder(Path(self.folder_edit.text()).expanduser(), name)
        self.error.clear()
        self.result_label.clear()
        self.result_label.hide()
        self.show_button.hide()
        self._hide_other_apps()
        self._set_buttons(False)
        self.status.start(f"Exporting to {out}…")
        self.run_task("export", ops.export_run, self.session.run_id, fmt, str(out), quant, weights=weights,
                      on_done=self._exported, on_error=self._failed, on_progress=self.status.report)

    def _exported(self, path) -> None:
        self.exported = Path(path)
        self.exported_to.emit(str(path))
        self.status.stop()
        self._set_buttons(True)
        notes = [core_export.said(self.exported), *gguf_notes(self.exported), model_card.said(self.exported)]
        self.result_label.setText(f"✔ Saved to {path}" + "".join(f"\n{line}" for line in notes if line))
        self.result_label.show()
        self.show_button.show()
        gguf = self._gguf() is not None
        self.lmstudio_button.setVisible(gguf and any(root.parent.is_dir() for root in other_apps.lmstudio_roots()))
        offered = gguf and ollama_create.program() is not None
        if offered:
            run = ops.get_run(self.session.run_id)
            self.ollama_name.setText(ollama_name(run.get("name") or run["id"], self._export_report()["quant"]))
        for w in (self.ollama_name, self.ollama_button):
            w.setVisible(offered)

    def _hide_other_apps(self) -> None:
        for w in (self.lmstudio_button, self.ollama_name, self.ollama_button):
            w.hide()

    def _export_report(self) -> dict:
        """export.json of the GGUF export just made ({} for other exports)."""
        try:
            return json.loads((self.exported / "export.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _gguf(self) -> Path | None:
        """The model file of the GGUF export just made (None for other exports)."""
        file = self._export_report().get("file")
        return self.exported / file if isinstance(file, str) else None

    def _add_to_lmstudio(self) -> None:
        try:
            placed = other_apps.add_to_lmstudio(self._gguf(), other_apps.lmstudio_folder(self.exported.name))
        except KnownError as e:
            self.error.show_error(e)
            return
        self.result_label.setText(f"{self.result_label.text()}\nLM Studio lists it now: {placed}")
        self.lmstudio_button.hide()

    def _add_to_ollama(self) -> None:
        """In the background: Ollama copies the file in, which takes a while for a model of many GB."""
        try:
            to = ollama_create.target(self.ollama_name.text())
        except KnownError as e:
            self.error.show_error(e)
            return
        self.error.clear()
        self.ollama_button.setEnabled(False)
        self.status.start(f"Adding to Ollama as {to.name}…")
        self.run_task("ollama", ollama_create.create, self.exported, to, on_done=self._in_ollama,
                      on_error=self._not_in_ollama, on_progress=self.status.report)

    def _in_ollama(self, how: str) -> None:
        self.status.stop()
        self.result_label.setText(f"{self.result_label.text()}\nOllama has it now: {how}")
        self.ollama_button.setEnabled(True)
        for w in (self.ollama_name, self.ollama_button):
            w.hide()

    def _not_in_ollama(self, error: BaseException) -> None:
        self.status.stop()
        self.ollama_button.setEnabled(True)
        self.error.show_error(error)

    def _failed(self, error: BaseException) -> None:
        self.status.stop()
        self._set_buttons(True)
        if isinstance(error, NotBuiltYet):
            self.error.show_message(str(error), kind="info")
        else:
            self.error.show_error(error)

    def _cancel_export(self) -> None:
        """The export stops at its next progress report; nothing half-written is left where it was going."""
        self.cancel_task("export")
        self._set_buttons(True)

    def _set_buttons(self, enabled: bool) -> None:
        for b in (self.adapter_button, self.merged_button, self.gguf_button, self.quant_combo):
            b.setEnabled(enabled)

    def ask(self) -> None:
        """Both models at once, each in its own background task, pane, busy line, error and conversation."""
        prompt = self.prompt_edit.text().strip()
        if not prompt or self._asking():
            return
        self._set_asking(False)
        self.prompt_edit.clear()  # ready for the next question of the conversation
        for name, pane in (("ask", self.tuned_pane), ("ask-base", self.base_pane)):
            self._ask_one(name, pane, prompt)

    def _ask_one(self, name: str, pane: AnswerPane, prompt: str | None) -> None:
        """One model answers `prompt` (None: goes on after the tool results given to it) in its background task."""
        heat, longest = self.temperature.value(), self.longest.value() or None
        fn = functools.partial(ask, weights=self.weights.value(), temperature=heat, longest=longest) \
            if name == "ask" else functools.partial(ask_base, temperature=heat, longest=longest)
        conversation = self.conversations[name]
        pane.start("Thinking…", keep=True)
        self.run_task(name, fn, self.session.run_id, prompt, conversation, on_progress=pane.status.report,
                      on_done=lambda text: self._done(lambda t: self._answered(pane, conversation, prompt, t), text),
                      on_error=lambda error: self._done(pane.failed, error))

    def _answered(self, pane: AnswerPane, conversation: Conversation, prompt: str | None, text: str) -> None:
        pane.added(prompt, text)
        pane.offer_result(next(iter(conversation.pending()), None))  # a call: its result is asked for

    def _result_given(self, name: str, pane: AnswerPane, result: str) -> None:
        """The result of the model's next call; once each call has one, the model goes on from them."""
        conversation = self.conversations[name]
        if not conversation.pending() or self.busy(name):
            return
        conversation.give(result)
        if conversation.answered():
            self._set_asking(False)
            self._ask_one(name, pane, None)
        else:
            pane.offer_result(conversation.pending()[0])

    def new_conversation(self) -> None:
        if self._asking():
            return
        for conversation in self.conversations.values():
            conversation.clear()
        for pane in (self.base_pane, self.tuned_pane):
            pane.clear()

    def _asking(self) -> bool:
        return self.busy("ask") or self.busy("ask-base")

    def _set_asking(self, enabled: bool) -> None:
        for widget in (self.ask_button, self.new_button, self.weights):  # the weights stay while one answers
            widget.setEnabled(enabled)

    def _done(self, show, value) -> None:
        show(value)
        self._set_asking(not self._asking())

    def shutdown(self) -> None:
        """Closing: the models the Try-it box kept loaded go too (app/answerers.py)."""
        super().shutdown()
        self.evaluate_box.shutdown()
        answerers.release()

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Where to save exports", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _show_in_folder(self) -> None:
        if self.exported is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.exported)))
