"""Prompt/completion pairs, with the common aliases (question/answer, input/output, prompt/response)."""

from core.data.formats.messages import check_turns

NAME = "prompt_completion"
DESCRIPTION = "prompt/completion pairs"
PAIRS = [("prompt", "completion"), ("prompt", "response"), ("question", "answer"), ("input", "output")]


def _pair(row: dict):
    for p, c in PAIRS:
        if p in row and c in row:
            return p, c
    return None


def detect(row: dict) -> bool:
    return _pair(row) is not None


def convert(row: dict) -> dict:
    p, c = _pair(row)
    return {"messages": check_turns([("user", row[p]), ("assistant", row[c])])}
