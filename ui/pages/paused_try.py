"""The train page's "try it now" box, shown while a run is paused: the model as it is at this step
answers, inside the trainer (it is already loaded there; nothing is loaded twice), in a conversation that
lasts for the pause (each question is sent with the turns before it). With the tools the run's data offered,
a call it makes asks for its result, and the model goes on from it, as in the export page's Try it."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from core.conversation import Conversation
from ui.pages.answer_pane import AnswerPane
from ui.pages.base import longest_box


class PausedTry(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.job = None
        self.waiting: str | None = None  # id of the prompt asked, until its answer arrives
        self.prompt_edit = QLineEdit(placeholderText="Ask the model as it is now, e.g. a question from your data")
        self.ask_button = QPushButton("Ask")
        self.ask_button.setAutoDefault(False)
        self.new_button = QPushButton("New conversation")
        self.new_button.setAutoDefault(False)
        self.new_button.clicked.connect(self.new_conversation)
        self.longest = longest_box()  # passed with each ask (auto: the trainer's default for the run)
        self.pane = AnswerPane("Answers at this step", "The answer appears here; Continue resumes training.")
        self.prompt_edit.returnPressed.connect(self.ask)
        self.ask_button.clicked.connect(self.ask)
        self.pane.result_given.connect(self._result_given)
        self.conversation = Conversation()  # at this pause; the trainer answers, we keep the turns
        self.asked: str | None = ""  # the prompt waiting for its answer (None: going on after tool results)
        row = QHBoxLayout()
        row.addWidget(self.prompt_edit, 1)
        row.addWidget(QLabel("&Longest:", buddy=self.longest))
        row.addWidget(self.longest)
        row.addWidget(self.ask_button)
        row.addWidget(self.new_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.pane)

    def open_for(self, job, tools: list[dict] | None = None) -> None:
        """A new pause: a new conversation, with the model as it is now (and the `tools` it is offered)."""
        self.job, self.waiting = job, None
        self.new_conversation()
        self.conversation.tools = tools or None
        self._set_asking(True)
        self.show()
        self.prompt_edit.setFocus()

    def ask(self) -> None:
        prompt = self.prompt_edit.text().strip()
        if prompt and self._send(prompt):
            self.prompt_edit.clear()

    def _send(self, prompt: str | None) -> bool:
        """Ask the trainer (`prompt` None: to go on after the tool results given); whether it was asked."""
        if self.job is None or self.waiting:
            return False
        if prompt is not None and self.conversation.pending():  # a question instead of the results
            self.conversation.forget_calls()
        try:
            self.waiting = self.job.ask(prompt, self.conversation.turns, self.longest.value() or None)
        except OSError as e:  # the run folder cannot be written: say so in the pane
            self.pane.failed(e)
            return False
        self.asked = prompt
        self._set_asking(False)
        self.pane.start("The paused model is answering…", keep=True)
        return True

    def _result_given(self, result: str) -> None:
        """The result of the model's next call; once each call has one, the paused model goes on from them."""
        if self.waiting or not self.conversation.pending():
            return
        self.conversation.give(result)
        if not self.conversation.answered():
            self.pane.offer_result(self.conversation.pending()[0])
        elif not self._send(None):
            self.pane.offer_result(None)

    def new_conversation(self) -> None:
        if self.waiting:
            return
        self.conversation.clear()
        self.pane.clear()

    def _set_asking(self, enabled: bool) -> None:
        self.ask_button.setEnabled(enabled)
        self.new_button.setEnabled(enabled)

    def answered(self, event: dict) -> None:
        if event.get("id") != self.waiting:
            return  # an answer to a prompt asked from another window
        self.waiting = None
        self._set_asking(True)
        if event.get("error"):
            self.pane.status.stop()
            self.pane.error.show_message(f"The model could not answer: {event['error']}.")
        else:
            self.pane.added(self.asked, event.get("text", ""))
            self.conversation.add(self.asked, event.get("text", ""))
            self.pane.offer_result(next(iter(self.conversation.pending()), None))
