"""A greedy reply that loops stops there and says so (core/repeat_stop.py); one that does not, runs as before."""

import pytest

from core import repeat_stop

A, B, C = 11, 22, 33


@pytest.mark.parametrize("tokens, loops", [
    ([], False),
    ([A] * 15, False),  # one token: sixteen times before it counts
    ([A] * 16, True),
    ([C] + [A, B] * 8, True),  # a block of two, eight times, after anything
    ([A, B] * 7 + [A], False),  # fifteen tokens of it
    ([A, B, C] * 5 + [A], False),  # ends mid-block: it has not come round yet
    ([A, B, C] * 6, True),
    (list(range(10)) * 3, True),  # a sentence of ten tokens said three times
    (list(range(10)) * 2 + list(range(9)), False),  # and only twice, then most of it
    (list(range(70)) * 3, False),  # a block longer than LONGEST_BLOCK (a repeated paragraph) is not looked for
    (list(range(100)), False),
    ([A, B, A, C] * 4, True),  # the block is the four tokens
])
def test_a_loop_is_one_block_said_back_to_back(tokens, loops):
    assert repeat_stop.loops(tokens) is loops


@pytest.fixture(scope="module")
def looping_model(tiny_model_dir):
    """A 2-layer random Llama: greedy, it falls into a loop within a few tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return (AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(str(tiny_model_dir)))


def test_generation_stops_at_the_third_round_of_a_loop(looping_model):
    import torch

    model, tok = looping_model
    enc = tok("Where is the gold?", return_tensors="pt")
    start = enc["input_ids"].shape[1]
    with torch.no_grad():
        plain = model.generate(**enc, max_new_tokens=100, do_sample=False)[0, start:].tolist()
        stop = repeat_stop.criterion(start)
        guarded = model.generate(**enc, max_new_tokens=100, do_sample=False, stopping_criteria=[stop])[0, start:]
    guarded = guarded.tolist()
    assert len(plain) == 100 and repeat_stop.loops(plain)  # unguarded, it loops to the limit
    assert stop.fired and len(guarded) < 100 and guarded == plain[:len(guarded)]  # the same words, cut short
    assert repeat_stop.loops(guarded) and not repeat_stop.loops(guarded[:-1])  # cut as soon as it loops


def test_a_looping_reply_says_it_was_stopped_and_a_plain_one_does_not(looping_model, default_model_dir):
    from core import inference

    model, tok = looping_model
    assert inference.reply(model, tok, "Where is the gold?", max_new_tokens=100).endswith(repeat_stop.NOTE)
    base, tok = inference.load(default_model_dir)
    answer = inference.reply(base, tok, "What is the capital of Peru?", max_new_tokens=40)
    assert "Lima" in answer and repeat_stop.NOTE not in answer
