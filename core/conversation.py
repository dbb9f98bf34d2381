"""A conversation with a model: each question is asked with the turns before it, as far as the context holds them.

One question at a time shows what a tuned model says; a conversation shows whether it keeps a persona, a
format or a fact from one turn to the next, which is what many fine-tunes are for. The turns are kept as
plain messages and rendered through the model's own chat template at every question, exactly as the
training data was. When the whole no longer leaves room for an answer in the model's context, the oldest
question and its answer are left out, and `forgotten` counts them so that the caller can say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core import inference, repeat_stop


@dataclass
class Conversation:
    system: str | None = None  # the system message, sent first with every question
    turns: list[dict] = field(default_factory=list)  # user and assistant messages so far, oldest first
    forgotten: int = 0  # turns left out so far because the context could not hold them
    tools: list[dict] | None = None  # functions the model may call (formats/tool_calls.py's form)

    def ask(self, model, tokenizer, prompt: str, max_new_tokens: int = 128, temperature: float = 0.0) -> str:
        """The model's answer to `prompt` after the turns so far (greedy, or sampled at `temperature`); both become
        turns of the conversation."""
        self._make_room(model, tokenizer, prompt, max_new_tokens)
        answer = inference.reply(model, tokenizer, prompt, self.system, max_new_tokens, temperature, self.turns,
                                 self.tools)
        self.add(prompt, answer)
        return answer

    def add(self, prompt: str, answer: str) -> None:
        """Record a question and the answer given to it (where another process answered: a paused trainer)."""
        said = answer.removesuffix(repeat_stop.NOTE).rstrip()  # our note is not something the model said
        self.turns += [{"role": "user", "content": prompt}, {"role": "assistant", "content": said}]

    def clear(self) -> None:
        """Start over: the next question is the first."""
        self.turns.clear()
        self.forgotten = 0

    def _make_room(self, model, tokenizer, prompt: str, max_new_tokens: int) -> None:
        context = getattr(model.config, "max_position_embeddings", None)
        while self.turns and context and self._tokens(tokenizer, prompt) + max_new_tokens > context:
            del self.turns[:2]  # a question and its answer
            self.forgotten += 2

    def _tokens(self, tokenizer, prompt: str) -> int:
        text = inference.prompt_text(tokenizer, prompt, self.system, self.turns, self.tools)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])
