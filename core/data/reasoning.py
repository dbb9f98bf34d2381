"""How an answer's reasoning (its thinking before it answers) becomes text for one model.

Distilled reasoning data keeps the thinking beside the answer: `reasoning_content` (DeepSeek's API, vLLM,
Qwen 3's template), `reasoning` (OpenRouter, Ollama's API) or `thinking` (gpt-oss's template); the data
reader keeps it as `reasoning_content` (formats/turns.py). It trains as part of the answer: the model learns
to think, then to answer.

A template that writes reasoning itself gets it as `reasoning_content` (found by rendering a probe answer whose
thinking must come out; transformers also passes it as `thinking`, the name gpt-oss's template reads), so the
tuned model thinks as its runtime expects (Qwen 3's `<think>` block, gpt-oss's analysis channel). Such
templates often write only the last answer's thinking (Qwen 3 leaves out the thinking of answers before the last
question, as at inference): the probe finds that too, and the earlier answers' thinking is left out of the row,
as the template would leave it out of the whole (the trained span of each answer must be the text the template
writes for it in the whole conversation).

A template that writes none of it (SmolLM2's prints role and content: the thinking would vanish) gets it as
text, in the convention DeepSeek R1 made common and Qwen 3 writes: `<think>\\n...\\n</think>\\n\\n` before the
answer. A model tuned so thinks in that form; Try it and `chat` show it as it is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.data.chat_spans import per_template, put_prelude, render_chat

FIELD = "reasoning_content"  # where the data reader keeps an answer's reasoning, and templates read it
READ_FROM = ("reasoning_content", "reasoning", "thinking")  # the fields datasets hold it in
_THOUGHT, _SAID = "tfprobe_thought", "tfprobe_said"


def carried(messages: list[dict] | None) -> bool:
    """Whether a conversation has an answer with reasoning."""
    return any(FIELD in m for m in messages or ())


def as_text(reasoning: str, content: str) -> str:
    """An answer with its reasoning in front, as text (the <think> convention); a call's turn may have no words."""
    return f"<think>\n{reasoning.strip()}\n</think>" + (f"\n\n{content}" if content else "")


@dataclass(frozen=True)
class ThinkText:
    """Where a template writes an answer's thinking, as <think>...</think>: `every` answer's, or only those after the
    last question (Qwen 3's); in front of the answer's words, "\n\n" between them only where there are words and
    its calls after it (`whole` False: as_text's), or in front of the whole turn, calls included, "\n\n" after it
    always (Qwen 3's); where `empty`, also an empty block for an answer it shows without thinking (Qwen 3.5's).
    `off`: what it writes after the answer's opening when asked not to think (Qwen 3's enable_thinking=False: an
    empty thinking block), "" where it has no such switch."""
    every: bool = True
    whole: bool = False
    off: str = ""
    empty: bool = False

    def wrap(self, thinking: str | None, words: str, calls: list[str], before_calls: str = "\n") -> str:
        """An answer's text: its words and calls (each already text, `before_calls` between the words and them),
        with its thinking where there is any (None: where this answer's is not shown)."""
        rest = "\n".join(calls)
        rest = words + (before_calls if words and calls else "") + rest
        if thinking is None or not (thinking or self.empty):
            return rest
        head = f"<think>\n{thinking}\n</think>"
        if self.whole:
            return f"{head}\n\n{rest}"
        between = (before_calls if words else "\n") if calls else ""
        return head + (f"\n\n{words}" if words else "") + between + "\n".join(calls)


AS_TEXT = ThinkText()  # as_text's: every answer's thinking in front of its words


@per_template
def native(tokenizer) -> tuple[bool, bool]:
    """(whether the tokenizer's chat template writes an answer's reasoning; whether it writes that of every answer,
    not only of those after the last question)."""
    last = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _SAID, FIELD: _THOUGHT}]
    earlier = [*last, {"role": "user", "content": "Again?"}, {"role": "assistant", "content": "Yes."}]
    try:
        text = render_chat(tokenizer, last)
        if _THOUGHT in text and _SAID in text:
            return True, _THOUGHT in render_chat(tokenizer, earlier)
    except Exception:  # a template that refuses the probe does not write reasoning
        pass
    return False, False


