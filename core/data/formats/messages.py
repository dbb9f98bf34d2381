"""OpenAI chat format: {"messages": [{"role": "system|user|assistant", "content": "..."}, ...]}.

Tool results (role tool/function/ipython) and assistant turns that only call a tool are dropped (see
turns.py). A `messages` cell holding JSON text (from a CSV) is parsed.
"""

from core.data.formats.turns import TOOL, check_turns, list_field, looks_like_list

NAME = "messages"
DESCRIPTION = "chat messages (role/content, OpenAI style)"
FIELDS = ("messages",)
TOOL_ROLES = {"tool", "function", "ipython"}


def detect(row: dict) -> bool:
    return looks_like_list(row.get("messages"))


def convert(row: dict) -> dict:
    messages, dropped = check_turns([turn_of(m) for m in list_field(row, "messages")])
    return {"messages": messages, "dropped": dropped}


def turn_of(m) -> tuple:
    """(role, content) of one OpenAI-style message; tool results and tool-only calls as TOOL, to be dropped."""
    if not isinstance(m, dict):
        return None, None
    role = m.get("role")
    calls_tool = role == "assistant" and (m.get("tool_calls") or m.get("function_call")) and not m.get("content")
    return (TOOL if role in TOOL_ROLES or calls_tool else role), m.get("content")
