"""The batched path gives exactly what the per-row reference gives, for the default model's template
and for templates that defeat the one-render shortcut (which must then fall back, not guess)."""

import pytest

from core.data import tokenize
from core.data.chat_spans import ChatRenderer
from core.data.dataset import Example
from core.errors import DatasetError


def chat(*turns, system=None):
    messages = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return Example(messages=messages, source=f"row-{len(turns)}-{turns[0][:8]}")


ROWS = [
    chat("What is 2 plus 2?", "Arr, four."),
    chat("Hi", "Hello!", "And again?", "Again, hello.", system="Be a pirate."),
    chat("  padded question \n", "\n\nanswer with leading newlines  "),
    chat("Ünïcödé ☃ 東京 🌊", "Ça va très bien, merci — 日本語も。"),
    chat("a {{ b }} {% c %} <|im_start|> literal", "<think>hidden?</think>shown"),
    chat("long " * 300, "answer " * 300),  # truncated at every seq_len below
    chat("q1", "a1", "q2", "a2", "q3", "a3", system="sys"),
    Example(text="Plain text, every token trained.", source="text-1"),
    Example(text="word " * 400, source="text-long"),
]


@pytest.mark.parametrize("seq_len", [16, 64, 4096])
@pytest.mark.parametrize("train_on", ["assistant", "last", "all"])
def test_batched_equals_per_row(tok, seq_len, train_on, monkeypatch):
    monkeypatch.setattr(tokenize, "CHUNK", 4)  # several batches in flight at once
    expected = [tokenize.encode(e, tok, seq_len, train_on) for e in ROWS]
    assert tokenize.encode_many(ROWS, tok, seq_len, train_on) == expected
    kept = [e for e in expected if any(t != tokenize.IGNORE for t in e.labels[1:])]
    assert tokenize.encode_all(ROWS, tok, seq_len, train_on) == kept


def test_last_trains_the_final_answer_alone(tok):
    """A pair objective's runs (train_on="last"): the final assistant turn is labelled as with "assistant", the
    ones before it are prompt."""
    row = chat("q1", "first answer", "q2", "second answer", system="sys")
    every, last = (tokenize.encode(row, tok, 4096, how) for how in ("assistant", "last"))
    assert every.input_ids == last.input_ids
    trained = lambda e: tok.decode([t for t in e.labels if t != tokenize.IGNORE])
    assert trained(every).startswith("first answer") and trained(last) == "second answer<|im_end|>\n" \
        == trained(every)[trained(every).index("second"):]
    assert tokenize.encode(ROWS[0], tok, 4096, "last") == tokenize.encode(ROWS[0], tok, 4096, "assistant")


def test_lengths_are_the_untruncated_lengths(tok):
    assert tokenize.token_lengths(ROWS, tok) == [len(tokenize.encode(e, tok, 10**9).input_ids) for e in ROWS]


def test_the_default_template_takes_one_render_per_row(tok, monkeypatch):
    renderer = ChatRenderer(tok)
    assert renderer.fast
    calls = []
    monkeypatch.setattr("core.data.chat_spans.trained_spans", lambda *a: calls.append(a))
    full = tokenize.render_chat(tok, ROWS[1].messages)
    renderer.spans(ROWS[1].messages, full)  # the shape's skeleton was rendered by the probes already
    assert not calls


TRIMMING = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Writes a marker after the last message only: in a prefix it lands mid-conversation, so a turn cannot be located.
NOT_PREFIX_STABLE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                     "{% if not add_generation_prompt %}<|endoftext|>{% endif %}"
                     "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Rewrites a message's content depending on what it holds, which no probe can foresee.
CONTENT_DEPENDENT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                     "{% if 'secret' in m['content'] %}[hidden]{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n"
                     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_trimming_template_is_caught_by_the_probes(tok_with):
    other = tok_with(TRIMMING)
    assert not ChatRenderer(other).fast
    chats = [e for e in ROWS if e.messages]
    assert tokenize.encode_many(chats, other, 64) == [tokenize.encode(e, other, 64) for e in chats]


def test_content_the_template_rewrites_falls_back_per_row(tok_with):
    other = tok_with(CONTENT_DEPENDENT)
    assert ChatRenderer(other).fast  # the probes hold no secret, so only the row check can see it
    rows = [chat("tell me", "the secret is out"), chat("tell me", "nothing to hide")]
    assert tokenize.encode_many(rows, other, 64) == [tokenize.encode(e, other, 64) for e in rows]


def test_a_template_that_is_not_prefix_stable_is_refused_the_same_way(tok_with):
    other = tok_with(NOT_PREFIX_STABLE)
    multi_turn = ROWS[1]
    with pytest.raises(DatasetError, match="not prefix-stable"):
        tokenize.encode(multi_turn, other, 64)
    with pytest.raises(DatasetError, match="not prefix-stable"):
        tokenize.encode_many([ROWS[0], multi_turn], other, 64)
    assert tokenize.encode_many(ROWS, other, 64, "all") == [tokenize.encode(e, other, 64, "all") for e in ROWS]


def test_no_chat_template_is_one_sentence(tok_with):
    with pytest.raises(DatasetError, match="no chat template"):
        tokenize.encode_many(ROWS[:1], tok_with(None), 64)
