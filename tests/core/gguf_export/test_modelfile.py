"""Chat formats and the Ollama Modelfile: each family is recognised, and the Modelfile says what Ollama needs
(test_ollama_renders.py proves its template renders as the model's own, with Go's text/template)."""

import pytest

from core.gguf_export import chat_format, modelfile
from tests.core.gguf_export.ollama.cases import TEMPLATES


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.core.gguf_export import tiny

    return AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path_factory.mktemp("tok")))


FRAMES = {"llama31": ("Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n", ""),
          "smollm3": ("## Metadata\n\nReasoning Mode: /think\n\n## Custom Instructions\n\n", "\n\n")}


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_each_family_is_recognised(family, tokenizer):
    tokenizer.chat_template = TEMPLATES[family]
    detected = chat_format.detect(tokenizer)
    fmt = detected.format
    named = {"qwen": "chatml", "qwen3": "chatml", "qwen35": "chatml", "smollm3": "chatml", "llama31": "llama3",
             "mistral_inst": "mistral", "mistral_v03": "mistral"}
    assert fmt is not None and fmt.family == named.get(family, family), detected.reason
    assert fmt.default_system == {"chatml": "You are a helpful pirate.", "qwen": "You are Qwen, a helpful assistant.",
                                  "smollm3": "You are a helpful pirate.",
                                  "granite": "Knowledge Cutoff Date: April 2024. You are a helpful pirate.",
                                  "mistral": "You are a helpful pirate."}.get(family)
    # the text a template frames the system text in, read off its system turn with and without one
    assert (fmt.system_prefix, fmt.system_suffix) == FRAMES.get(family, ("", ""))
    # and the text after the answer's opening where the template asks for an answer (Qwen 3.5 opens its thinking)
    assert fmt.generation_suffix == {"qwen35": "<think>\n", "gemma4": "<|channel>thought\n<channel|>"}.get(family, "")
    # and what it writes differently when asked to think (Gemma 4's switch: <|think|> opens the system turn, and no
    # empty thought channel follows the answer's opening)
    assert (fmt.think_prefix, fmt.think_suffix) == {"gemma4": ("<|think|>\n", "")}.get(family, (None, ""))
    asked = [{"role": "user", "content": "Ahoy!"}]
    if fmt.think_prefix is not None:
        assert fmt.thinking().render(asked) == tokenizer.apply_chat_template(
            asked, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    # The parts render as the model's template does (what Ollama makes of the Modelfile: test_ollama_renders.py).
    chat = [{"role": "user", "content": "Ahoy!"}]
    assert fmt.render(chat) == tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def test_modelfile_text(tokenizer):
    tokenizer.chat_template = TEMPLATES["chatml"]
    detected = chat_format.detect(tokenizer)
    text = modelfile.modelfile("pirate.q4_k_m.gguf", detected.format, False, "<|im_end|>", detected.reason)
    lines = text.splitlines()
    assert lines[1] == "FROM ./pirate.q4_k_m.gguf"
    assert 'SYSTEM """You are a helpful pirate."""' in lines
    assert lines[-1] == 'PARAMETER stop "<|im_end|>"' and text.count("PARAMETER stop") == 1
    assert text.count('TEMPLATE """') == 1


def test_gpt_oss_harmony_is_named_and_gets_no_template(tokenizer):
    """Harmony writes <|end|> as Phi-3 does, but is not Phi-3's format: the reason says what it is."""
    tokenizer.chat_template = ("{% for m in messages %}<|start|>{{ m['role'] }}{% if m['role'] == 'assistant' %}"
                               "<|channel|>final{% endif %}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
                               "{% if add_generation_prompt %}<|start|>assistant{% endif %}")
    detected = chat_format.detect(tokenizer)
    assert detected.format is None and detected.reason.startswith("The chat template is gpt-oss's Harmony format")
    assert "phi3" not in detected.reason


def test_an_unknown_template_gets_no_template_but_still_stops(tokenizer):
    tokenizer.chat_template = ("{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}### assistant:\n{% endif %}")
    detected = chat_format.detect(tokenizer)
    assert detected.format is None and "not one of the families" in detected.reason
    text = modelfile.modelfile("m.gguf", None, False, "<|im_end|>", detected.reason)
    assert 'TEMPLATE """' not in text and 'PARAMETER stop "<|im_end|>"' in text
