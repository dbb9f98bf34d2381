"""Marks in a model's answers, without changing them: its thinking (<think>...</think>) in the palette's muted
colour and italic, its tool calls and the results given (<tool_call>, <tool_response> blocks: core/answer_parts.py)
in the link colour, and the person's turns ("You: ...") in bold. A QSyntaxHighlighter over the answer pane's
document, a line at a time (a part may run over lines: the block state says which one is open): the text stays as
the model wrote it (copying copies that), and the colours are read from the palette each time a block is drawn, so
they follow the theme."""

from __future__ import annotations

from PySide6.QtGui import QFont, QPalette, QSyntaxHighlighter, QTextCharFormat

from core.answer_parts import SPANS, scan

YOU = "You: "  # how a conversation shows the person's turn (answer_pane.AnswerPane.added)


class AnswerMarks(QSyntaxHighlighter):
    def __init__(self, document, palette_of):
        super().__init__(document)
        self.palette_of = palette_of  # () -> QPalette: the pane's (its own, updated before its children's)

    def formats(self) -> dict[str, QTextCharFormat]:
        pal: QPalette = self.palette_of()
        thinking, tool, you = QTextCharFormat(), QTextCharFormat(), QTextCharFormat()
        thinking.setForeground(pal.color(QPalette.PlaceholderText))
        thinking.setFontItalic(True)
        tool.setForeground(pal.color(QPalette.Link))
        you.setFontWeight(QFont.Bold)
        return {"thinking": thinking, "tool": tool, "you": you}

    def highlightBlock(self, text: str) -> None:
        marks = self.formats()
        state = self.previousBlockState()  # the part a line starts inside (an index into SPANS), or -1
        if state < 0 and text.startswith(YOU):
            self.setFormat(0, len(YOU), marks["you"])
        found, state = scan(text, state)
        for start, end, i in found:
            self.setFormat(start, end - start, marks[SPANS[i][2]])
        self.setCurrentBlockState(state)
