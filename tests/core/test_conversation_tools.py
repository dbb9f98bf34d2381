"""Trying a model that calls tools (core/conversation.py): its call is found in its answer, the person gives the
result, and the model goes on from it, the whole conversation rendered as training rendered such a row."""

from __future__ import annotations

import pytest

from core import inference
from core.conversation import Conversation
from core.data import tokenize
from core.data.example import Example
from core.data.formats import tool_calls
from tests.tool_model import TOOLS, row

ADD = {"type": "function", "function": {"name": "add", "arguments": {"a": 36, "b": 7}}}


@pytest.mark.parametrize("text, words, calls", [
    ('<tool_call>\n{"name": "add", "arguments": {"a": 36, "b": 7}}\n</tool_call>', "", [ADD]),  # ours, Hermes, Qwen
    ('Let me add.\n<tool_call>{"name": "add", "arguments": {"a": 36, "b": 7}}</tool_call>', "Let me add.", [ADD]),
    ('<tool_call>{"name": "add", "arguments": {"a": 36, "b": 7}}</tool_call>\n<tool_call>{"name": "add", '
     '"arguments": {"a": 36, "b": 7}}', "", [ADD, ADD]),  # two calls, the last cut short by the token limit
    ('{"name": "add", "parameters": {"a": 36, "b": 7}}', "", [ADD]),  # Llama 3.1: the answer is the call
    ('[{"name": "add", "arguments": {"a": 36, "b": 7}}]', "", [ADD]),  # Mistral, its [TOOL_CALLS] dropped
    ("It is 43.", "It is 43.", []),
    ("<tool_call>add 36 and 7</tool_call>", "<tool_call>add 36 and 7</tool_call>", []),  # not a call: words
    ('{"answer": 43}', '{"answer": 43}', []),  # JSON that calls nothing
    ('{"name": "Ann", "age": 3}', '{"name": "Ann", "age": 3}', []),  # JSON with a name that is no tool offered
])
def test_the_calls_in_an_answer(text, words, calls):
    assert tool_calls.in_answer(text, TOOLS) == (words, calls)


@pytest.fixture(scope="module")
def memorized(tool_model_dir):
    return inference.load(tool_model_dir)


def test_a_call_gets_its_result_and_the_model_answers_with_it(memorized):
    model, tok = memorized
    talk = Conversation(tools=TOOLS)
    called = talk.ask(model, tok, "What is 36 plus 7?", max_new_tokens=40)
    assert "<tool_call>" in called and [tool_calls.shown(c) for c in talk.pending()] == ["add(a=36, b=7)"]
    assert not talk.answered()
    with pytest.raises(ValueError, match="no tool result"):
        talk.go_on(model, tok)
    assert talk.give("43")["function"]["name"] == "add" and talk.answered() and talk.pending() == []
    assert talk.go_on(model, tok, max_new_tokens=16) == "It is 43."  # what it learned to say with the result
    # The conversation is the row it learned, rendered as training rendered it (calls, result, answer).
    trained = tokenize.chat_text(tok, row(36, 7))
    said = tokenize.chat_text(tok, Example(messages=talk.turns, tools=talk.tools))
    assert said == trained
    with pytest.raises(ValueError, match="no tool call is waiting"):
        talk.give("again")


def test_a_new_question_instead_of_a_result_leaves_the_call_out(memorized):
    model, tok = memorized
    talk = Conversation(tools=TOOLS)
    talk.add("Hi", "Hello.")
    talk.add("What is 36 plus 7?", '<tool_call>{"name": "add", "arguments": {"a": 36, "b": 7}}</tool_call>')
    assert talk.pending()
    talk.ask(model, tok, "Hi", max_new_tokens=8)  # asked instead of giving the result
    assert [t["role"] for t in talk.turns] == ["user", "assistant", "user", "assistant"]
    assert all("tool_calls" not in t for t in talk.turns) and talk.forgotten == 0
    talk.add("What is 36 plus 7?", '<tool_call>{"name": "add", "arguments": {"a": 36, "b": 7}}</tool_call>')
    talk.forget_calls()  # no result to give
    assert len(talk.turns) == 4


def test_without_tools_offered_a_call_is_words(memorized):
    talk = Conversation()
    talk.add("What is 36 plus 7?", '<tool_call>{"name": "add", "arguments": {"a": 36, "b": 7}}</tool_call>')
    assert talk.pending() == [] and "tool_calls" not in talk.turns[-1]


def test_a_full_context_leaves_out_whole_exchanges_calls_and_all(memorized):
    """The tiny model has 256 positions: exchanges of a question, a call, its result and an answer are left out
    whole, oldest first, so the conversation never starts with a result; going on after a result keeps its own."""
    model, tok = memorized
    talk = Conversation(tools=TOOLS)
    for i in range(4):
        talk.add(f"What is {i} plus 7? " * 3, '<tool_call>{"name": "add", "arguments": {"a": %d, "b": 7}}'
                                              '</tool_call>' % i)
        talk.give(str(i + 7))
        talk.add(None, f"It is {i + 7}.")
    talk.ask(model, tok, "What is 36 plus 7?", max_new_tokens=60)
    assert talk.forgotten > 0 and talk.forgotten % 4 == 0 and talk.turns[0]["role"] == "user"
    assert talk.pending()  # the memorized call, asked after what was kept
    talk.give("43")
    kept = len(talk.turns)
    talk.go_on(model, tok, max_new_tokens=60)
    assert talk.turns[0]["role"] == "user" and talk.turns[-2]["role"] == "tool" and len(talk.turns) <= kept + 1
