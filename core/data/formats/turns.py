"""Checks shared by the chat-like schemas: known roles, non-empty text, a sensible order of turns.

Tool and function-calling turns are dropped, not refused: the templates we train through have no
common way to render them, and the rest of the conversation is still good data. The count is returned
so the dataset can say how many were dropped.
"""

from __future__ import annotations

import json

ROLES = {"system", "user", "assistant"}
TOOL = "tool"  # what the schemas map tool results and tool calls to, so they can be dropped here


def check_turns(turns: list[tuple]) -> tuple[list[dict], int]:
    """(messages, tool turns dropped) from (role, content) pairs; ValueError saying which turn is wrong.

    Turn numbers in messages count every turn in the row, dropped ones included, so they match the file.
    """
    out, dropped, last = [], 0, None
    for i, (role, content) in enumerate(turns, 1):
        if role == TOOL:
            dropped += 1
            continue
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}; use system, user or assistant")
        text = _text(content, i, role)
        if role == "system" and out:
            raise ValueError(f"message {i} is a system message after the conversation started; put it first")
        if role == "assistant" and last in (None, "system"):
            raise ValueError("the conversation starts with the assistant; put a user message first")
        if role == last:
            raise ValueError(f"message {i} ({role}) follows another {role} message; turns must alternate "
                             "user and assistant")
        out.append({"role": role, "content": text})
        last = role
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError("no assistant message to learn from")
    return out, dropped


def _text(content, i: int, role: str) -> str:
    if isinstance(content, list):  # OpenAI content parts: [{"type": "text", "text": "..."}, ...]
        kinds = {p.get("type") for p in content if isinstance(p, dict)}
        if kinds - {"text"} or not all(isinstance(p, dict) for p in content):
            raise ValueError(f"message {i} ({role}) holds parts other than text; only text can be trained")
        content = "".join(p.get("text") or "" for p in content)
    if content is None:
        raise ValueError(f"message {i} ({role}) has no content")
    if not isinstance(content, str):
        raise ValueError(f"message {i} ({role}) content is not text")
    if not content.strip():
        raise ValueError(f"message {i} ({role}) is empty")
    return content


def list_field(row: dict, key: str) -> list:
    """A list of turns, parsed from JSON text when it came from a CSV cell or a string column."""
    value = row.get(key)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError(f"'{key}' is text but not a JSON list of turns; write it as [{{...}}, ...]") from None
    if not isinstance(value, list):
        raise ValueError(f"'{key}' is not a list of turns")
    return value


def looks_like_list(value) -> bool:
    return isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("["))


def field_text(row: dict, key: str) -> str:
    """A required text field of the pair schemas, with a message naming the field; numbers become text."""
    value = row.get(key)
    if key not in row or value is None:
        raise ValueError(f"'{key}' is missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # a numeric answer ("4") is still an answer
    if not isinstance(value, str):
        raise ValueError(f"'{key}' is not text")
    if not value.strip():
        raise ValueError(f"'{key}' is empty")
    return value


def with_system(row: dict, turns: list[tuple]) -> list[tuple]:
    """Pair schemas may carry a 'system' column; an empty one is no system message."""
    system = row.get("system")
    return [("system", system), *turns] if isinstance(system, str) and system.strip() else turns
