"""The Modelfile's template, rendered by Go's text/template as Ollama runs it (golden.jsonl, made by
ollama/render.go), gives the text the model was trained on: exactly the model's own Jinja template's for a run
that learned no tools; for one that learned tool calls written as text, training's text (tool_render.as_text
through the model's template) with each JSON object and list compared as data, since Ollama writes JSON its own way
(compact, fixed fields in its order, <, > and & escaped), and the <parameter> blocks of Qwen 3.5's XML calls in key
order, since Go ranges over the arguments Ollama gives as a map in key order."""

import copy
import json
from pathlib import Path

import pytest

from core.data import reasoning, tool_render
from core.gguf_export import modelfile, template_parts
from core.gguf_export.template_parts import as_data
from tests.core.gguf_export.ollama import cases

GOLDEN = Path(__file__).parent / "ollama" / "golden.jsonl"
REGENERATE = ("golden.jsonl was made from other templates or conversations: regenerate it with "
              "`make ollama-golden` (it needs Go; Debian: apt-get install golang-go)")
GOLDEN_CASES = [json.loads(line) for line in GOLDEN.read_text(encoding="utf-8").splitlines()]
KEYS = ("name", "template", "messages", "tools", "think_set", "think")


@pytest.fixture(scope="module")
def found():
    return cases.formats()


def ollama_call_tag(template: str) -> str:
    """The text Ollama's tool parser takes as the start of a call (ollama tools/template.go): the first text under
    the first `if` that tests the .ToolCalls field, up to its first "{", trimmed."""
    opening = "{{ if .ToolCalls }}"
    start = template.index(opening) + len(opening)
    assert ".ToolCalls }}" not in template[:start - len(opening)].replace("{{ $calls := .ToolCalls }}", "")
    return template[start:template.index("{{", start)].strip().split("{")[0]


def test_the_golden_renderings_are_of_the_templates_written_now(found):
    now = [{k: c[k] for k in KEYS} for c in cases.cases(found)]
    assert now == [{k: c[k] for k in KEYS} for c in GOLDEN_CASES], REGENERATE


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[c["name"] for c in GOLDEN_CASES])
def test_ollama_renders_a_conversation_as_training_wrote_it(found, case):
    assert not case.get("error"), f"Go could not run the template: {case['error']}"
    family = case["name"].split(":")[0].split(" ")[0]
    fmt, tok, _, _ = found[family]
    messages, tools = cases.chat(case["name"])
    written, offered = tool_render.written(tok, messages, tools)  # as training writes them for this template
    trained = tok.apply_chat_template(written, tokenize=False, add_generation_prompt=True,
                                      **({"tools": offered} if offered else {}),
                                      **({"enable_thinking": case["think"]} if case["think_set"] else {}))
    if not tools:
        assert case["rendered"] == trained
        if case["name"].startswith(f"{family}: "):  # When the GGUF asks llama.cpp to add BOS, the template
            assert fmt.begin + modelfile.go_template(fmt, writes_bos=True) == case["template"]  # leaves it out
        return
    assert as_data(case["rendered"]) == as_data(trained)
    # What differs is only how the JSON is written, and the order of Qwen 3.5's <parameter> blocks (Go ranges over the
    # arguments in key order): the calls are written as training wrote them.
    for opening in ("<tool_call>\n{\"name\": ", "<tool_call>\n<function="):
        assert case["rendered"].count(opening) == trained.count(opening)


QWEN_TOOLS = "\n\n# Tools\n\nYou may call functions.\n<tools>\n"
OWN_PARTS = {  # the families whose template writes tools itself, and the parts found in it
    "qwen": tool_render.ToolText(
        alone="You are Qwen, a helpful assistant." + QWEN_TOOLS, after_system=QWEN_TOOLS, sep="\n", whole=True,
        outro='\n</tools>\n\nCall one as <tool_call>\n{"name": <name>, "arguments": <arguments>}\n</tool_call>'),
    "qwen3": tool_render.ToolText(alone="# Tools\n\nCall these.\n<tools>\n",
                                  after_system="\n\n# Tools\n\nCall these.\n<tools>\n", sep="\n", outro="\n</tools>",
                                  whole=True)}
# Qwen 3.5's: the system text after the list, calls as XML after a blank line
OWN_PARTS["qwen35"] = tool_render.ToolText(
    alone="# Tools\n\nYou may call these:\n\n<tools>\n", after_system="", sep="\n", whole=True, system_after="\n\n",
    outro="\n</tools>\n\nCall one as:\n\n<tool_call>\n<function=example>\n<parameter=example_key>\nvalue\n"
          "</parameter>\n</function>\n</tool_call>", xml=True, before_calls="\n\n")


