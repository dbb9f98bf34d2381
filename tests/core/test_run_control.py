"""Requests to a trainer through its run folder (core/run_control.py): an ask carries its conversation."""

from __future__ import annotations

import pytest

from core import run_control
from tests.tool_model import CALLED

TURNS = [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": "Ahoy!"}]


def test_an_ask_is_taken_once_with_its_conversation(tmp_path):
    first = run_control.ask(tmp_path, "And again?", 16, TURNS)
    second = run_control.ask(tmp_path, "Alone")
    control = run_control.Control(tmp_path)
    taken = control.take_asks()
    assert [a["id"] for a in taken] == [first, second] and control.take_asks() == []
    assert [run_control.history_of(a) for a in taken] == [TURNS, []]
    assert taken[0]["max_new_tokens"] == 16


@pytest.mark.parametrize("history", [
    None, "text", [{"role": "system", "content": "x"}], [{"role": "user"}], [{"role": "user", "content": 3}], ["x"],
])
def test_a_conversation_that_is_not_user_and_assistant_messages_is_none(history):
    assert run_control.history_of({"prompt": "q", "history": history}) == []


def test_an_ask_after_tool_results_has_no_prompt_and_keeps_the_calls(tmp_path):
    """A conversation whose model called a tool goes on from the result given to it (prompt None)."""
    after = run_control.ask(tmp_path, None, history=CALLED)
    taken = run_control.Control(tmp_path).take_asks()
    assert [a["id"] for a in taken] == [after] and taken[0]["prompt"] is None
    assert run_control.history_of(taken[0]) == CALLED  # the calls' ids and the results' names kept
    bad = [CALLED[0], {**CALLED[1], "tool_calls": [{"function": {"arguments": "{}"}}]}]  # a call with no name
    assert run_control.history_of({"prompt": "q", "history": bad}) == []
