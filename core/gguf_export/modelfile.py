"""An Ollama Modelfile beside the GGUF, so `ollama create NAME -f Modelfile` works as it is.

The TEMPLATE is written in Ollama's Go-template syntax from the chat format's parts (chat_format.py),
the same parts that were proven to render a probe conversation exactly as the model's own template;
the system prompt becomes Ollama's .System (a default one, like SmolLM2's, becomes SYSTEM), and the
end-of-turn token becomes a stop parameter, so Ollama stops where the model ends its answer.

Where the exported model's template writes tools in parts we can give (template_parts.py: Qwen's, or ours for a run
that learned calls written as text), the template writes Ollama's tools, calls and results in them (`tools`):
that `.Tools` appears is what makes Ollama accept tools for the model, and the `{{ if .ToolCalls }}` block that
opens with `<tool_call>` is where Ollama's parser reads the tag that starts a call in the model's answer. Ollama
writes the JSON itself (compact, and keys in its own order where they are fixed fields), so that JSON is the one
part of the text that may differ from the model's own template's. Qwen 3.5's calls are XML, a <parameter> block for
each argument: the template ranges over the arguments Ollama gives as a map, so they come in key order where the
model's template keeps the order they were given in (the same where a client sends them in key order). Ollama's
parser made from a template reads only JSON calls, so for those it takes Ollama's own Qwen 3.5 parser to read the
model's calls back (tools_reason says so).

Gemma 4's template thinks when asked to (enable_thinking: <|think|> opens its system turn, and its answer's opening
is no longer followed by an empty thought channel): where the run learned no thinking of its own, that switch is
Ollama's `think` (.Think), and the thought channel's tags are where Ollama reads the model's thinking (_thought).
"""

from __future__ import annotations

import json

from core.data.reasoning import ThinkText
from core.data.tool_render import ToolText
from core.gguf_export.chat_format import ChatFormat


def go_template(fmt: ChatFormat, writes_bos: bool, tools: ToolText | None = None,
                thinking: ThinkText | None = None) -> str:
    """The chat format as an Ollama template. `writes_bos`: the GGUF asks for BOS to be added at
    tokenization, so a BOS the Jinja template spells out is left to llama.cpp instead (never twice).
    `tools`: also write tools, calls and results in those parts (template_parts.py); `thinking`: an answer's
    thinking (Ollama's .Thinking) where and as those parts say. The answer's opening ends with the format's
    generation_suffix (Qwen 3.5's "<think>\n"): Ollama's chat takes a prompt that ends with the thinking's opening
    tag as thinking already (its server skips that tag in the answer since ollama PR 12024)."""
    begin = "" if writes_bos else fmt.begin
    if tools:
        return begin + _with_tools(fmt, tools, thinking)
    user, assistant = fmt.opening("user"), fmt.opening("assistant")
    if fmt.system_turn:  # written always where the template frames the system text
        head = _switched(fmt, thinking, lambda f: f.system("{{ .System }}") if f.framed
                         else "{{ if .System }}" + f.system("{{ .System }}") + "{{ end }}")
        user_content = "{{ .Content }}"
    elif fmt.system_last:  # the system text opens the question that is the last message (its index is $i)
        head = ""
        user_content = ('{{ if and $.System (eq (len (slice $.Messages $i)) 1) }}{{ $.System }}\n\n{{ end }}'
                        "{{ .Content }}")
    else:  # the system text opens the first user turn; $system is emptied once it is used
        head = "{{ $system := .System }}"
        user_content = '{{ if $system }}{{ $system }}\n\n{{ $system = "" }}{{ end }}{{ .Content }}'
    answer, _ = _answer(thinking)
    return (begin + head + _messages(thinking, indexed=fmt.system_last)
            + '{{ if eq .Role "user" }}' + user + user_content + fmt.closing("user")
            + '{{ else if eq .Role "assistant" }}' + assistant + _thought(fmt, thinking) + answer
            + fmt.closing("assistant") + "{{ end }}{{ end }}" + _switched(fmt, thinking, ChatFormat.ask)
            + _not_thinking(thinking))


def _switched(fmt: ChatFormat, thinking: ThinkText | None, part) -> str:
    """part(fmt); where the template has a switch to think (Gemma 4's) and no thinking of ours is written, part of the
    format asked to think where Ollama is asked to (`think`), else part(fmt)."""
    if fmt.think_prefix is None or thinking is not None:
        return part(fmt)
    return "{{ if $.Think }}" + part(fmt.thinking()) + "{{ else }}" + part(fmt) + "{{ end }}"


