"""Fixtures the tokenizing tests share: the default model's tokenizer, and copies of it with another template."""

import copy

import pytest


@pytest.fixture(scope="module")
def tok(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


@pytest.fixture
def tok_with(tok):
    """make(template): a copy of the default tokenizer whose chat template is `template`."""
    def make(template):
        other = copy.deepcopy(tok)
        other.chat_template = template
        return other

    return make
