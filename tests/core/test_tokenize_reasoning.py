"""Answers with reasoning (distilled thinking), read from the fields datasets keep it in and tokenized for four
kinds of template: one that writes the reasoning of every answer (from `thinking`, as gpt-oss's does), one that
writes only the reasoning of the answers after the last question (from `reasoning_content`), one that also writes
an empty thinking block into the last answer (as Qwen 3's does), all three written here, and the default model's,
which writes none, so it goes in front of the answer as <think> text. Either way the reasoning trains with its
answer, and the batched path gives exactly what the per-row reference gives."""

import pytest

from core.data import reasoning, tokenize
from core.data.dataset import Example
from core.data.formats import messages, preference

ROWS = [
    Example(messages=[{"role": "user", "content": "What is 2 plus 3?"},
                      {"role": "assistant", "content": "5.", "reasoning_content": "Two and three make five."}],
            source="r.jsonl:1"),
    Example(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello!", "reasoning_content": "A greeting."},
                      {"role": "user", "content": "Capital of Peru?"},
                      {"role": "assistant", "content": "Lima.", "reasoning_content": "Peru's capital is Lima."}],
            source="r.jsonl:2"),
    Example(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            source="r.jsonl:3"),
]
EVERY = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.thinking %}<|think|>{{ m.thinking }}<|/think|>"
         "{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
         "{% endif %}")
