"""OpenAI chat format: {"messages": [{"role": "system|user|assistant|tool", "content": "..."}, ...], "tools": [...]}.

Tool calls (an assistant turn's `tool_calls`, or the older `function_call`) and tool results (role tool,
function or ipython) are kept, with the row's `tools`, the functions the model may call: OpenAI's fine-tuning
format for function calling. So is an answer's reasoning, in whichever field holds it (`reasoning_content`,
`reasoning`, `thinking`: core/data/reasoning.py). A `messages` cell holding JSON text (from a CSV) is parsed.
"""

from core.data import reasoning
from core.data.formats import tool_calls
from core.data.formats.turns import TOOL, check_turns, list_field, looks_like_list

NAME = "messages"
DESCRIPTION = "chat messages (role/content, OpenAI style)"
FIELDS = ("messages", "tools")
TOOL_ROLES = {"tool", "function", "ipython"}


def detect(row: dict) -> bool:
    return looks_like_list(row.get("messages"))


def convert(row: dict) -> dict:
    return {"messages": check_turns([turn_of(m) for m in list_field(row, "messages")]),
            "tools": tool_calls.definitions(row.get("tools"))}


def turn_of(m) -> tuple:
    """(role, content, extra) of one OpenAI-style message: a tool result as TOOL with its name and call id, an
    assistant turn's calls and reasoning (whichever field holds it: reasoning.READ_FROM) in `extra`."""
    if not isinstance(m, dict):
        return None, None
    role = m.get("role")
    if role in TOOL_ROLES:
        return TOOL, m.get("content"), {k: m[k] for k in ("name", "tool_call_id") if isinstance(m.get(k), str)}
    extra, content = {}, m.get("content")
    if role == "assistant":
        content, thought = _thinking_parts(content)
        thought = next((m[k] for k in reasoning.READ_FROM if m.get(k) not in (None, "")), thought)
        if thought is not None:
            extra[reasoning.FIELD] = thought
        if called := m.get("tool_calls") or m.get("function_call"):
            extra["tool_calls"] = called
    return role, content, extra


def _thinking_parts(content) -> tuple:
    """(the content without its thinking parts, their text or None): Anthropic's {"type": "thinking", "thinking":
    "..."} parts, and Mistral's, whose "thinking" is a list of text parts."""
    if not isinstance(content, list):
        return content, None
    thoughts, rest = [], []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "thinking":
            said = part.get("thinking")
            if isinstance(said, list):
                said = "".join(p.get("text") or "" for p in said if isinstance(p, dict))
            thoughts.append(said if isinstance(said, str) else "")
        else:
            rest.append(part)
    return (rest, "\n".join(thoughts)) if thoughts else (content, None)
