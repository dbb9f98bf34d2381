"""An answer's thinking, tool calls and results, and the person's turns are marked in the answer pane (colour,
italic, bold) while the text stays exactly as the model wrote it, and the marks follow the theme."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QFont, QPalette, QTextFormat

from ui import theme
from ui.pages.answer_pane import AnswerPane

ANSWER = ("<think>\n39 plus 18 is 57.\nSay it as a pirate.\n</think>\n\nFirst a sum.\n<tool_call>\n"
          '{"name": "add", "arguments": {"a": 39, "b": 18}}\n</tool_call>')


def marks_of(pane: AnswerPane) -> dict[str, tuple]:
    """Each line of the pane: its marks, [(start, length, italic, colour or None, bold)]."""
    out, block = {}, pane.text.document().firstBlock()
    while block.isValid():
        out[block.text()] = [(r.start, r.length, r.format.fontItalic(), r.format.foreground().color().name()
                              if r.format.hasProperty(QTextFormat.ForegroundBrush) else None,
                              r.format.fontWeight() == QFont.Bold) for r in block.layout().formats()]
        block = block.next()
    return out


@pytest.fixture
def themed():
    yield theme.apply
    theme.apply("system")  # the next tests see the palette they started with


@pytest.mark.parametrize("name", ["light", "dark"])
def test_thinking_calls_and_turns_are_marked_and_the_text_is_kept(qtbot, themed, name):
    themed(name)
    pane = AnswerPane("Tuned", "")
    qtbot.addWidget(pane)
    pane.added("What is 39 plus 18?", ANSWER)
    pane.added(None, "<tool_response>\n57\n</tool_response>\nArr, 57!")
    assert pane.text.toPlainText() == ("You: What is 39 plus 18?\n" + ANSWER
                                       + "\n<tool_response>\n57\n</tool_response>\nArr, 57!")
    pal = pane.text.palette()
    muted, link = pal.color(QPalette.PlaceholderText).name(), pal.color(QPalette.Link).name()
    lines = marks_of(pane)
    assert lines["You: What is 39 plus 18?"] == [(0, 5, False, None, True)]
    for thought in ("<think>", "39 plus 18 is 57.", "Say it as a pirate.", "</think>"):  # across lines
        assert lines[thought] == [(0, len(thought), True, muted, False)]
    assert lines["First a sum."] == [] and lines["Arr, 57!"] == []  # the answer itself is left as it is
    for tool in ("<tool_call>", '{"name": "add", "arguments": {"a": 39, "b": 18}}', "</tool_call>",
                 "<tool_response>", "57", "</tool_response>"):
        assert lines[tool] == [(0, len(tool), False, link, False)]
    assert muted != link and muted == theme.palette(name).color(QPalette.PlaceholderText).name()
    other = "dark" if name == "light" else "light"
    themed(other)  # a switch draws the marks again in the new palette's colours
    switched = theme.palette(other).color(QPalette.PlaceholderText).name()
    qtbot.waitUntil(lambda: marks_of(pane)["</think>"][0][3] == switched != muted, timeout=2000)


def test_a_mark_opened_and_closed_on_one_line_and_an_unclosed_one(qtbot):
    pane = AnswerPane("Tuned", "")
    qtbot.addWidget(pane)
    pane.answered("<think>Hm.</think> Arr! <tool_call>{\"name\": \"add\"")  # cut off by the token limit
    (line, marks), = marks_of(pane).items()
    starts = [(m[0], m[1], m[2]) for m in marks]
    assert starts == [(0, len("<think>Hm.</think>"), True), (len("<think>Hm.</think> Arr! "),
                                                              len(line) - len("<think>Hm.</think> Arr! "), False)]