LAST_ONLY = (
    "{% set ns = namespace(last=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.last = loop.index0 %}"
    "{% endif %}{% endfor %}{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' and loop.index0 > ns.last and m.reasoning_content %}"
    "<think>{{ m.reasoning_content }}</think>{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# As Qwen 3's: the thinking of the answers after the last question, and an empty thinking block in the last answer
# when it has none, so that an answer renders differently as the last turn than within the whole conversation.
# It writes tools too (a call's turn may have no words), and results as user turns.
QWEN3 = (
    "{% if tools %}<|im_start|>system\n{% for t in tools %}{{ t.function | tojson }}{% endfor %}<|im_end|>\n{% endif %}"
    "{% set ns = namespace(last=-1) %}{% for m in messages %}{% if m.role == 'user' %}{% set ns.last = loop.index0 %}"
    "{% endif %}{% endfor %}{% for m in messages %}{% if m.role == 'assistant' %}"
    "{% set r = m.reasoning_content if m.reasoning_content is string else '' %}"
    "{% if loop.index0 > ns.last and (loop.last or r) %}<|im_start|>assistant\n<think>\n{{ r }}\n</think>\n\n"
    "{% else %}<|im_start|>assistant\n{% endif %}{{ m.content }}{% for c in m.tool_calls or [] %}"
    "<call>{{ c.function.name }} {{ c.function.arguments | tojson }}</call>{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<result>{{ m.content }}</result><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
TEMPLATES = {"default": None, "every answer": EVERY, "the last answers": LAST_ONLY, "Qwen 3's": QWEN3}
MULTI_TURN = Example(messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                               {"role": "user", "content": "Capital of Peru?"},
                               {"role": "assistant", "content": "Lima."}], source="r.jsonl:4")
ADD = {"type": "function", "function": {"name": "add", "description": "Add two numbers.",
                                        "parameters": {"type": "object"}}}
CALLING = Example(messages=[
    {"role": "user", "content": "What is 2 plus 3?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
    {"role": "tool", "content": "5"}, {"role": "assistant", "content": "5."}], tools=[ADD], source="r.jsonl:5")


def trained(tok, row: tokenize.Encoded) -> str:
    return tok.decode([t for t in row.labels if t != tokenize.IGNORE])


THINKING_PARTS = {  # an answer's content as parts, its thinking one of them
    "anthropic": [{"type": "thinking", "thinking": "Hm.", "signature": "x"}, {"type": "text", "text": "Hello"}],
    "mistral": [{"type": "thinking", "thinking": [{"type": "text", "text": "Hm."}]}, {"type": "text", "text": "Hello"}],
}


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning", "thinking", "anthropic", "mistral"])
def test_reasoning_is_read_from_the_field_that_holds_it(field):
    said = {"content": THINKING_PARTS[field]} if field in THINKING_PARTS else {"content": "Hello", field: "Hm."}
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", **said}]}
    assert messages.convert(row)["messages"][1] == {"role": "assistant", "content": "Hello",
                                                    "reasoning_content": "Hm."}
    if field in THINKING_PARTS:
        return
    pair = preference.convert({"prompt": [{"role": "user", "content": "Hi"}],
                               "chosen": [{"role": "assistant", "content": "Hello", field: "Be kind."}],
                               "rejected": [{"role": "assistant", "content": "Go away"}]})
    assert pair["messages"][-1]["reasoning_content"] == "Be kind." and "reasoning_content" not in pair["rejected"][-1]


def test_reasoning_that_is_not_text_is_a_sentence_and_empty_reasoning_none():
    bad = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi", "reasoning": [1]}]}
    with pytest.raises(ValueError, match=r"^message 2 \(assistant\) has reasoning that is not text$"):
        messages.convert(bad)
    blank = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hi", "thinking": " "}]}
    assert "reasoning_content" not in messages.convert(blank)["messages"][1]


def test_each_kind_of_template_is_found(tok, tok_with):
    assert reasoning.native(tok) == (False, False)  # SmolLM2's prints role and content
    assert reasoning.native(tok_with(EVERY)) == (True, True)  # it reads `thinking`: transformers passes that too
    assert reasoning.native(tok_with(LAST_ONLY)) == (True, False)
    assert reasoning.native(tok_with(QWEN3)) == (True, False)


def test_the_reasoning_trains_with_its_answer(tok, tok_with):
    assert trained(tok, tokenize.encode(ROWS[0], tok, 4096)) == "<think>\nTwo and three make five.\n</think>\n\n5." \
                                                                 "<|im_end|>\n"
    every = tok_with(EVERY)
    assert trained(every, tokenize.encode(ROWS[1], every, 4096)) == ("<|think|>A greeting.<|/think|>Hello!<|im_end|>\n"
                                                                     "<|think|>Peru's capital is Lima.<|/think|>Lima."
                                                                     "<|im_end|>\n")
    # The earlier answer's reasoning is left out of the row as the template leaves it out of the whole.
    last = tok_with(LAST_ONLY)
    assert trained(last, tokenize.encode(ROWS[1], last, 4096)) == ("Hello!<|im_end|>\n<think>Peru's capital is Lima."
                                                                   "</think>Lima.<|im_end|>\n")


@pytest.mark.parametrize("train_on", ["assistant", "last", "all"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_batched_equals_per_row(tok, tok_with, template, train_on, monkeypatch):
    other = tok if TEMPLATES[template] is None else tok_with(TEMPLATES[template])
    monkeypatch.setattr(tokenize, "CHUNK", 2)
    rows = [*ROWS, MULTI_TURN, CALLING] * 2
    assert tokenize.encode_many(rows, other, 4096, train_on) == [tokenize.encode(e, other, 4096, train_on)
                                                                 for e in rows]


def test_an_answer_written_otherwise_as_the_last_turn_is_trained_as_the_whole_writes_it(tok_with):
    """Qwen 3's template writes an empty thinking block into the last answer only: an earlier answer is not a
    prefix of the whole as it renders alone, and is trained as the whole conversation writes it."""
    qwen3 = tok_with(QWEN3)
    assert trained(qwen3, tokenize.encode(MULTI_TURN, qwen3, 4096)) == ("Hello!<|im_end|>\n<think>\n\n</think>\n\n"
                                                                        "Lima.<|im_end|>\n")
    assert trained(qwen3, tokenize.encode(ROWS[1], qwen3, 4096)) == ("Hello!<|im_end|>\n<think>\nPeru's capital is "
                                                                     "Lima.\n</think>\n\nLima.<|im_end|>\n")
    # A call's turn has no words: the tail that the whole holds is the call and its end-of-turn.
    assert trained(qwen3, tokenize.encode(CALLING, qwen3, 4096)) == ('<call>add {"a": 2, "b": 3}</call><|im_end|>\n'
                                                                     "<think>\n\n</think>\n\n5.<|im_end|>\n")


def test_the_note_says_how_the_reasoning_is_written(tok, tok_with):
    assert reasoning.note(tok, 3).startswith("3 conversations have answers with reasoning: the model's chat "
                                             "template has no place for it, so it is written before each answer "
                                             "as <think>...</think>")
    assert reasoning.note(tok_with(EVERY), 1) == ("1 conversation has answers with reasoning: the model's chat "
                                                  "template writes it, and it trains with the answer")
    assert "only for the answers after a conversation's last question" in reasoning.note(tok_with(LAST_ONLY), 2)


@pytest.mark.parametrize("row", [ROWS[1], MULTI_TURN, CALLING_THOUGHT := Example(
    messages=[CALLING.messages[0], {**CALLING.messages[1], "content": "Adding.", "reasoning_content": "A sum."},
              *CALLING.messages[2:]], tools=[ADD], source="r.jsonl:6")], ids=["reasoning", "none", "with a call"])
def test_the_exported_template_writes_reasoning_as_training_did(tok, tok_with, row):
    """The prelude an export puts in front of a template with no place for reasoning renders what training rendered,
    in front of the tools' prelude too (a run whose rows think and call): reasoning first, then the calls."""
    from core.data import tool_render

    exported = tok_with(tok.chat_template)
    tool_render.for_export(exported, trained_tools=True)
    assert reasoning.for_export(exported, trained_thinking=True).startswith("The chat template now also writes")
    assert reasoning.native(exported) == (True, True)  # a later run on the exported model takes it natively
    written, offered = tool_render.written(tok, row.messages, row.tools)
    for generation_prompt in (False, True):
        assert tokenize.render_chat(exported, row.messages, generation_prompt, tools=row.tools) == (
            tokenize.render_chat(tok, written, generation_prompt, tools=offered))
    thinking = [{**m, "thinking": m.pop("reasoning_content")} if "reasoning_content" in m else m
                for m in [dict(m) for m in row.messages]]  # gpt-oss's name for it, as some clients send it
    assert tokenize.render_chat(exported, thinking, tools=row.tools) == tokenize.render_chat(
        exported, row.messages, tools=row.tools)


def test_an_export_takes_the_reasoning_prelude_only_where_it_is_needed(tok, tok_with):
    mine = tok_with(tok.chat_template)
    assert reasoning.for_export(mine, trained_thinking=False) is None and mine.chat_template == tok.chat_template
    assert reasoning.for_export(mine, trained_thinking=True) is not None
    assert reasoning.for_export(mine, trained_thinking=True) is None  # it writes reasoning now: nothing more to do
    native = tok_with(QWEN3)
    assert reasoning.for_export(native, trained_thinking=True) is None and native.chat_template == QWEN3
    # A template that names what the prelude keeps in its own variables renders otherwise: left as it was.
    own = "{% if tr is defined %}Taken.{% endif %}" + tok.chat_template
    clash = tok_with(own)
    assert reasoning.for_export(clash, trained_thinking=True).startswith("The chat template is left as it was")
    assert clash.chat_template == own