def _thought(fmt: ChatFormat, thinking: ThinkText | None) -> str:
    """Where the template has a switch to think (Gemma 4's): the tags its thinking comes between, around a .Thinking
    never written (the template writes no earlier answer's thinking in the conversations this one writes: Gemma 4's
    only that of an answer that called a tool in its own format), which is where Ollama finds them (the first and
    last text around the last .Thinking) and learns that the model thinks. The tags are the empty thought channel
    that follows the answer's opening when it is not asked to think, split after its first line."""
    if fmt.think_prefix is None or thinking is not None or "\n" not in fmt.generation_suffix:
        return ""
    opening, closing = fmt.generation_suffix.split("\n", 1)
    return "{{ if false }}" + opening + "\n{{ .Thinking }}\n" + closing + "{{ end }}"


def _messages(thinking: ThinkText | None, indexed: bool = False) -> str:
    """The loop over the messages, with each one's index $i where `indexed`; where only the thinking after the last
    question is written, with $i and the last question's index $lastq."""
    if thinking is None or thinking.every:
        return "{{ range $i, $_ := .Messages }}" if indexed else "{{ range .Messages }}"
    return ('{{ $lastq := -1 }}{{ range $i, $m := .Messages }}{{ if eq $m.Role "user" }}{{ $lastq = $i }}{{ end }}'
            "{{ end }}{{ range $i, $_ := .Messages }}")


def _not_thinking(thinking: ThinkText | None) -> str:
    """After the answer's opening: what the model's template writes when it is asked not to think (Ollama's
    `think: false`), where it has such a switch."""
    return "{{ if and .IsThinkSet (not .Think) }}" + thinking.off + "{{ end }}" if thinking and thinking.off else ""


def _answer(thinking: ThinkText | None) -> tuple[str, str]:
    """(an answer's text, the test for whether it wrote anything before its calls), with its thinking where
    `thinking` writes it (ThinkText.wrap). Ollama finds the tags that wrap thinking in the list around the last
    {{ .Thinking }} of the template (that list's first and last text): the `if` body here, which comes last and
    opens and closes with text; $thought stands for the thinking shown."""
    if thinking is None:
        return "{{ .Content }}", ".Content"
    if thinking.empty:  # the block is written for each answer shown, with its thinking or none
        shown = "{{ $thought := true }}" if thinking.every else "{{ $thought := gt $i $lastq }}"
    else:
        shown = ("{{ $thought := .Thinking }}" if thinking.every
                 else '{{ $thought := "" }}{{ if gt $i $lastq }}{{ $thought = .Thinking }}{{ end }}')
    if thinking.whole:
        return shown + "{{ if $thought }}<think>\n{{ .Thinking }}\n</think>\n\n{{ end }}{{ .Content }}", ".Content"
    return (shown + "{{ if $thought }}<think>\n{{ .Thinking }}\n</think>{{ end }}"
            "{{ if and $thought .Content }}\n\n{{ end }}{{ .Content }}", "(or .Content $thought)")


def _with_tools(fmt: ChatFormat, tools: ToolText, thinking: ThinkText | None) -> str:
    """ToolText.as_text's conversation in the format's turns: the tools listed in the system text, each call as
    <tool_call> JSON in the answer, a run of results as one user turn of <tool_response> blocks."""
    user, end, answered = fmt.opening("user"), fmt.closing("user"), fmt.closing("assistant")
    own = "$.System"  # a default system text (the SYSTEM line) stands in for none, which is what training had
    if fmt.default_system:
        own = f"and $.System (ne $.System {json.dumps(fmt.default_system, ensure_ascii=False)})"
    listed = ("{{ range $i, $_ := $.Tools }}{{ if $i }}" + tools.sep + "{{ end }}"
              + ("{{ json . }}" if tools.whole else "{{ json .Function }}") + "{{ end }}" + tools.outro)
    if tools.system_after is not None:  # the system text after the list (Qwen 3.5's)
        system = tools.alone + listed + "{{ if " + own + " }}" + tools.system_after + "{{ $.System }}{{ end }}"
    else:
        system = ("{{ if " + own + " }}{{ $.System }}" + tools.after_system + "{{ else }}" + tools.alone
                  + "{{ end }}" + listed)
    first = ""
    if fmt.system_turn:
        head = _switched(fmt, thinking, lambda f: "{{ if .Tools }}" + f.system(system)
                         + ("{{ else }}" if f.framed else "{{ else if .System }}") + f.system("{{ .System }}")
                         + "{{ end }}")
    else:  # the system text opens the first user turn
        head = "{{ $first := true }}"
        first = ("{{ if $first }}{{ $first = false }}{{ if $.Tools }}" + system
                 + "\n\n{{ else if $.System }}{{ $.System }}\n\n{{ end }}{{ end }}")
    call = _XML_CALL if tools.xml else _JSON_CALL
    # The first node under `if .ToolCalls` is the text <tool_call>: Ollama's parser takes it as the call tag.
    calls = ('{{ if .ToolCalls }}<tool_call>{{ "\\n" }}{{ with index .ToolCalls 0 }}' + call + "{{ end }}\n</tool_call>"
             "{{ range slice .ToolCalls 1 }}\n<tool_call>\n" + call + "\n</tool_call>{{ end }}{{ end }}")
    assistant = fmt.opening("assistant")
    answer, wrote = _answer(thinking)
    return (head + '{{ $prev := "" }}' + _messages(thinking)
            + '{{ if and (eq $prev "tool") (ne .Role "tool") }}' + end + "{{ end }}"
            + '{{ if eq .Role "user" }}' + user + first + "{{ .Content }}" + end
            + '{{ else if eq .Role "assistant" }}' + assistant + _thought(fmt, thinking)
            + "{{ $calls := .ToolCalls }}" + answer + "{{ if and .Content $calls }}" + tools.before_calls
            + "{{ else if and " + wrote + " $calls }}\n{{ end }}" + calls + answered
            + '{{ else if eq .Role "tool" }}{{ if eq $prev "tool" }}\n{{ else }}' + user + "{{ end }}"
            + "<tool_response>\n{{ .Content }}\n</tool_response>"
            + "{{ end }}{{ $prev = .Role }}{{ end }}"
            + '{{ if eq $prev "tool" }}' + end + "{{ end }}" + _switched(fmt, thinking, ChatFormat.ask)
            + _not_thinking(thinking))


