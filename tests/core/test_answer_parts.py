"""An answer after a prompt whose template opened its thinking (core/answer_parts.completed): Qwen 3.5's asks for an
answer with "<think>\\n", so what the model writes begins inside its thinking; shown as decoded, an answer tuned
without thinking read "</think>\\n\\nArr, matey!" and a thinking one lost the opening of its thinking."""

from __future__ import annotations

import pytest

from core.answer_parts import completed, parts
from tests.core.gguf_export.ollama.cases import TEMPLATES


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.core.gguf_export import tiny

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path_factory.mktemp("tok")))
    ask = [{"role": "user", "content": "Where is the gold?"}]
    out = {}
    for family in ("qwen35", "qwen3"):
        tok.chat_template = TEMPLATES[family]
        out[family] = tok.apply_chat_template(ask, tokenize=False, add_generation_prompt=True)
    return out


@pytest.mark.parametrize("decoded,shown", [
    ("</think>\n\nArr, under the oak!", "Arr, under the oak!"),  # tuned without thinking: the empty block goes
    ("The map said oak.\n</think>\n\nUnder the oak.", "<think>\nThe map said oak.\n</think>\n\nUnder the oak."),
    ("Still thinking about the", "<think>\nStill thinking about the"),  # cut off inside its thinking
])
def test_an_answer_after_an_opened_thinking_block_reads_whole(prompts, decoded, shown):
    assert prompts["qwen35"].endswith("<think>\n")
    assert completed(prompts["qwen35"], decoded) == shown
    assert [kind for _, _, kind in parts(shown)] == (["thinking"] if "<think>" in shown else [])


def test_an_answer_after_a_plain_prompt_is_as_written(prompts):
    assert completed(prompts["qwen3"], "</think> is not a tag here") == "</think> is not a tag here"
