"""Conversations that call tools, tokenized for two kinds of template: one that writes tools itself (a ChatML
template with tools, written here), and the default model's, which does not, so the calls are written as text.
Either way: the answer that calls a tool trains, the tool's result and the definitions do not, and the batched
path gives exactly what the per-row reference gives."""

import json

import pytest

from core.data import tokenize, tool_render
from core.data.dataset import Example
from core.errors import DatasetError

CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {"type": "function", "function": {"name": "weather", "description": "The weather in a city now",
                                            "parameters": CITY}}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "The time in a city",
                                          "parameters": {"type": "object"}}}


def call(name, **arguments):
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


CALLS = Example(messages=[
    {"role": "user", "content": "Weather in Lima and Quito?"},
    {"role": "assistant", "content": "", "tool_calls": [call("weather", city="Lima"), call("weather", city="Quito")]},
    {"role": "tool", "content": '{"temp": 19}'}, {"role": "tool", "content": '{"temp": 14}'},
    {"role": "assistant", "content": "Lima 19, Quito 14."}], tools=[WEATHER], source="calls.jsonl:1")
ONE_CALL = Example(messages=[
    {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Time in Oslo?"},
    {"role": "assistant", "content": "Checking.", "tool_calls": [call("clock", city="Oslo")]},
    {"role": "tool", "content": "10:42"}, {"role": "assistant", "content": "10:42."}],
    tools=[CLOCK, WEATHER], source="calls.jsonl:2")
PLAIN = Example(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                source="calls.jsonl:3")
ROWS = [CALLS, PLAIN, ONE_CALL, PLAIN]

# Ours: ChatML with the tools listed in the system turn (transformers trims the newline after a block tag, hence
# the '\\n' written out), calls written <call>name {json}</call>, results as role tool.
WITH_TOOLS = (
    "{% if tools or messages[0].role == 'system' %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}{% endif %}"
    "{% for t in tools or [] %}{{ '\\n' }}TOOL {{ t.function | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m.role != 'system' %}<|im_start|>{{ m.role }}\n{{ m.content }}"
    "{% for c in m.tool_calls or [] %}<call>{{ c.function.name }} {{ c.function.arguments | tojson }}</call>"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# The same, refusing two calls in one turn (as Llama 3.1's template does).
ONE_CALL_ONLY = ("{% for m in messages %}{% if m.tool_calls and m.tool_calls | length > 1 %}"
                 "{{ raise_exception('Only one tool call at a time.') }}{% endif %}{% endfor %}" + WITH_TOOLS)


def trained(tok, row: tokenize.Encoded) -> str:
    return tok.decode([t for t in row.labels if t != tokenize.IGNORE])


@pytest.mark.parametrize("train_on", ["assistant", "last", "all"])
@pytest.mark.parametrize("template", ["default", "with tools"])
def test_batched_equals_per_row(tok, tok_with, template, train_on, monkeypatch):
    other = tok if template == "default" else tok_with(WITH_TOOLS)
    monkeypatch.setattr(tokenize, "CHUNK", 3)
    expected = [tokenize.encode(e, other, 4096, train_on) for e in ROWS]
    assert tokenize.encode_many(ROWS, other, 4096, train_on) == expected
    assert [r.text for r in tokenize.encode_rows(ROWS, other, train_on)] == [tokenize.chat_text(other, e)
                                                                            for e in ROWS]


def test_a_template_with_tools_writes_them_itself(tok_with):
    other = tok_with(WITH_TOOLS)
    assert tool_render.native(other)
    text = tokenize.chat_text(other, ONE_CALL)
    assert text.startswith('<|im_start|>system\nBe brief.\nTOOL {"name": "clock"') and "TOOL {\"name\": \"weather\"" \
        in text and "<|im_start|>tool\n10:42<|im_end|>" in text and "<tool_call>" not in text
    row = tokenize.encode(ONE_CALL, other, 4096)
    assert trained(other, row) == ('Checking.<call>clock {"city": "Oslo"}</call><|im_end|>\n'
                                   "10:42.<|im_end|>\n")  # the call and the answer; not the result or the tools
    assert trained(other, tokenize.encode(CALLS, other, 4096)).startswith(
        '<call>weather {"city": "Lima"}</call><call>weather {"city": "Quito"}</call><|im_end|>')


def test_the_default_template_gets_the_calls_as_text(tok):
    assert not tool_render.native(tok)  # SmolLM2's prints role and content: the calls would vanish
    text = tokenize.chat_text(tok, CALLS)
    assert text.startswith("<|im_start|>system\n" + tool_render.TOOLS_INTRO + "\n<tools>\n"
                           '{"name": "weather", "description": "The weather in a city now"')
    assert ("<|im_start|>user\n<tool_response>\n{\"temp\": 19}\n</tool_response>\n<tool_response>\n{\"temp\": 14}\n"
            "</tool_response><|im_end|>") in text  # a turn's results, one user turn
    row = tokenize.encode(CALLS, tok, 4096)
    assert trained(tok, row) == ('<tool_call>\n{"name": "weather", "arguments": {"city": "Lima"}}\n</tool_call>\n'
                                 '<tool_call>\n{"name": "weather", "arguments": {"city": "Quito"}}\n</tool_call>'
                                 "<|im_end|>\nLima 19, Quito 14.<|im_end|>\n")
    system = tokenize.chat_text(tok, ONE_CALL)  # a system turn of its own keeps its words, the tools after them
    assert system.startswith("<|im_start|>system\nBe brief.\n\n" + tool_render.TOOLS_INTRO)
    assert "Checking.\n<tool_call>\n{\"name\": \"clock\"" in system


def test_each_row_is_rendered_with_its_own_tools(tok_with):
    other = tok_with(WITH_TOOLS)
    texts = [r.text for r in tokenize.encode_rows([CALLS, ONE_CALL], other)]
    assert "clock" not in texts[0] and '"clock"' in texts[1]


def test_a_row_the_template_refuses_is_one_sentence_naming_it(tok_with):
    other = tok_with(ONE_CALL_ONLY)
    assert tool_render.native(other)  # the probe makes one call
    assert tokenize.encode_many([ONE_CALL], other, 4096) == [tokenize.encode(ONE_CALL, other, 4096)]
    for encode in (lambda: tokenize.encode(CALLS, other, 4096), lambda: tokenize.encode_many(ROWS, other, 4096)):
        with pytest.raises(DatasetError, match=r"^calls\.jsonl:1: the model's chat template refuses this "
                                               r"conversation's tool calls \(Only one tool call at a time\.\); "
                                               "fix the row, or leave it out.$"):
            encode()


def test_the_note_says_how_the_calls_are_written(tok, tok_with):
    assert tool_render.note(tok, {"rows": 2, "calls": 3}).startswith(
        "2 conversations use tools (3 calls): the model's chat template has no way to write tool calls")
    assert tool_render.note(tok_with(WITH_TOOLS), {"rows": 1, "calls": 1}).startswith(
        "1 conversation uses tools (1 call): the model's chat template writes the tools")


@pytest.mark.parametrize("row", [CALLS, ONE_CALL, PLAIN], ids=["two calls", "words and a call", "no tools"])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_the_exported_template_writes_tools_as_training_did(tok, tok_with, row, generation_prompt):
    """The prelude an export puts in front of a template without a tool format renders what training rendered."""
    wrapped = tok_with(tool_render.with_tool_text(tok.chat_template))
    assert tool_render.native(wrapped)  # a later run on the exported model takes its tools natively: the same text
    assert tokenize.render_chat(wrapped, row.messages, generation_prompt, tools=row.tools) == tokenize.render_chat(
        tok, tool_render.as_text(row.messages, row.tools), generation_prompt)
    as_text = [dict(m, tool_calls=[{"type": "function", "function": {"name": c["function"]["name"], "arguments":
               json.dumps(c["function"]["arguments"])}} for c in m["tool_calls"]]) if "tool_calls" in m else m
               for m in row.messages]  # arguments as JSON text, as OpenAI's API gives them, are written as they are
    assert tokenize.render_chat(wrapped, as_text, tools=row.tools) == tokenize.render_chat(wrapped, row.messages,
                                                                                          tools=row.tools)


def test_an_export_takes_the_prelude_only_where_it_is_needed_and_exact(tok, tok_with):
    mine = tok_with(tok.chat_template)
    assert tool_render.for_export(mine, trained_tools=False) is None and mine.chat_template == tok.chat_template
    assert tool_render.for_export(mine, trained_tools=True).startswith("The chat template now also writes tools")
    assert mine.chat_template == tool_render.with_tool_text(tok.chat_template)
    assert tool_render.for_export(mine, trained_tools=True) is None  # it writes tools now: nothing more to do
    native = tok_with(WITH_TOOLS)
    assert tool_render.for_export(native, trained_tools=True) is None and native.chat_template == WITH_TOOLS
    # A template that reads `tools` itself (without writing calls) would write its own text too: left as it was.
    own = "{% if tools %}TOOLS!{% endif %}" + tok.chat_template
    partial = tok_with(own)
    assert tool_render.for_export(partial, trained_tools=True).startswith("The chat template is left as it was")
    assert partial.chat_template == own
