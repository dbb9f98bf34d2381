"""Function-calling data: every shape people bring reads as the same conversation in the templates' form, and a
row that cannot be a conversation with tools is a located problem in one sentence."""

import json

import pytest

from core.data import dataset
from tests.conftest import write_jsonl

ASK = {"role": "user", "content": "Weather in Lima?"}
ANSWER = {"role": "assistant", "content": "19 degrees."}
CALLED = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "weather", "arguments": {"city": "Lima"}}}]}
RESULT = {"role": "tool", "content": '{"temp": 19}'}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
WANTED = [ASK, CALLED, RESULT, ANSWER]

# name, the row as a file holds it, its messages and tools once read
GOOD = [
    ("OpenAI fine-tuning format", {"messages": [
        ASK, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_7", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Lima"}'}}]},
        {"role": "tool", "tool_call_id": "call_7", "content": '{"temp": 19}'}, ANSWER], "tools": TOOLS},
     [ASK, {**CALLED, "tool_calls": [{**CALLED["tool_calls"][0], "id": "call_7"}]},
      {**RESULT, "tool_call_id": "call_7"}, ANSWER], TOOLS),
    ("OpenAI's older function_call", {"messages": [
        ASK, {"role": "assistant", "function_call": {"name": "weather", "arguments": '{"city": "Lima"}'}},
        {"role": "function", "name": "weather", "content": '{"temp": 19}'}, ANSWER],
        "tools": [{"name": "weather", "parameters": {"type": "object"}}]},
     [ASK, CALLED, {**RESULT, "name": "weather"}, ANSWER], TOOLS),
    ("a result that is an object, arguments already one", {"messages": [
        ASK, {"role": "assistant", "tool_calls": [{"name": "weather", "arguments": {"city": "Lima"}}]},
        {"role": "tool", "content": {"temp": 19}}, ANSWER]},
     WANTED, None),
    ("LLaMA-Factory's ShareGPT", {"conversations": [
        {"from": "human", "value": "Weather in Lima?"},
        {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Lima"}}'},
        {"from": "observation", "value": '{"temp": 19}'}, {"from": "gpt", "value": "19 degrees."}],
        "tools": json.dumps([{"name": "weather", "parameters": {"type": "object"}}])},
     WANTED, TOOLS),
    ("calls written in the answer's text (Hermes' data)", {"conversations": [
        {"from": "human", "value": "Weather in Lima?"},
        {"from": "gpt", "value": '<tool_call>\n{"name": "weather", "arguments": {"city": "Lima"}}\n</tool_call>'},
        {"from": "tool", "value": '{"temp": 19}'}, {"from": "gpt", "value": "19 degrees."}]},
     [ASK, {"role": "assistant", "content": '<tool_call>\n{"name": "weather", "arguments": {"city": "Lima"}}\n'
            "</tool_call>"}, RESULT, ANSWER], None),
    ("a call with words before it, and no answer after its result", {"messages": [
        ASK, {"role": "assistant", "content": "Checking.", "tool_calls": [{"name": "weather", "arguments": None}]}]},
     [ASK, {"role": "assistant", "content": "Checking.", "tool_calls": [
         {"type": "function", "function": {"name": "weather", "arguments": {}}}]}], None),
]


@pytest.mark.parametrize("name,row,messages,tools", GOOD, ids=[g[0] for g in GOOD])
def test_shapes_read_as_one_form(tmp_path, name, row, messages, tools):
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", [row]))
    assert (ds.examples[0].messages, ds.examples[0].tools) == (messages, tools)
    assert ds.problems == [] and ds.warnings == []
    calls = sum(len(m.get("tool_calls", ())) for m in messages)
    assert ds.summary()["tool_use"] == {"rows": 1, "calls": calls, "tools": tools}


def called(*calls, content=None):
    return {"role": "assistant", "content": content, "tool_calls": list(calls)}


