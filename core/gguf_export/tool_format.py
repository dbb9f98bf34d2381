"""How the exported model's chat template writes tools, in parts Ollama's Go template can be given
(modelfile.py): found by rendering two probe tools, then proven on conversations that call them.

The template is the one the exported model carries: the model's own where it writes tools (Qwen 2.5's and 3's
list them in the system turn and write calls and results as Hermes made common), or ours in front of it where the
run learned calls written as text (tool_render.with_tool_text). Either way the listing is read off a rendering
(the text before the first tool with and without a system text, between two, after the last), and the whole is
taken only where the conversation our parts write (tool_render.ToolText.as_text through the chat format's turns)
is the template's own, up to how the JSON in it is written (Ollama writes JSON its own way). A template we cannot
reproduce so gets no tools in the Modelfile, never a guess.
"""

from __future__ import annotations

import json

from core.data import tool_render
from core.data.chat_spans import render_chat
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


def derive(tokenizer, fmt: ChatFormat | None) -> tool_render.ToolText | None:
    """The parts in which the tokenizer's chat template writes tools, or None where it writes none we can give."""
    if fmt is None or not tool_render.native(tokenizer):
        return None
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


def _listing(tokenizer, fmt: ChatFormat, system: str | None) -> tuple[str, str, str, bool] | None:
    """(text before the first tool, between the two, after the last, whether each is the whole tool object) in the
    system text of a one-question conversation."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": QUESTION}]
    text = render_chat(tokenizer, messages, True, PROBE_TOOLS)
    opener = fmt.turn_start.format(role="system" if fmt.system_turn else "user")
    start = text.index(opener) + len(opener)
    content = text[start:text.index(fmt.turn_end if fmt.system_turn else "\n\n" + QUESTION, start)]
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
