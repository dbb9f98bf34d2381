"""How the exported model's chat template writes tools and an answer's thinking, in parts Ollama's Go template can
be given (modelfile.py): found by rendering probes, then proven on conversations that use them.

The template is the one the exported model carries: the model's own where it writes tools (Qwen 2.5's and 3's
list them in the system turn and write calls and results as Hermes made common; Qwen 3.5's lists them first in the
system turn, the system text after them, and writes each call as XML, <tool_call>\n<function=NAME>\n then a
<parameter=KEY>\nVALUE\n</parameter>\n block for each argument and </function>\n</tool_call>, after a blank line
where the answer has words; results as Hermes), or ours in front of it where the run learned calls written as text
(tool_render.with_tool_text). Either way the listing is read off a rendering (the text before the first tool with
and without a system text, between two, after the last), and the way calls are written is the one of those that
proves out. Thinking, where the template writes it (Qwen 3's, Qwen 3.5's: also an empty block for an answer after
the last question that has none), is one of the few ways reasoning.ThinkText knows. Each is taken only where the
conversations our parts write (tool_render.ToolText.as_text through the chat format's turns) are the template's
own, up to how the JSON in them is written (Ollama writes JSON its own way) and the order of an XML call's
arguments (Ollama gives them as a map, which Go's template ranges over in key order). A template we cannot
reproduce so gets neither in the Modelfile, never a guess.
"""

from __future__ import annotations

import json
import re
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
        listing = _parts(_listing(tokenizer, fmt, None), _listing(tokenizer, fmt, SYSTEM))
        if listing is None:
            return None
        # where the template writes thinking, an answer after the last question may have its (empty) block
        thinks = [None, *_THINKS] if reasoning.native(tokenizer)[0] else [None]
        for xml, before_calls in ((False, "\n"), (True, "\n\n"), (True, "\n"), (False, "\n\n")):
            text = replace(listing, xml=xml, before_calls=before_calls)
            if any(all(as_data(render_chat(tokenizer, chat, True, PROBE_TOOLS))
                       == as_data(fmt.render(text.as_text(chat, PROBE_TOOLS, think))) for chat in PROOF)
                   for think in thinks):
                return text
    except Exception:  # a template that refuses a probe writes no tools we can give
        return None
    return None


def _parts(alone: tuple | None, given: tuple | None) -> tool_render.ToolText | None:
    """The listing's parts from the text around the tools without a system text and with one (SYSTEM): in front of
    the list (Qwen 2.5's and 3's) or after it (Qwen 3.5's); None where it is neither, or text Ollama's template (or
    the Modelfile's quotes) would read as its own."""
    if alone is None or given is None or alone[1] != given[1] or alone[3] != given[3]:
        return None
    if given[0].startswith(SYSTEM) and alone[2] == given[2]:
        text = tool_render.ToolText(alone[0], given[0][len(SYSTEM):], *alone[1:])
    elif given[0] == alone[0] and given[2].startswith(alone[2]) and given[2].endswith(SYSTEM):
        text = tool_render.ToolText(alone[0], "", *alone[1:], system_after=given[2][len(alone[2]):-len(SYSTEM)])
    else:
        return None
    if any("{{" in part or '"""' in part for part in (text.alone, text.after_system, text.sep, text.outro,
                                                      text.system_after or "")):
        return None
    return text


_THINKING = [  # conversations whose answers carry their thinking: before the last question and after it
    [_ASK, {"role": "assistant", "content": "3.", FIELD: "One and two."}, {"role": "user", "content": "And 2 and 2?"},
     {**_CALLED, FIELD: "A sum again."}, {"role": "tool", "content": "4"}],
    [_ASK, {"role": "assistant", "content": "Let me add.", "tool_calls": _CALLED["tool_calls"], FIELD: "A sum."},
     {"role": "tool", "content": "3"}],
    [_ASK, {"role": "assistant", "content": "3.", FIELD: "Easy."}, {"role": "user", "content": "Thanks."}],
    [_ASK, {"role": "assistant", "content": "3.", FIELD: "One and two."}],
    [_ASK, {"role": "assistant", "content": "", FIELD: "Hm."}],
    [_ASK, _CALLED, {"role": "tool", "content": "3"}],  # none after the last question: an empty block, or none
]


_THINKS = [reasoning.ThinkText(every, whole, empty=empty) for empty in (False, True) for every in (True, False)
           for whole in (False, True)]  # the ways of writing thinking tried, in turn


def thinking(tokenizer, fmt: ChatFormat | None, tools: tool_render.ToolText | None) -> reasoning.ThinkText | None:
    """Where and how the tokenizer's chat template writes an answer's thinking, or None where it writes none, or
    none in a way reasoning.ThinkText knows. `tools`: the parts it writes tools in (tools()), if any: the
    conversations that prove it then call tools too (and show whether an answer after the last question without
    thinking gets an empty block: without tools, none is written there but after the question that asks for it)."""
    if fmt is None or not reasoning.native(tokenizer)[0]:
        return None
    chats = _THINKING if tools is not None else [c for c in _THINKING if not any("tool_calls" in m for m in c)]
    offered = PROBE_TOOLS if tools is not None else None
    parts = tools or tool_render.HERMES  # with no tools offered, only its way of writing answers is used
    for candidate in _THINKS:
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
    """`text` with every JSON object and list in it written one way (keys sorted, no spaces), and the <parameter>
    blocks of each <function=...> call in key order, so that two texts that differ only in how their JSON is written,
    and in the order of a call's arguments (Go ranges over a map in key order), compare equal."""
    out, i, decoder = [], 0, json.JSONDecoder()
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                value = None
            if isinstance(value, (dict, list)):
                out.append(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
                i = end
                continue
        out.append(text[i])
        i += 1
    return _CALL.sub(lambda m: m[1] + "".join(sorted(_PARAMETER.findall(m[2]))) + m[3], "".join(out))


_CALL = re.compile(r"(<function=[^>\n]*>\n)((?:<parameter=[^>\n]*>\n.*?\n</parameter>\n)*)(</function>)", re.S)
_PARAMETER = re.compile(r"<parameter=[^>\n]*>\n.*?\n</parameter>\n", re.S)
