"""How a conversation that calls tools becomes text for one model.

A model whose chat template writes tools (Qwen 2.5 and 3, Llama 3.1 on, SmolLM3, Mistral's, Granite's...) gets
the calls, results and definitions the way transformers' templates take them (`tools=`, an assistant turn's
`tool_calls`, role `tool`), so the tuned model calls tools as its own template, and the tool parsers of Ollama
and llama.cpp made for it, expect. Whether a template writes them is found by rendering one probe conversation
whose marks must all come out: a definition's description, a call's name and argument, and a result.

A template that writes none of it would lose the calls (SmolLM2's prints each role and content: the calls would
vanish and the model learn to answer from results it never asked for), so there the calls are written as text,
in the convention Hermes made common and Qwen's template follows: the definitions in the system turn between
<tools> and </tools>, one JSON object a line; each call in the answer as <tool_call>{"name": ..., "arguments":
{...}}</tool_call>; a turn's results as one user turn of <tool_response>...</tool_response>. `note` says which,
for `data inspect` and the run's log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.data import reasoning
from core.data.chat_spans import per_template, put_prelude, render_chat
from core.data.formats.tool_calls import uses_tools

_MARKS = ("tfprobe_described", "tfprobe_asked", "tfprobe_answer")
_PROBE_TOOLS = [{"type": "function", "function": {
    "name": "tfprobe_lookup", "description": "tfprobe_described",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
_PROBE = [{"role": "user", "content": "Look it up."},
          {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "id": "tfprobe01", "function": {
              "name": "tfprobe_lookup", "arguments": {"q": "tfprobe_asked"}}}]},
          {"role": "tool", "content": "tfprobe_answer", "name": "tfprobe_lookup", "tool_call_id": "tfprobe01"},
          {"role": "assistant", "content": "Found it."}]
_PLAIN_PROBES = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
                 [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Again?"}]]

TOOLS_INTRO = ("You may call the tools below. To call one, answer with <tool_call>{\"name\": ..., \"arguments\": "
               "{...}}</tool_call>; what it returns comes back between <tool_response> and </tool_response>.")


@per_template
def native(tokenizer) -> bool:
    """Whether the tokenizer's chat template writes tool definitions, calls and results itself."""
    try:
        text = render_chat(tokenizer, _PROBE, tools=_PROBE_TOOLS)
        return all(mark in text for mark in _MARKS) and text.count("tfprobe_lookup") >= 2
    except Exception:  # a template that refuses the probe (roles, fields) does not write tools
        return False


