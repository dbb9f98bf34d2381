"""Checks shared by the chat-like schemas: known roles, non-empty text, a sensible order of turns.

A turn comes in as (role, content) or (role, content, extra), extra holding an assistant turn's `tool_calls` as
the file wrote them (put in the templates' form here, by tool_calls.py) and its reasoning (reasoning.FIELD), or a
tool result's `name`/`tool_call_id`.
Tool turns are kept in every schema: an assistant turn that calls tools trains like any answer (a pair's or a
rating's last answer may be a call), and the tool's result is read, not trained, as a user turn is; how they are
written into text is the model's template's business, or ours where it has none (core/data/tool_render.py).
"""

from __future__ import annotations

import json

from core.data import reasoning
from core.data.formats import tool_calls

ROLES = {"system", "user", "assistant"}
TOOL = "tool"  # the role of a tool's result
CALL = "tool call"  # an assistant turn that calls tools, in `last` below


def check_turns(turns: list[tuple]) -> list[dict]:
    """The messages of (role, content[, extra]) tuples; ValueError saying which turn is wrong (numbered from 1, as
    the file has them)."""
    out, last = [], None
    for i, (role, content, *more) in enumerate(turns, 1):
        extra = more[0] if more else {}
        calls = extra.get("tool_calls") if role == "assistant" else None
        if role == TOOL:  # after a call, or an answer holding its call as text (Hermes' and glaive's data)
            if last not in (CALL, TOOL, "assistant"):
                raise ValueError(f"message {i} is a tool result with no tool call before it; put the assistant's "
                                 "call first")
            out.append({"role": TOOL, "content": _result(content, i), **extra})
            last = TOOL
            continue
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}; use system, user or assistant")
        if last == CALL:
            raise ValueError(f"message {i} ({role}) follows a tool call with no tool result; add the tool's "
                             "answer after the call")
        if role == "user" and last == TOOL:
            raise ValueError(f"message {i} (user) follows a tool result; the assistant answers after tool results")
        if calls:  # a call may come with words before it, or none
            message = {"role": role, "content": _text(content, i, role) if _has_text(content) else "",
                       "tool_calls": tool_calls.calls(calls, f"message {i}")}
        else:
            message = {"role": role, "content": _text(content, i, role)}
        if (thought := extra.get(reasoning.FIELD)) is not None and role == "assistant":
            if not isinstance(thought, str):
                raise ValueError(f"message {i} (assistant) has reasoning that is not text")
            if thought.strip():
                message[reasoning.FIELD] = thought
        if role == "system" and out:
            raise ValueError(f"message {i} is a system message after the conversation started; put it first")
        if role == "assistant" and last in (None, "system"):
            raise ValueError("the conversation starts with the assistant; put a user message first")
        if role == last:
            raise ValueError(f"message {i} ({role}) follows another {role} message; turns must alternate "
                             "user and assistant")
        out.append(message)
        last = CALL if "tool_calls" in message else role
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError("no assistant message to learn from")
    return out


def _has_text(content) -> bool:
    return content not in (None, "", []) and not (isinstance(content, str) and not content.strip())


def _result(content, i: int) -> str:
    """A tool's result as text: a value written out as JSON, nothing as "" (a tool may return nothing)."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list) and content and all(isinstance(p, dict) and "type" in p for p in content):
        return _text(content, i, TOOL)  # content parts
    return json.dumps(content, ensure_ascii=False)


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