_JSON_CALL = '{"name": {{ json .Function.Name }}, "arguments": {{ json .Function.Arguments }}}'
# A call as Qwen 3.5's template writes it: a <parameter> block for each argument (Ollama gives them as a map, which
# Go ranges over in key order), a string as it is, a number as Go prints it, True/False and None as Jinja's `string`
# writes Python's, a list or object as JSON.
_XML_CALL = ("<function={{ .Function.Name }}>\n{{ range $k, $v := .Function.Arguments }}<parameter={{ $k }}>\n"
             '{{ $t := printf "%T" $v }}{{ if eq $t "string" "float64" }}{{ $v }}{{ else if eq $t "bool" }}'
             '{{ if $v }}True{{ else }}False{{ end }}{{ else if eq $t "<nil>" }}None{{ else }}{{ json $v }}{{ end }}'
             "\n</parameter>\n{{ end }}</function>")


THINKING_REASON = ("Ollama knows the model thinks first: it takes the <think> block in front of an answer as the "
                   "answer's thinking (`ollama run --think`, or `think` in its API), and the Modelfile's template "
                   "writes earlier answers' thinking back as the model learned it.")


def tools_reason(trained: bool, tools: ToolText | None, fmt: ChatFormat | None) -> str | None:
    """One sentence for export.json on whether Ollama offers the model tools (said where it does, or where the run
    learned to call them and it does not)."""
    if tools is not None and tools.xml:
        return (f"Ollama offers the model tools{' as it learned them' if trained else ''}: the Modelfile's template "
                "lists them and writes calls (<function=...> XML) and results as the model's own template does; but "
                "the call parser Ollama makes from a template reads JSON calls only, so the model's calls do not come "
                "back as tool calls unless Ollama's own Qwen 3.5 parser reads them (PARSER qwen3.5 in the Modelfile, "
                "in an Ollama that has it).")
    if tools is not None:
        return (f"Ollama offers the model tools{' as it learned them' if trained else ''}: the Modelfile's template "
                "lists them, writes calls and results as the model's own template does, and Ollama reads <tool_call> "
                "JSON in the answer as a call (it writes the JSON itself: compact, with some keys in its own order).")
    if not trained:
        return None
    if fmt is None:
        return ("The Modelfile has no template, so Ollama does not offer the model tools; llama.cpp's --jinja does, "
                "from the GGUF's own template.")
    return ("The Modelfile's template cannot write this model's own tool format, so Ollama does not offer the model "
            "tools; llama.cpp's --jinja and transformers do, from the GGUF's own template.")


def modelfile(gguf_name: str, fmt: ChatFormat | None, writes_bos: bool, stop: str | None, why: str,
              tools: ToolText | None = None, thinking: ThinkText | None = None) -> str:
    lines = [f"# Ollama: ollama create NAME -f Modelfile   ({why})", f"FROM ./{gguf_name}", ""]
    if fmt is not None:
        lines += [f'TEMPLATE """{go_template(fmt, writes_bos, tools, thinking)}"""', ""]
        if fmt.default_system:
            lines += [f'SYSTEM """{fmt.default_system}"""', ""]
    for token in dict.fromkeys(t for t in (stop, fmt.end_of_turn if fmt else None) if t):
        lines.append(f'PARAMETER stop "{token}"')
    return "\n".join(lines).rstrip() + "\n"
