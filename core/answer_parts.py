"""The parts of a model's answer that are not its words, as the text holds them: its thinking (<think>...</think>,
core/data/reasoning.py) and its tool calls and the results given (<tool_call>, <tool_response> blocks,
core/data/tool_render.py). The app marks them in its answer panes (ui/pages/answer_marks.py) and the command line
at a terminal (app/terminal_marks.py); the text itself stays as the model wrote it."""

from __future__ import annotations

SPANS = (("<think>", "</think>", "thinking"), ("<tool_call>", "</tool_call>", "tool"),
         ("<tool_response>", "</tool_response>", "tool"))


def scan(text: str, inside: int = -1) -> tuple[list[tuple[int, int, int]], int]:
    """(start, end, index in SPANS) of each part of `text`, tags included, and the index of the part still open at
    its end (-1: none; an answer cut off leaves one open). `inside`: the part `text` starts inside (a line of an
    answer whose part began on a line above)."""
    found, pos, i = [], 0, inside
    while True:
        start = pos
        if i < 0:
            opened = [(at, n) for n, (opening, _, _) in enumerate(SPANS) if (at := text.find(opening, pos)) >= 0]
            if not opened:
                return found, -1
            start, i = min(opened)
            pos = start + len(SPANS[i][0])
        end = text.find(SPANS[i][1], pos)
        if end < 0:
            found.append((start, len(text), i))
            return found, i
        pos = end + len(SPANS[i][1])
        found.append((start, pos, i))
        i = -1


def parts(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each part, in order, tags included; one left open (an answer cut off) runs to the end."""
    return [(start, end, SPANS[i][2]) for start, end, i in scan(text)[0]]


def completed(prompt: str, answer: str) -> str:
    """The answer as the model wrote it after `prompt`: where the chat template opened a part in the answer's place
    (Qwen 3.5 asks for an answer with "<think>\n", so the model writes its thinking and then "</think>"), that
    opening in front, so the part reads whole; a part left empty (a model tuned to answer without thinking closes it
    at once) is dropped."""
    tail = prompt.rstrip()
    opening = next((o for o, closing, _ in SPANS if tail.endswith(o)), None)
    if opening is None:
        return answer
    whole = opening + "\n" + answer if not answer.startswith(opening) else answer
    closing = next(c for o, c, _ in SPANS if o == opening)
    at = whole.find(closing)
    if at >= 0 and not whole[len(opening):at].strip():
        return whole[at + len(closing):].lstrip()
    return whole
