"""ShareGPT exports: {"conversations": [{"from": "human|gpt|system", "value": "..."}, ...]}.

Also accepts user/assistant as `from`, and drops the function-calling turns some exports carry.
"""

from core.data.formats.turns import TOOL, check_turns, list_field, looks_like_list

NAME = "sharegpt"
DESCRIPTION = "ShareGPT conversations (from/value)"
FIELDS = ("conversations",)
ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
           "function_call": TOOL, "observation": TOOL, "tool": TOOL, "function": TOOL}


def detect(row: dict) -> bool:
    return looks_like_list(row.get("conversations"))


def convert(row: dict) -> dict:
    messages, dropped = check_turns([turn_of(m) for m in list_field(row, "conversations")])
    return {"messages": messages, "dropped": dropped}


def turn_of(m) -> tuple:
    """(role, content) of one from/value turn."""
    m = m if isinstance(m, dict) else {}
    who = m.get("from")
    return ROLE_OF.get(who, who), m.get("value")