def written(tokenizer, messages: list[dict], tools: list[dict] | None) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools) to render for this tokenizer: as they are where the template writes tools (or there are
    none), else the calls written as text (as_text) and no tools left to pass; each answer's reasoning where the
    template reads it, or as text (core/data/reasoning.py)."""
    messages = reasoning.written(tokenizer, messages)
    if not uses_tools(messages, tools) or native(tokenizer):
        return messages, tools or None
    return as_text(messages, tools), None


@dataclass(frozen=True)
class ToolText:
    """How a system text lists the tools offered: `alone` when the conversation has no system text (a template's
    default one included, where it keeps it), the system text then `after_system` when it has one; then each tool's
    JSON (the whole {"type": "function", ...} object where `whole`, else its function), `sep` between two, and
    `outro`; where `system_after` is set, the system text comes after the outro instead, behind that text (Qwen
    3.5's). Calls are written after the answer's words and `before_calls`, as Hermes made common (<tool_call> JSON)
    or, where `xml`, as Qwen 3.5's (<function=NAME> with a <parameter=KEY> block for each argument); results as
    Hermes made common, which Qwen's templates follow too."""
    alone: str
    after_system: str
    sep: str
    outro: str
    whole: bool = False
    system_after: str | None = None
    xml: bool = False
    before_calls: str = "\n"

    def system(self, system: str | None, tools: list[dict]) -> str:
        listed = self.sep.join(json.dumps(t if self.whole else t["function"], ensure_ascii=False) for t in tools)
        if self.system_after is not None:
            return self.alone + listed + self.outro + (self.system_after + system if system else "")
        return (self.alone if system is None else system + self.after_system) + listed + self.outro

    def calls(self, message: dict) -> list[str]:
        """An answer's calls, each as text."""
        return [_xml_call(c) if self.xml else _json_call(c) for c in message.get("tool_calls") or ()]

    def as_text(self, messages: list[dict], tools: list[dict] | None,
                think: reasoning.ThinkText | None = None) -> list[dict]:
        """The conversation with its tools, calls and results written as text in plain system/user/assistant
        turns; with `think`, each answer's reasoning too (where `think` writes it)."""
        out: list[dict] = []
        if tools:
            given = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
            out.append({"role": "system", "content": self.system(given, tools)})
            messages = messages[1:] if given is not None else messages
        last_question = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for i, m in enumerate(messages):
            if think is not None and m["role"] == "assistant":
                shown = m.get(reasoning.FIELD) or "" if think.every or i > last_question else None
                out.append({"role": "assistant",
                            "content": think.wrap(shown, m["content"], self.calls(m), self.before_calls)})
            elif m["role"] == "tool":
                result = f"<tool_response>\n{m['content']}\n</tool_response>"
                if out and out[-1].get("tool_results"):
                    out[-1]["content"] += "\n" + result
                else:
                    out.append({"role": "user", "content": result, "tool_results": True})
            elif "tool_calls" in m:
                calls = "\n".join(self.calls(m))
                joined = self.before_calls if m["content"] and calls else ""
                out.append({"role": m["role"], "content": m["content"] + joined + calls})
            else:
                out.append(dict(m))
        for m in out:
            m.pop("tool_results", None)
        return out


# Ours, for a template with no tool format: the tools in the system turn between <tools> and </tools>.
HERMES = ToolText(alone=f"{TOOLS_INTRO}\n<tools>\n", after_system=f"\n\n{TOOLS_INTRO}\n<tools>\n", sep="\n",
                  outro="\n</tools>")


def as_text(messages: list[dict], tools: list[dict] | None) -> list[dict]:
    """The conversation with its tools, calls and results written as text, as training writes them for a template
    with no tool format (HERMES)."""
    return HERMES.as_text(messages, tools)


# Jinja put in front of a template that has no tool format, so that the exported model's own template writes tools,
# calls and results as training wrote them (as_text): transformers, vLLM and llama.cpp's --jinja then render tools
# for it. It rewrites `messages` and leaves the rest to the template (tested equal to as_text + the template). Its
# newlines are Jinja escapes, not raw newlines in string literals, which not every Jinja reader takes.
_PRELUDE = (
    "{%- set tf = namespace(out=[], results='', listed='', text='') -%}"
    "{%- set tf_tools = tools if tools is defined and tools else [] -%}"
    "{%- for t in tf_tools -%}{%- set tf.listed = tf.listed ~ ((t.function if t.function is defined else t) | tojson)"
    " ~ '\\n' -%}{%- endfor -%}"
    "{%- set tf_block = " + json.dumps(TOOLS_INTRO) + " ~ '\\n<tools>\\n' ~ tf.listed ~ '</tools>' -%}"
    "{%- if tf_tools and not (messages and messages[0].role == 'system') -%}"
    "{%- set tf.out = [{'role': 'system', 'content': tf_block}] -%}{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'tool' -%}"
    "{%- set tf.results = (tf.results ~ '\\n' if tf.results else '') ~ '<tool_response>\\n' ~ m.content"
    " ~ '\\n</tool_response>' -%}"
    "{%- else -%}"
    "{%- if tf.results -%}{%- set tf.out = tf.out + [{'role': 'user', 'content': tf.results}] -%}"
    "{%- set tf.results = '' -%}{%- endif -%}"
    "{%- if loop.first and m.role == 'system' and tf_tools -%}"
    "{%- set tf.out = tf.out + [{'role': 'system', 'content': m.content ~ '\\n\\n' ~ tf_block}] -%}"
    "{%- elif m.tool_calls is defined and m.tool_calls -%}"
    "{%- set tf.text = m.content if m.content else '' -%}"
    "{%- for c in m.tool_calls -%}{%- set f = c.function if c.function is defined else c -%}"
    "{%- set tf.text = (tf.text ~ '\\n' if tf.text else '') ~ '<tool_call>\\n{\"name\": ' ~ (f.name | tojson)"
    " ~ ', \"arguments\": ' ~ (f.arguments if f.arguments is string else (f.arguments | tojson)) ~ '}\\n</tool_call>'"
    " -%}{%- endfor -%}"
    "{%- set tf.out = tf.out + [{'role': m.role, 'content': tf.text}] -%}"
    "{%- else -%}{%- set tf.out = tf.out + [m] -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if tf.results -%}{%- set tf.out = tf.out + [{'role': 'user', 'content': tf.results}] -%}{%- endif -%}"
    "{%- set messages = tf.out %}")


def with_tool_text(template: str) -> str:
    """`template` with the prelude in front: it writes tools the way as_text does, everything else as before."""
    return _PRELUDE + template


def for_export(tokenizer, trained_tools: bool) -> str | None:
    """Where a run trained on tool calls written as text (its template has no tool format), give the tokenizer the
    template that writes them so (with_tool_text), for the exported model; the sentence for the export's report,
    None where the template stays as it was. Taken only where it renders plain conversations exactly as the
    template did and a conversation with tools exactly as training did."""
    template = getattr(tokenizer, "chat_template", None)
    if not trained_tools or not isinstance(template, str) or native(tokenizer):
        return None
    if not put_prelude(tokenizer, _PRELUDE, _PLAIN_PROBES, lambda mine, original: render_chat(
            mine, _PROBE, tools=_PROBE_TOOLS) == render_chat(original, as_text(_PROBE, _PROBE_TOOLS))):
        return ("The chat template is left as it was: with tool calls written in front of it, it would no longer "
                "render other conversations exactly as before; offer tools as the run's data wrote them "
                "(<tool_call> JSON in the answer, <tool_response> turns, the tools listed in the system turn).")
    return ("The chat template now also writes tools, calls and results as the run trained on them (the tools "
            "listed in the system turn, <tool_call> JSON in the answer, <tool_response> turns), so transformers, "
            "vLLM and llama.cpp's --jinja offer tools to the model as it learned them.")


def _json_call(call: dict) -> str:
    """A call as <tool_call> JSON text."""
    return f"<tool_call>\n{json.dumps(_call(call), ensure_ascii=False)}\n</tool_call>"


def _xml_call(call: dict) -> str:
    """A call as Qwen 3.5's template writes it: each argument in a <parameter> block, a string as it is, a list or
    object as JSON, anything else as Python writes it (Jinja's `string`: True, None)."""
    arguments = call["function"]["arguments"]
    arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
    blocks = "".join(f"<parameter={k}>\n{_xml_value(v)}\n</parameter>\n" for k, v in arguments.items())
    return f"<tool_call>\n<function={call['function']['name']}>\n{blocks}</function>\n</tool_call>"


def _xml_value(value) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)


def _call(call: dict) -> dict:
    return {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}


def note(tokenizer, tool_use: dict) -> str:
    """One sentence for a dataset with tool calls: how many, and how this model's text will hold them."""
    rows, calls = tool_use.get("rows", 0), tool_use.get("calls", 0)
    what = f"{rows:,} conversation{'s use' if rows != 1 else ' uses'} tools ({calls:,} call{'s' if calls != 1 else ''})"
    if native(tokenizer):
        return f"{what}: the model's chat template writes the tools, calls and results, and its answers that call " \
               "a tool are trained like the others"
    return f"{what}: the model's chat template has no way to write tool calls, so they are written as text " \
           "(the tools listed in the system turn, each call as <tool_call>{JSON}</tool_call> in the answer, results " \
           "as <tool_response> turns), and the tuned model will call tools that way"
