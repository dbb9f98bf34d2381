"""Prompt/completion pairs under their common names (question/answer, prompt/response, ...)."""

from core.data.formats.turns import check_turns, field_text, with_system

NAME = "prompt_completion"
DESCRIPTION = "prompt/completion pairs"
FIELDS = ("prompt", "completion")
# First match wins; alpaca's instruction/input/output is its own schema, detected before this one.
PAIRS = [("prompt", "completion"), ("prompt", "response"), ("question", "answer"), ("input", "output"),
         ("instruction", "response"), ("query", "response")]


def _pair(row: dict):
    for p, c in PAIRS:
        if p in row and c in row:
            return p, c
    return None


def detect(row: dict) -> bool:
    return _pair(row) is not None


def convert(row: dict) -> dict:
    p, c = _pair(row) or FIELDS
    turns = with_system(row, [("user", field_text(row, p)), ("assistant", field_text(row, c))])
    return {"messages": check_turns(turns)}