def written(tokenizer, messages: list[dict]) -> list[dict]:
    """The conversation with each answer's reasoning where this tokenizer's template reads it, or in the answer's
    text where it reads none; as it is when no answer has reasoning."""
    if not carried(messages):
        return messages
    writes, every = native(tokenizer)
    if writes and every:
        return messages
    last_question = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    out = []
    for i, m in enumerate(messages):
        if FIELD in m and not (writes and i > last_question):
            m = dict(m)
            reasoning = m.pop(FIELD)
            if not writes:
                m["content"] = as_text(reasoning, m["content"])
        out.append(m)
    return out


# Jinja put in front of a template with no place for reasoning, so that the exported model's own template writes an
# answer's reasoning as training wrote it (as_text, in front of the answer's words): transformers, vLLM and
# llama.cpp's --jinja then give a model its earlier answers' thinking as it learned them. It rewrites `messages` (the
# reasoning of `reasoning_content`, or `thinking`, into the content) and leaves the rest to the template; a call's
# turn keeps its calls, for what writes them after it.
_PRELUDE = (
    "{%- set tr = namespace(out=[], text='') -%}"
    "{%- for m in messages -%}"
    "{%- set tr_r = m.reasoning_content if m.reasoning_content is defined and m.reasoning_content is string else "
    "(m.thinking if m.thinking is defined and m.thinking is string else '') -%}"
    "{%- if m.role == 'assistant' and tr_r | trim -%}"
    "{%- set tr.text = '<think>\\n' ~ (tr_r | trim) ~ '\\n</think>'"
    " ~ (('\\n\\n' ~ m.content) if m.content else '') -%}"
    "{%- if m.tool_calls is defined and m.tool_calls -%}"
    "{%- set tr.out = tr.out + [{'role': 'assistant', 'content': tr.text, 'tool_calls': m.tool_calls}] -%}"
    "{%- else -%}{%- set tr.out = tr.out + [{'role': 'assistant', 'content': tr.text}] -%}{%- endif -%}"
    "{%- else -%}{%- set tr.out = tr.out + [m] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = tr.out %}")
_PROBES = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello.", FIELD: "A greeting."},
            {"role": "user", "content": "Again?"}],
           [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again?"}]]


def for_export(tokenizer, trained_thinking: bool) -> str | None:
    """Where a run trained on reasoning written as text (its template has no place for it), give the tokenizer the
    template that writes it so (_PRELUDE in front), for the exported model; the sentence for the export's report,
    None where the template stays as it was. Taken only where it renders conversations without reasoning exactly
    as the template did and one with reasoning exactly as training did."""
    template = getattr(tokenizer, "chat_template", None)
    if not trained_thinking or not isinstance(template, str) or native(tokenizer)[0]:
        return None
    plain = [[{k: v for k, v in m.items() if k != FIELD} for m in chat] for chat in _PROBES]
    if not put_prelude(tokenizer, _PRELUDE, plain, lambda mine, original: all(
            render_chat(mine, chat, True) == render_chat(original, written(original, chat), True) for chat in _PROBES)):
        return ("The chat template is left as it was: with reasoning written in front of it, it would no longer render "
                "other conversations exactly as before; give earlier answers' thinking as <think>...</think> text in "
                "front of their words.")
    return ("The chat template now also writes an answer's reasoning (reasoning_content) as the run trained on it, "
            "<think>...</think> in front of the answer's words, so transformers, vLLM and llama.cpp's --jinja give "
            "the model its earlier thinking as it learned it.")


def note(tokenizer, rows: int) -> str:
    """One sentence for a dataset whose answers carry reasoning: how many, and how this model's text holds it."""
    what = f"{rows:,} conversation{'s have' if rows != 1 else ' has'} answers with reasoning"
    writes, every = native(tokenizer)
    if writes:
        kept = "" if every else " (only for the answers after a conversation's last question: earlier ones are " \
                                "left out, as the template leaves them out at inference)"
        return f"{what}: the model's chat template writes it{kept}, and it trains with the answer"
    return f"{what}: the model's chat template has no place for it, so it is written before each answer as " \
           "<think>...</think>, trains with the answer, and the tuned model will think that way"
