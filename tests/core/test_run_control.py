"""Requests to a trainer through its run folder (core/run_control.py): an ask carries its conversation."""

from __future__ import annotations

import pytest

from core import run_control

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