# name, the messages, the problem said about the row
BAD = [
    ("arguments that are not JSON", [ASK, called({"name": "weather", "arguments": "{city: Lima}"}), RESULT, ANSWER],
     "message 2 calls weather with arguments that are not JSON; write them as an object"),
    ("arguments that are not an object", [ASK, called({"name": "weather", "arguments": "[1, 2]"}), RESULT, ANSWER],
     'message 2 calls weather with arguments that are not an object; write them as {"parameter": value, ...}'),
    ("a call with no name", [ASK, called({"type": "function", "function": {"arguments": "{}"}}), RESULT, ANSWER],
     "message 2 has a tool call with no function name"),
    ("a result with no call", [ASK, RESULT, ANSWER],
     "message 2 is a tool result with no tool call before it; put the assistant's call first"),
    ("a call with no result", [ASK, called({"name": "weather"}), ASK, ANSWER],
     "message 3 (user) follows a tool call with no tool result; add the tool's answer after the call"),
    ("the user after a result", [ASK, called({"name": "weather"}), RESULT, ASK, ANSWER],
     "message 4 (user) follows a tool result; the assistant answers after tool results"),
]


@pytest.mark.parametrize("name,messages,problem", BAD, ids=[b[0] for b in BAD])
def test_bad_tool_rows_are_located_problems(tmp_path, name, messages, problem):
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", [{"messages": messages}, {"messages": [ASK, ANSWER]}]))
    assert [str(p) for p in ds.problems] == [f"d.jsonl:1: {problem}"]
    assert len(ds.examples) == 1 and "tool_use" not in ds.summary()


def test_tools_that_are_not_functions_are_a_problem(tmp_path):
    rows = [{"messages": [ASK, ANSWER], "tools": {"name": "weather"}},
            {"messages": [ASK, ANSWER], "tools": [{"description": "no name"}]}, {"messages": [ASK, ANSWER]}]
    ds = dataset.load(write_jsonl(tmp_path / "d.jsonl", rows))
    assert [str(p) for p in ds.problems] == [
        "d.jsonl:1: 'tools' is not a list of functions",
        "d.jsonl:2: tool 1 of 'tools' has no function name; write each as "
        '{"name": ..., "description": ..., "parameters": {...}}']


def test_pairs_and_rated_answers_keep_their_calls(tmp_path, tiny_model_dir):
    """A preference pair whose answers call tools (the right call chosen over a wrong one) and a rated answer that
    calls one: read with their tools, and every side tokenized with them, the call the trained part."""
    from transformers import AutoTokenizer

    from core.data import tokenize
    from core.objectives import pairs

    wrong = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "weather", "arguments": {"city": "Lama"}}}]}
    pair = {"prompt": [ASK], "chosen": [CALLED], "rejected": [wrong], "tools": TOOLS}
    ds = dataset.load(write_jsonl(tmp_path / "pairs.jsonl", [pair]))
    e = ds.examples[0]
    assert (ds.format, e.messages, e.rejected, e.tools, ds.warnings) == ("preference", [ASK, CALLED], [ASK, wrong],
                                                                         TOOLS, [])
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = pairs.encode_pairs([e], tok, 4096, "last")
    chosen, rejected = encoded.chosen[0], encoded.rejected[0]
    said = [tok.decode([t for t in r.labels if t != tokenize.IGNORE]) for r in (chosen, rejected)]
    assert said == ['<tool_call>\n{"name": "weather", "arguments": {"city": "Lima"}}\n</tool_call><|im_end|>\n',
                    '<tool_call>\n{"name": "weather", "arguments": {"city": "Lama"}}\n</tool_call><|im_end|>\n']
    assert "<tools>" in tok.decode(rejected.input_ids)  # the rejected side is offered the same tools
    rated = {"messages": [ASK, CALLED], "tools": TOOLS, "label": True}
    ds = dataset.load(write_jsonl(tmp_path / "rated.jsonl", [rated]))
    assert (ds.format, ds.examples[0].messages, ds.examples[0].tools) == ("rated", [ASK, CALLED], TOOLS)
    unpaired = list(pairs.Unpaired([e]))
    assert [u.tools for u in unpaired] == [TOOLS, TOOLS] and list(pairs.Mismatched([e]))[0].tools == TOOLS
