"""The tool-call measure (core.evaluation.calls): a model that learned a row's call makes it exactly, and the same
model asked for a call it never learned (other arguments) does not; rows without calls are not asked."""

import pytest

from core import evaluation
from core.data.example import Example
from tests.tool_model import TOOLS, row


@pytest.fixture(scope="module")
def memorized(tool_model_dir):
    """The tiny model trained on one tool row until it knows it by heart (tests/tool_model.py)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tool_model_dir, dtype=torch.float32),
            AutoTokenizer.from_pretrained(tool_model_dir))


def test_the_learned_call_is_right_and_another_is_not(memorized):
    model, tok = memorized
    assert evaluation.calls(model, tok, [row(36, 7, "learned")]) == evaluation.Calls(asked=1, right=1)
    assert evaluation.calls(model, tok, [row(12, 30, "never seen")]).right == 0  # the learned numbers come out
    plain = Example(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}])
    assert evaluation.calls(model, tok, [plain, row(36, 7, "a"), plain, row(12, 30, "b"), row(36, 7, "c")],
                            limit=2) == evaluation.Calls(asked=2, right=1)  # rows without tools are not asked
    assert not model.training  # asked in eval mode, left as it was


def test_a_call_where_none_is_due_is_counted(memorized, tiny_model_dir):
    """Asked the question it learned to answer with a call, where this row's answer needs none, the model calls;
    the untrained model never writes the opening of a call."""
    from transformers import AutoModelForCausalLM

    model, tok = memorized
    needs_none = Example(messages=[{"role": "user", "content": "What is 36 plus 7?"},
                                   {"role": "assistant", "content": "43."}], tools=TOOLS)
    assert evaluation.call_opening(tok)[0] == "<tool_call>\n{\"name\": \""  # the default template: ours, as text
    assert evaluation.calls(model, tok, [needs_none, row(36, 7, "learned")]) == evaluation.Calls(1, 1, 1, 1)
    untrained = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert evaluation.calls(untrained, tok, [needs_none]) == evaluation.Calls(plain=1, called=0)


def test_the_opening_of_a_call_is_the_templates(default_model_dir):
    import copy

    from transformers import AutoTokenizer

    from tests.core.test_tokenize_tools import WITH_TOOLS

    tok = copy.deepcopy(AutoTokenizer.from_pretrained(default_model_dir))
    tok.chat_template = WITH_TOOLS
    assert evaluation.call_opening(tok)[0] == "<call>"


def test_turns_are_the_runs_of_trained_tokens():
    assert evaluation._runs([-100, 5, 6, -100, -100, 7, -100, 8]) == [(1, 3), (5, 6), (7, 8)]
    assert evaluation._runs([-100, -100]) == []

