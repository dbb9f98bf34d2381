"""Alpaca: {"instruction": "...", "input": "... (optional)", "output": "..."}."""

from core.data.formats.messages import check_turns

NAME = "alpaca"
DESCRIPTION = "Alpaca instruction/input/output"


def detect(row: dict) -> bool:
    return "instruction" in row and "output" in row


def convert(row: dict) -> dict:
    instruction, extra = row.get("instruction"), row.get("input") or ""
    if not isinstance(extra, str):
        raise ValueError("'input' is not text")
    prompt = f"{instruction}\n\n{extra}" if isinstance(instruction, str) and extra.strip() else instruction
    return {"messages": check_turns([("user", prompt), ("assistant", row.get("output"))])}
