"""How the exported model's chat template writes tools and an answer's thinking, in parts Ollama's Go template can
be given (modelfile.py): found by rendering probes, then proven on conversations that use them.

The template is the one the exported model carries: the model's own where it writes tools (Qwen 2.5's and 3's
list them in the system turn and write calls and results as Hermes made common), or ours in front of it where the
run learned calls written as text (tool_render.with_tool_text). Either way the listing is read off a rendering
(the text before the first tool with and without a system text, between two, after the last). Thinking, where
the template writes it (Qwen 3's), is one of the few ways reasoning.ThinkText knows. Each is taken only where
the conversations our parts write (tool_render.ToolText.as_text through the chat format's turns) are the
template's own, up to how the JSON in them is written (Ollama writes JSON its own way). A template we cannot
reproduce so gets neither in the Modelfile, never a guess.
"""

from __future__ import annotations

import json
from dataclasses import replace

from core.data import reasoning, tool_render
from core.data.chat_spans import render_chat
from core.data.reasoning import FIELD
from core.gguf_export.chat_format import ChatFormat

QUESTION, SYSTEM = "tfprobe_question", "tfprobe_system"
PROBE_TOOLS = [
    {"type": "function", "function": {"name": "tfprobe_add", "description": "Add two numbers.", "parameters": {
        "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}},
    {"type": "function", "function": {"name": "tfprobe_find", "description": "Find a <place> & its \"name\".",
                                      "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]


def _call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


_ASK = {"role": "user", "content": "What is 1 plus 2?"}
_CALLED = {"role": "assistant", "content": "", "tool_calls": [_call("tfprobe_add", a=1, b=2)]}
PROOF = [  # conversations the parts must write as the template does
    [_ASK, _CALLED, {"role": "tool", "content": "3"}],
    [{"role": "system", "content": "Be brief."}, _ASK, _CALLED, {"role": "tool", "content": "3"},
     {"role": "assistant", "content": "3."}, {"role": "user", "content": "Where is Lima?"}],
    [_ASK, {"role": "assistant", "content": "Two calls.", "tool_calls": [
        _call("tfprobe_add", a=1, b=2), _call("tfprobe_find", q="Lima <Peru>")]},
     {"role": "tool", "content": "3"}, {"role": "tool", "content": "Peru"}],
    [_ASK, {"role": "assistant", "content": "3."}, {"role": "user", "content": "Thanks."}],
]


def tools(tokenizer, fmt: ChatFormat | None) -> tool_render.ToolText | None:
    """The parts in which the tokenizer's chat template writes tools, or None where it writes none we can give."""
    if fmt is None or fmt.system_last or not tool_render.native(tokenizer):
        return None  # (system_last: the listing would open the last question alone, which is not written)
    try:
        alone, given = _listing(tokenizer, fmt, None), _listing(tokenizer, fmt, SYSTEM)
        if alone is None or given is None or alone[1:] != given[1:] or not given[0].startswith(SYSTEM):
            return None
        text = tool_render.ToolText(alone[0], given[0][len(SYSTEM):], *alone[1:])
        if any("{{" in part or '"""' in part for part in (text.alone, text.after_system, text.sep, text.outro)):
            return None  # text Ollama's template (or the Modelfile's quotes) would read as its own
        same = all(as_data(render_chat(tokenizer, chat, True, PROBE_TOOLS))
                   == as_data(fmt.render(text.as_text(chat, PROBE_TOOLS))) for chat in PROOF)
    except Exception:  # a template that refuses a probe writes no tools we can give
        return None
    return text if same else None


_THINKING = [  # conversations whose answers carry their thinking: before the last question and after it
    [_ASK, {"role": "assistant", "content": "3.", FIELD: "One and two."}, {"role": "user", "content": "And 2 and 2?"},
     {**_CALLED, FIELD: "A sum again."}, {"role": "tool", "content": "4"}],
    [_ASK, {"role": "assistant", "content": "Let me add.", "tool_calls": _CALLED["tool_calls"], FIELD: "A sum."},
     {"role": "tool", "content": "3"}],
    [_ASK, {"role": "assistant", "content": "3.", FIELD: "Easy."}, {"role": "user", "content": "Thanks."}],
    [_ASK, {"role": "assistant", "content": "3.", FIELD: "One and two."}],
    [_ASK, {"role": "assistant", "content": "", FIELD: "Hm."}],
]


def thinking(tokenizer, fmt: ChatFormat | None, tools: tool_render.ToolText | None) -> reasoning.ThinkText | None:
    """Where and how the tokenizer's chat template writes an answer's thinking, or None where it writes none, or
    none in a way reasoning.ThinkText knows. `tools`: the parts it writes tools in (tools()), if any: the
    conversations that prove it then call tools too."""
    if fmt is None or not reasoning.native(tokenizer)[0]:
        return None
    chats = _THINKING if tools is not None else [c for c in _THINKING if not any("tool_calls" in m for m in c)]
    offered = PROBE_TOOLS if tools is not None else None
    parts = tools or tool_render.HERMES  # with no tools offered, only its way of writing answers is used
    for candidate in (reasoning.ThinkText(every, whole) for every in (True, False) for whole in (False, True)):
        try:
            if all(as_data(render_chat(tokenizer, chat, True, offered))
                   == as_data(fmt.render(parts.as_text(chat, offered, candidate))) for chat in chats):
                return replace(candidate, off=_off(tokenizer))
        except Exception:  # a template that refuses a probe writes no thinking we can give
            return None
    return None


def _off(tokenizer) -> str:
    """What the template writes after the answer's opening when asked not to think (enable_thinking=False, as Qwen
    3's takes it), or "" where that changes nothing we can give."""
    on, off = (tokenizer.apply_chat_template([_ASK], tokenize=False, add_generation_prompt=True, **more)
               for more in ({}, {"enable_thinking": False}))
    tail = off[len(on):] if off.startswith(on) else ""
    return tail if "{{" not in tail and '"""' not in tail else ""


def _listing(tokenizer, fmt: ChatFormat, system: str | None) -> tuple[str, str, str, bool] | None:
    """(text before the first tool, between the two, after the last, whether each is the whole tool object) in the
    system text of a one-question conversation."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": QUESTION}]
    text = render_chat(tokenizer, messages, True, PROBE_TOOLS)
    opener = fmt.opening("system" if fmt.system_turn else "user")
    start = text.index(opener) + len(opener)
    content = text[start:text.index(fmt.closing("system") if fmt.system_turn else "\n\n" + QUESTION, start)]
    if not (content.startswith(fmt.system_prefix) and content.endswith(fmt.system_suffix)):
        return None
    content = content[len(fmt.system_prefix):len(content) - len(fmt.system_suffix)]  # the text framing it
    for whole in (True, False):
        first, second = (json.dumps(t if whole else t["function"], ensure_ascii=False) for t in PROBE_TOOLS)
        i = content.find(first)
        j = content.find(second, i + len(first)) if i >= 0 else -1
        if j >= 0:
            return content[:i], content[i + len(first):j], content[j + len(second):], whole
    return None


def as_data(text: str) -> str:
    """`text` with every JSON object in it written one way (keys sorted, no spaces), so that two texts that differ
    only in how their JSON is written compare equal."""
    out, i, decoder = [], 0, json.JSONDecoder()
    while i < len(text):
        if text[i] == "{":
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                value = None
            if isinstance(value, dict):
                out.append(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
                i = end
                continue
        out.append(text[i])
        i += 1
    return "".join(out)
