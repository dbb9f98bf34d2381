"""A conversation with a model: each question is asked with the turns before it, as far as the context holds them.

One question at a time shows what a tuned model says; a conversation shows whether it keeps a persona, a
format or a fact from one turn to the next, which is what many fine-tunes are for. The turns are kept as
plain messages and rendered through the model's own chat template at every question, exactly as the
training data was. When the whole no longer leaves room for an answer in the model's context, the oldest
exchange (a question and all that answered it) is left out, and `forgotten` counts its messages so that the
caller can say so.

With tools offered, an answer that calls one is kept as the call (tool_calls.in_answer finds it), and the
call is shown, not run: the person gives each call's result (`give`), as the tool would have, and the model
goes on from there (`go_on`), usually to answer with it, which is what a model tuned on tool use learned to
do. A person who has no result to give leaves the question and its calls out (`forget_calls`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import inference, repeat_stop
from core.data.formats import tool_calls


@dataclass
class Conversation:
    system: str | None = None  # the system message, sent first with every question
    turns: list[dict] = field(default_factory=list)  # user, assistant and tool messages so far, oldest first
    forgotten: int = 0  # turns left out so far because the context could not hold them
    tools: list[dict] | None = None  # functions the model may call (formats/tool_calls.py's form)

    def ask(self, model, tokenizer, prompt: str | None, max_new_tokens: int = 128, temperature: float = 0.0) -> str:
        """The model's answer to `prompt` after the turns so far (greedy, or sampled at `temperature`); both become
        turns of the conversation. `prompt` None: the answer after the results given to its calls (go_on)."""
        if prompt is None and not self.answered():
            raise ValueError("there is no tool result to go on from; ask a question")
        if prompt is not None and self.pending():  # a new question instead of the results: the calls go unanswered
            self.forget_calls()
        self._make_room(model, tokenizer, prompt, max_new_tokens)
        answer = inference.reply(model, tokenizer, prompt, self.system, max_new_tokens, temperature, self.turns,
                                 self.tools)
        self.add(prompt, answer)
        return answer

    def go_on(self, model, tokenizer, max_new_tokens: int = 128, temperature: float = 0.0) -> str:
        """The model's next answer, once every call of its last one has a result."""
        return self.ask(model, tokenizer, None, max_new_tokens, temperature)

    def add(self, prompt: str | None, answer: str) -> None:
        """Record a question (None after tool results) and the answer given to it (where another process answered:
        a paused trainer); an answer that calls an offered tool is kept as its calls."""
        said = answer.removesuffix(repeat_stop.NOTE).rstrip()  # our note is not something the model said
        words, calls = tool_calls.in_answer(said, self.tools) if self.tools else (said, [])
        turn = {"role": "assistant", "content": words}
        if calls:
            made = sum(len(t.get("tool_calls", ())) for t in self.turns)
            # An id for each call (Mistral's template pairs results by it: nine letters and digits).
            turn["tool_calls"] = [{**c, "id": f"call{made + i:05d}"} for i, c in enumerate(calls, 1)]
        self.turns += ([{"role": "user", "content": prompt}] if prompt is not None else []) + [turn]

    def pending(self) -> list[dict]:
        """The calls of the model's last answer that have no result yet."""
        last = max((i for i, t in enumerate(self.turns) if t["role"] == "assistant"), default=None)
        if last is None:
            return []
        return self.turns[last].get("tool_calls", [])[len(self.turns) - 1 - last:]

    def answered(self) -> bool:
        """Whether the last answer called tools and each call has its result: the model can go on."""
        return bool(self.turns) and self.turns[-1]["role"] == "tool" and not self.pending()

    def give(self, result: str) -> dict:
        """The result of the next call waiting for one (what the tool would have returned); returns that call."""
        waiting = self.pending()
        if not waiting:
            raise ValueError("no tool call is waiting for a result")
        call = waiting[0]
        self.turns.append({"role": "tool", "content": result, "name": call["function"]["name"],
                           "tool_call_id": call["id"]})
        return call

    def forget_calls(self) -> None:
        """Leave out the last question and all that answered it, where its calls will get no result (a call with no
        result after it is no conversation a template renders, nor one the model learned from)."""
        start = max((i for i, t in enumerate(self.turns) if t["role"] == "user"), default=0)
        del self.turns[start:]

    def clear(self) -> None:
        """Start over: the next question is the first."""
        self.turns.clear()
        self.forgotten = 0

    def _make_room(self, model, tokenizer, prompt: str | None, max_new_tokens: int) -> None:
        context = getattr(model.config, "max_position_embeddings", None)
        keep = 0 if prompt is not None else 1  # going on after results: their exchange stays, whatever its length
        while (context and sum(t["role"] == "user" for t in self.turns) > keep
               and self._tokens(tokenizer, prompt) + max_new_tokens > context):
            end = next((i for i, t in enumerate(self.turns) if i and t["role"] == "user"), len(self.turns))
            del self.turns[:end]  # the oldest question and all that answered it
            self.forgotten += end

    def _tokens(self, tokenizer, prompt: str | None) -> int:
        text = inference.prompt_text(tokenizer, prompt, self.system, self.turns, self.tools)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
