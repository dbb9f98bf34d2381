"""The parts of a model's answer that are not its words, as the text holds them: its thinking (<think>...</think>,
core/data/reasoning.py) and its tool calls and the results given (<tool_call>, <tool_response> blocks,
core/data/tool_render.py). The app marks them in its answer panes (ui/pages/answer_marks.py) and the command line
at a terminal (app/terminal_marks.py); the text itself stays as the model wrote it."""

from __future__ import annotations

SPANS = (("<think>", "</think>", "thinking"), ("<tool_call>", "</tool_call>", "tool"),
         ("<tool_response>", "</tool_response>", "tool"))


def parts(text: str) -> list[tuple[int, int, str]]:
    """(start, end, kind) of each part, in order, tags included; one left open (an answer cut off) runs to the end."""
    found, pos = [], 0
    while True:
        opened = [(at, i) for i, (opening, _, _) in enumerate(SPANS) if (at := text.find(opening, pos)) >= 0]
        if not opened:
            return found
        start, i = min(opened)
        end = text.find(SPANS[i][1], start + len(SPANS[i][0]))
        stop = len(text) if end < 0 else end + len(SPANS[i][1])
        found.append((start, stop, SPANS[i][2]))
        pos = stop
