"""A conversation asks each question with the turns before it (core/conversation.py), as far as the context holds."""

from __future__ import annotations

import pytest

from core import inference, repeat_stop
from core.conversation import Conversation
from core.data.tokenize import render_chat


@pytest.fixture(scope="module")
def default_model(default_model_dir):
    return inference.load(default_model_dir)


def test_each_answer_sees_the_turns_before_it(default_model):
    model, tok = default_model
    talk = Conversation()
    first = talk.ask(model, tok, "Hi! I am Ann.", max_new_tokens=24)
    second = talk.ask(model, tok, "What is my name?", max_new_tokens=24)
    assert talk.turns == [{"role": "user", "content": "Hi! I am Ann."}, {"role": "assistant", "content": first},
                          {"role": "user", "content": "What is my name?"}, {"role": "assistant", "content": second}]
    history = [{"role": "user", "content": "Hi! I am Ann."}, {"role": "assistant", "content": first}]
    assert second == inference.reply(model, tok, "What is my name?", max_new_tokens=24, history=history)
    assert second != inference.reply(model, tok, "What is my name?", max_new_tokens=24)  # the history counted
    talk.clear()
    assert talk.ask(model, tok, "What is my name?", max_new_tokens=24) == inference.reply(
        model, tok, "What is my name?", max_new_tokens=24)


def test_the_oldest_turns_go_when_the_context_is_full_and_are_counted(tiny_model_dir):
    """The tiny model has 256 positions; with 100 kept for each answer, three questions of ~45 tokens fill it."""
    model, tok = inference.load(tiny_model_dir)
    talk = Conversation(system="Answer briefly.")
    for i in range(6):
        answer = talk.ask(model, tok, f"Question number {i}: " + "where is the treasure buried, matey? " * 4,
                          max_new_tokens=100)
        assert answer.endswith(repeat_stop.NOTE) and repeat_stop.NOTE not in talk.turns[-1]["content"]
        assert talk.turns[-2]["content"].startswith(f"Question number {i}")
    assert talk.forgotten > 0 and len(talk.turns) + talk.forgotten == 12 and talk.forgotten % 2 == 0
    text = render_chat(tok, inference.messages("next", talk.system, talk.turns), add_generation_prompt=True)
    assert len(tok(text, add_special_tokens=False)["input_ids"]) + 100 <= model.config.max_position_embeddings
    assert text.count("Answer briefly.") == 1  # the system message is never what goes


def test_a_temperature_samples_and_a_seed_repeats_the_sample(default_model):
    import torch

    model, tok = default_model
    prompt = "Write one line of a poem about the sea."
    greedy = Conversation().ask(model, tok, prompt, max_new_tokens=16)
    samples = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        samples.append(Conversation().ask(model, tok, prompt, max_new_tokens=16, temperature=1.2))
    assert samples[0] == samples[1]  # the same seed draws the same answer
    assert greedy not in samples[1:] or samples[0] != samples[2]  # sampling is not the greedy answer every time
