"""An answer printed at a terminal with its thinking dim and its tool calls and results in cyan (core/answer_parts.py),
the text unchanged; plain where the output is not a terminal (a pipe, a file, the tests) or NO_COLOR is set."""

from __future__ import annotations

import os
import sys

from core.answer_parts import parts

ANSI = {"thinking": "\x1b[2;3m", "tool": "\x1b[36m"}  # dim italic; cyan
RESET = "\x1b[0m"


def for_terminal(text: str, stream=None) -> str:
    stream = stream or sys.stdout
    if not getattr(stream, "isatty", lambda: False)() or os.environ.get("NO_COLOR"):
        return text
    out, at = [], 0
    for start, end, kind in parts(text):
        out += [text[at:start], ANSI[kind], text[start:end], RESET]
        at = end
    return "".join(out) + text[at:]
