"""Tool calls and tool definitions, in the one form the chat templates of transformers take.

Datasets write a call in several ways: OpenAI's {"type": "function", "function": {"name", "arguments"}} with
the arguments as JSON text, its older {"function_call": {...}} on the assistant turn, or a bare
{"name", "arguments"} (LLaMA-Factory's function_call turns, xLAM), alone or in a list, sometimes as JSON text
in a cell. Templates want `tool_calls` of {"type": "function", "function": {"name": ..., "arguments": {...}}}
with the arguments an object: Llama 3.1's writes them with `tojson`, so arguments left as text would be
quoted twice. The row's `tools` (what the model may call) likewise become {"type": "function", "function":
{"name", "description", "parameters"}}. A call's `id` is kept (Mistral's template pairs results by it).
`read_file` takes the tools a person offers a model they try (`chat --tools FILE`); `in_answer` finds the calls
in what the model answers then, so the person can give each its result (core/conversation.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from core.errors import KnownError


def uses_tools(messages: list[dict] | None, tools: list[dict] | None) -> bool:
    """Whether a conversation has tools to call, calls one, or reads a result."""
    return bool(tools) or any(m["role"] == "tool" or "tool_calls" in m for m in messages or ())


def calls(value, where: str) -> list[dict]:
    """The calls in `value` in the templates' form; ValueError naming `where` (e.g. "message 3") when not."""
    value = _parsed(value, f"{where} calls a tool with text that is not JSON; write the call as an object")
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"{where} has an empty list of tool calls")
    return [_call(item, where) for item in items]


def _call(item, where: str) -> dict:
    if not isinstance(item, dict):
        raise ValueError(f"{where} has a tool call that is not an object; write it as "
                         '{"name": ..., "arguments": {...}}')
    function = item.get("function") if isinstance(item.get("function"), dict) else item
    name = function.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where} has a tool call with no function name")
    arguments = _parsed(function.get("arguments") if "arguments" in function else function.get("parameters"),
                        f"{where} calls {name} with arguments that are not JSON; write them as an object")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ValueError(f"{where} calls {name} with arguments that are not an object; write them as "
                         '{"parameter": value, ...}')
    out = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if isinstance(item.get("id"), str) and item["id"]:
        out["id"] = item["id"]
    return out


def definitions(value) -> list[dict] | None:
    """A row's `tools` in the templates' form, None when it has none; ValueError when they are not functions."""
    value = _parsed(value, "'tools' is text but not JSON; write it as a list of functions")
    if value in (None, "", []):
        return None
    if not isinstance(value, list):
        raise ValueError("'tools' is not a list of functions")
    out = []
    for i, item in enumerate(value, 1):
        function = item.get("function") if isinstance(item, dict) and isinstance(item.get("function"), dict) \
            else item
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ValueError(f"tool {i} of 'tools' has no function name; write each as "
                             '{"name": ..., "description": ..., "parameters": {...}}')
        out.append({"type": "function", "function": dict(function)})
    return out


def _parsed(value, why: str):
    """`value`, or the JSON it holds when it is text (a CSV cell, LLaMA-Factory's function_call turns)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(why) from None


def read_file(path: str) -> list[dict]:
    """The functions a model may call, from a JSON file (a list of them, or an object holding one as "tools") or
    a dataset file of JSON lines (its first row's "tools"); KnownError in one sentence otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise KnownError(f"{path}: cannot read it ({type(e).__name__}); give a JSON file of tools.") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        try:  # a dataset of JSON lines: its first row's tools
            value = json.loads(text.splitlines()[0]) if text.strip() else None
        except json.JSONDecodeError:
            raise KnownError(f"{path}:{e.lineno}: not JSON ({e.msg}); give a list of tools, as a dataset row's "
                             "'tools' holds them.") from None
    try:
        tools = definitions(value.get("tools") if isinstance(value, dict) else value)
    except ValueError as e:
        raise KnownError(f"{path}: {e}.") from None
    if not tools:
        raise KnownError(f"{path}: no tools in it; give a list of functions, each with a name, a description and "
                         "parameters.")
    return tools


_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def in_answer(text: str, offered: list[dict]) -> tuple[str, list[dict]]:
    """(the words, the calls) of a model's answer to a conversation that offered tools; no calls where it made none.

    Found as the templates write them: <tool_call>{JSON}</tool_call> blocks (our text convention, Hermes', Qwen's,
    SmolLM3's; the last may be cut short by the token limit), or an answer that is nothing but a call's JSON, alone
    or in a list (Llama 3.1's; Mistral's once its [TOOL_CALLS] token is dropped in decoding), the latter only where
    it names `offered` tools (an answer asked to be JSON may have a "name" too). A block that is not a call (no
    name, not JSON) leaves the whole answer words: nothing can be given a result."""
    blocks = _BLOCK.findall(text)
    try:
        if blocks:
            return _BLOCK.sub("", text).strip(), [c for block in blocks for c in calls(block, "the answer")]
        stripped = text.strip()
        if stripped[:1] in ("{", "[") and '"name"' in stripped:
            found = calls(stripped, "the answer")
            names = {t["function"]["name"] for t in offered}
            if all(c["function"]["name"] in names for c in found):
                return "", found
    except ValueError:
        pass
    return text, []


def shown(call: dict) -> str:
    """A call in one line, as a person reads it: capital(country="Peru")."""
    function = call["function"]
    arguments = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in function["arguments"].items())
    return f"{function['name']}({arguments})"
