"""Chat formats and the Ollama Modelfile: each family is recognised, and the Go template we write renders
a conversation to exactly the text of the model's own Jinja template (rendered here by a small
interpreter for the Go-template actions we write; Ollama itself is not needed)."""

import re

import pytest

from core.gguf_export import chat_format, modelfile

TEMPLATES = {  # the families as their models write them (shortened), each with its quirks
    "chatml": "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}{{ '<|im_start|>system\nYou are "
              "a helpful pirate.<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
              "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}",
    "llama3": "{{ '<|begin_of_text|>' }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
              "'<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
              "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    "gemma": "{{ '<bos>' }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\n\n' %}"
             "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
             "{% for m in msgs %}{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
             "{{ '<start_of_turn>' + role + '\n' + (sys if loop.first else '') + m['content'] + '<end_of_turn>\n' }}"
             "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}",
    "phi3": "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
}
CHATS = [
    [{"role": "user", "content": "Ahoy!"}],
    [{"role": "system", "content": "Talk like a pirate."}, {"role": "user", "content": "Where is the gold?"},
     {"role": "assistant", "content": "Under the oak."}, {"role": "user", "content": "Which oak?"}],
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from tests.core.gguf_export import tiny

    return AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path_factory.mktemp("tok")))


def go_render(template: str, system: str | None, messages: list[dict]) -> str:
    """Ollama's rendering of the Go-template actions modelfile.go_template writes (and only those)."""
    parts = re.split(r"\{\{\s*(.*?)\s*\}\}", template)
    pos = 0

    def block(ctx, env, run=True):
        nonlocal pos
        out = ""
        while pos < len(parts):
            text, action = parts[pos], parts[pos + 1] if pos + 1 < len(parts) else None
            out += text if run else ""
            pos += 2
            if action is None or action == "end" or action.startswith("else"):
                return out, action
            if action.startswith("range "):
                start, items = pos, ctx["Messages"] if run else [None]
                for item in items:
                    pos = start
                    out += block(item, env, run)[0] if run else ""
                if not items or not run:
                    pos = start
                    block(None, env, False)
            elif action.startswith("if "):
                taken = run and value(action[3:], ctx, env)
                body, stop = block(ctx, env, taken)
                done = taken
                out += body
                while stop and stop.startswith("else"):
                    cond = stop[len("else"):].strip()
                    take = run and not done and (not cond or value(cond[3:], ctx, env))
                    body, stop = block(ctx, env, take)
                    out += body
                    done = done or take
            elif ":=" in action or " = " in action:
                name, _, expr = re.split(r"\s*(:?=)\s*", action, maxsplit=1)
                if run:
                    env[name] = value(expr, ctx, env)
            elif run:
                out += value(action, ctx, env)
        return out, None

    def value(expr, ctx, env):
        if expr.startswith("eq "):
            field, literal = expr[3:].split(" ", 1)
            return value(field, ctx, env) == literal.strip('"')
        if expr.startswith('"'):
            return expr.strip('"')
        if expr.startswith("$"):
            return env[expr]
        return {"System": system or "", **(ctx or {})}[expr.lstrip(".")] if expr != ".System" else system or ""

    return block({"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages if m["role"] != "system"]},
                 {})[0]


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_the_ollama_template_renders_as_the_model_does(family, tokenizer):
    tokenizer.chat_template = TEMPLATES[family]
    detected = chat_format.detect(tokenizer)
    fmt = detected.format
    assert fmt is not None and fmt.family == family, detected.reason
    assert fmt.default_system == ("You are a helpful pirate." if family == "chatml" else None)
    for chat in CHATS:
        system = next((m["content"] for m in chat if m["role"] == "system"), fmt.default_system)
        theirs = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        assert go_render(modelfile.go_template(fmt, writes_bos=False), system, chat) == theirs
        # When the GGUF asks llama.cpp to add BOS, the template leaves it out (never twice).
        assert fmt.begin + go_render(modelfile.go_template(fmt, writes_bos=True), system, chat) == theirs


def test_modelfile_text(tokenizer):
    tokenizer.chat_template = TEMPLATES["chatml"]
    detected = chat_format.detect(tokenizer)
    text = modelfile.modelfile("pirate.q4_k_m.gguf", detected.format, False, "<|im_end|>", detected.reason)
    lines = text.splitlines()
    assert lines[1] == "FROM ./pirate.q4_k_m.gguf"
    assert 'SYSTEM """You are a helpful pirate."""' in lines
    assert lines[-1] == 'PARAMETER stop "<|im_end|>"' and text.count("PARAMETER stop") == 1
    assert text.count('TEMPLATE """') == 1


def test_an_unknown_template_gets_no_template_but_still_stops(tokenizer):
    tokenizer.chat_template = ("{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}### assistant:\n{% endif %}")
    detected = chat_format.detect(tokenizer)
    assert detected.format is None and "not one of the families" in detected.reason
    text = modelfile.modelfile("m.gguf", None, False, "<|im_end|>", detected.reason)
    assert 'TEMPLATE """' not in text and 'PARAMETER stop "<|im_end|>"' in text
