"""Alpaca: {"instruction": "...", "input": "... (optional)", "output": "..."}, with an optional system."""

from core.data.formats.turns import check_turns, field_text, with_system

NAME = "alpaca"
DESCRIPTION = "Alpaca instruction/input/output"
FIELDS = ("instruction", "input", "output")


def detect(row: dict) -> bool:
    return "instruction" in row and "output" in row


def convert(row: dict) -> dict:
    instruction, extra = field_text(row, "instruction"), row.get("input")
    if extra is not None and not isinstance(extra, str):
        raise ValueError("'input' is not text")
    prompt = f"{instruction}\n\n{extra}" if extra and extra.strip() else instruction
    turns = with_system(row, [("user", prompt), ("assistant", field_text(row, "output"))])
    return {"messages": check_turns(turns)}
