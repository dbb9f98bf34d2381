"""An answer at a terminal: its thinking dim, its calls and the results given in cyan, the text unchanged; plain in
a pipe or with NO_COLOR (core/answer_parts.py finds the parts, an unclosed one running to the end)."""

import io

import pytest

from app.terminal_marks import ANSI, RESET, for_terminal
from core.answer_parts import parts

ANSWER = "<think>\nA sum.\n</think>\n\nArr!\n<tool_call>\n{\"name\": \"add\"}\n</tool_call>"


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("text,found", [
    (ANSWER, [(0, ANSWER.index("\n\nArr"), "thinking"), (ANSWER.index("<tool_call>"), len(ANSWER), "tool")]),
    ("Arr, no marks.", []),
    ("<tool_response>\n57\n</tool_response>\n<think>cut off", [(0, 35, "tool"), (36, 50, "thinking")]),
])
def test_parts(text, found):
    assert parts(text) == found
    assert all(text[s:e].startswith("<") for s, e, _ in found)


def test_marked_at_a_terminal_only(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    marked = for_terminal(ANSWER, Terminal())
    assert marked == (f"{ANSI['thinking']}<think>\nA sum.\n</think>{RESET}\n\nArr!\n{ANSI['tool']}<tool_call>\n"
                      f"{{\"name\": \"add\"}}\n</tool_call>{RESET}")
    assert marked.replace(ANSI["thinking"], "").replace(ANSI["tool"], "").replace(RESET, "") == ANSWER
    assert for_terminal(ANSWER, io.StringIO()) == ANSWER  # a pipe or a file
    monkeypatch.setenv("NO_COLOR", "1")
    assert for_terminal(ANSWER, Terminal()) == ANSWER