@pytest.mark.parametrize("family", sorted(cases.TEMPLATES))
def test_ollama_offers_tools_and_finds_the_calls(found, family):
    fmt, _, parts, thinking = found[family]
    if fmt.system_last:  # Mistral Nemo's lists tools in the last question alone: not written, so none offered
        assert parts is None and ".Tools" not in modelfile.go_template(fmt, writes_bos=False)
        return
    # Ours in front of a template with no tool format is found as it is; Qwen's own, in its own parts.
    assert parts == OWN_PARTS.get(family, tool_render.HERMES)
    for think in (None, thinking):
        template = modelfile.go_template(fmt, writes_bos=False, tools=parts, thinking=think)
        assert ".Tools" in template  # Ollama refuses tools for a model whose template never reads them
        assert ollama_call_tag(template) == "<tool_call>"  # and finds a call by the tag that training wrote
        text = modelfile.modelfile("m.gguf", fmt, False, fmt.end_of_turn, "why", tools=parts, thinking=think)
        assert f'TEMPLATE """{template}"""' in text
    assert ".Tools" not in modelfile.go_template(fmt, writes_bos=False)  # a run that learned no tools offers none


def test_qwen35s_calls_are_written_as_its_xml_and_the_report_says_who_reads_them(found):
    fmt, _, parts, thinking = found["qwen35"]
    template = modelfile.go_template(fmt, writes_bos=False, tools=parts, thinking=thinking)
    assert "<function={{ .Function.Name }}>" in template and "{{ range $k, $v := .Function.Arguments }}" in template
    # Ollama's parser made from a template reads JSON after the tag: export.json says so, and what reads the XML
    assert "PARSER qwen3.5" in modelfile.tools_reason(True, parts, fmt)
    assert "JSON" in modelfile.tools_reason(True, found["qwen3"][2], fmt)
    # the order of a call's arguments is all that as_data forgives in the XML, besides how its JSON is written
    call = "<function=f>\n<parameter=b>\n[1, 2]\n</parameter>\n<parameter=a>\nx\n</parameter>\n</function>"
    assert as_data(call) == as_data(call.replace("[1, 2]", "[1,2]")) == as_data(
        "<function=f>\n<parameter=a>\nx\n</parameter>\n<parameter=b>\n[1,2]\n</parameter>\n</function>")
    assert as_data(call) != as_data(call.replace("x", "y"))


def test_a_template_whose_tools_we_cannot_write_gets_none(found):
    fmt, tok, _, _ = found["qwen"]
    bent = copy.copy(tok)  # results in a turn of their own role: not the way our parts write them
    bent.chat_template = cases.TEMPLATES["qwen"].replace("<|im_start|>user{% endif %}", "<|im_start|>tool{% endif %}")
    assert tool_render.native(bent) and template_parts.tools(bent, fmt) is None
    assert modelfile.tools_reason(True, None, fmt).startswith("The Modelfile's template cannot write")
    assert modelfile.tools_reason(False, None, fmt) is None  # nothing to say where the run learned no tools


@pytest.mark.parametrize("family", sorted(cases.TEMPLATES))
def test_ollama_finds_the_thinking(found, family):
    fmt, _, parts, thinking = found[family]
    # Qwen 3's writes the thinking after the last question alone, in front of the whole turn, and Qwen 3.5's likewise
    # after an answer opened with "<think>\n"; the others none, so a run whose answers carried it learned it in front
    # of each answer's words (reasoning.AS_TEXT).
    own = {"qwen3": reasoning.ThinkText(every=False, whole=True, off="<think>\n\n</think>\n\n"),
           "qwen35": reasoning.ThinkText(every=False, whole=True, off="\n</think>\n\n", empty=True)}
    assert thinking == own.get(family, reasoning.AS_TEXT)
    assert fmt.generation_suffix == {"qwen35": "<think>\n", "gemma4": "<|channel>thought\n<channel|>"}.get(family, "")
    for tools in (None, parts):
        template = modelfile.go_template(fmt, writes_bos=False, tools=tools, thinking=thinking)
        assert ollama_thinking_tags(template) == ("<think>", "</think>")
    plain = modelfile.go_template(fmt, writes_bos=False)
    if fmt.think_prefix is None:
        assert ".Thinking" not in plain  # nor thinking, to one that learned none
    else:  # but Gemma 4's switch: Ollama's think turns it on, and the thinking comes in its thought channel
        assert ollama_thinking_tags(plain) == ("<|channel>thought", "<channel|>")
        assert plain.count("{{ if $.Think }}") == 2  # the system turn that opens with <|think|>, and the answer's
        # a run that learned to think in <think> text (above) thinks so: the switch is not the Modelfile's then
        assert "$.Think" not in modelfile.go_template(fmt, writes_bos=False, thinking=thinking)


def ollama_thinking_tags(template: str) -> tuple[str, str]:
    """The tags Ollama takes as wrapping an answer's thinking (ollama thinking/template.go): the first and last
    text of the list around the last .Thinking in the template (here an `if` body)."""
    last = template.rindex("{{ .Thinking }}")
    start = template.index("}}", template.rindex("{{ if ", 0, last)) + 2
    body = template[start:template.index("{{ end }}", last)]
    assert "{{" not in body.replace("{{ .Thinking }}", "")  # text, the thinking, text: nothing else
    opening, closing = body.split("{{ .Thinking }}")
    return opening.strip(), closing.strip()
