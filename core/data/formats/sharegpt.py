"""ShareGPT exports: {"conversations": [{"from": "human|gpt|system", "value": "..."}, ...]}.

Also accepts user/assistant as `from`, and LLaMA-Factory's function calling: a `function_call` turn (the call
as JSON text: {"name", "arguments"}, or a list of them), an `observation` turn (the tool's result) and the
row's `tools` (JSON text or a list).
"""

from core.data.formats import tool_calls
from core.data.formats.turns import TOOL, check_turns, list_field, looks_like_list

NAME = "sharegpt"
DESCRIPTION = "ShareGPT conversations (from/value)"
FIELDS = ("conversations", "tools")
ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
           "observation": TOOL, "tool": TOOL, "function": TOOL}
CALLS = "function_call"


def detect(row: dict) -> bool:
    return looks_like_list(row.get("conversations"))


def convert(row: dict) -> dict:
    return {"messages": check_turns([turn_of(m) for m in list_field(row, "conversations")]),
            "tools": tool_calls.definitions(row.get("tools"))}


def turn_of(m) -> tuple:
    """(role, content[, extra]) of one from/value turn."""
    m = m if isinstance(m, dict) else {}
    who = m.get("from")
    if who == CALLS:
        return "assistant", None, {"tool_calls": m.get("value")}
    return ROLE_OF.get(who, who), m.get("value")
