"""The conversations an exported Modelfile's template is checked on, in the shapes Ollama's /api/chat takes:
one JSON line each on standard output, for render.go (Go's text/template, as Ollama runs it) to render into
golden.jsonl. `python -m tests.core.gguf_export.ollama.cases | go run tests/core/gguf_export/ollama/render.go`.

TEMPLATES are the chat families as their models write them (shortened, each with its quirks); VARIANTS the
conversations (in our data's shape, OpenAI's) that go through each kind of Modelfile template: for a run that
learned no tools, one that learned tool calls (written as text: tool_render.as_text), one whose answers carried
their thinking (reasoning.as_text), and one that learned both; some asked with Ollama's think set (to false: a
template's enable_thinking=False, or to true).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

TEMPLATES = {
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
    # As Llama 3.1's: a system turn always, its text after a fixed preamble (the knowledge and today's dates).
    "llama31": "{{ '<|begin_of_text|>' }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
               "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
               "{{ '<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: "
               "26 Jul 2024\n\n' + sys + '<|eot_id|>' }}{% for m in msgs %}{{ '<|start_header_id|>' + m['role'] + "
               "'<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
    # As SmolLM3's: ChatML whose system text sits between a metadata header and a blank line, a default in its place.
    "smollm3": "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
               "{% set msgs = messages[1:] %}{% else %}{% set sys = 'You are a helpful pirate.' %}"
               "{% set msgs = messages %}{% endif %}{{ '<|im_start|>system\n## Metadata\n\nReasoning Mode: /think\n\n'"
               " + '## Custom Instructions\n\n' + sys + '\n\n<|im_end|>\n' }}{% for m in msgs %}{{ '<|im_start|>' + "
               "m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
               "{{ '<|im_start|>assistant\n' }}{% endif %}",
    # As Granite 3's: roles between markers, turns ended by the end-of-text token, a dated default system text.
    "granite": "{% if messages[0]['role'] != 'system' %}{{ '<|start_of_role|>system<|end_of_role|>Knowledge Cutoff "
               "Date: April 2024. You are a helpful pirate.<|end_of_text|>\n' }}{% endif %}{% for m in messages %}"
               "{{ '<|start_of_role|>' + m['role'] + '<|end_of_role|>' + m['content'] + '<|end_of_text|>\n' }}"
               "{% endfor %}{% if add_generation_prompt %}{{ '<|start_of_role|>assistant<|end_of_role|>' }}{% endif %}",
    # As Gemma 4's: turns of their own markers, a system turn, and an empty thought channel after the answer's opening
    # unless asked to think (then "<|think|>" opens the system turn instead).
    "gemma4": "{{ '<bos>' }}{% if enable_thinking is defined and enable_thinking %}{{ '<|turn>system\n<|think|>\n' }}"
              "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% endif %}{{ '<turn|>\n' }}"
              "{% elif messages[0]['role'] == 'system' %}{{ '<|turn>system\n' + messages[0]['content'] + '<turn|>\n' }}"
              "{% endif %}{% for m in messages %}{% if m['role'] != 'system' %}"
              "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
              "{{ '<|turn>' + role + '\n' + m['content'] + '<turn|>\n' }}{% endif %}{% endfor %}"
              "{% if add_generation_prompt %}{{ '<|turn>model\n' }}{% if not (enable_thinking is defined and "
              "enable_thinking) %}{{ '<|channel>thought\n<channel|>' }}{% endif %}{% endif %}",
    # As Mistral Small 3's: a system prompt of its own (a default one where none is given), questions in [INST], each
    # answer ended by the end-of-sequence text, nothing written to ask for an answer.
    "mistral": "{{ '<s>' }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
               "{% set msgs = messages[1:] %}{% else %}{% set sys = 'You are a helpful pirate.' %}"
               "{% set msgs = messages %}{% endif %}{{ '[SYSTEM_PROMPT]' + sys + '[/SYSTEM_PROMPT]' }}"
               "{% for m in msgs %}{% if m['role'] == 'user' %}{{ '[INST]' + m['content'] + '[/INST]' }}"
               "{% else %}{{ m['content'] + '</s>' }}{% endif %}{% endfor %}",
    # As Mistral Nemo's and 7B's: no system turn; the system text opens the last message where that is a question
    # (so a conversation that ends with an answer has none), and tools of their own format, which we do not write.
    "mistral_inst": "{{ '<s>' }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
                    "{% set msgs = messages[1:] %}{% else %}{% set msgs = messages %}{% endif %}"
                    "{% for m in msgs %}{% if m['role'] == 'user' %}{% if loop.last and sys is defined %}"
                    "{{ '[INST]' + sys + '\n\n' + m['content'] + '[/INST]' }}{% else %}"
                    "{{ '[INST]' + m['content'] + '[/INST]' }}{% endif %}{% elif m['role'] == 'assistant' %}"
                    "{{ m['content'] + '</s>' }}{% endif %}{% endfor %}",
    # As Mistral 7B v0.3's: Nemo's, with a space after [INST] and before each answer, none after the last question.
    "mistral_v03": "{{ '<s>' }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
                   "{% set msgs = messages[1:] %}{% else %}{% set msgs = messages %}{% endif %}"
                   "{% for m in msgs %}{% if m['role'] == 'user' %}{% if loop.last and sys is defined %}"
                   "{{ '[INST] ' + sys + '\n\n' + m['content'] + '[/INST]' }}{% else %}"
                   "{{ '[INST] ' + m['content'] + '[/INST]' }}{% endif %}{% elif m['role'] == 'assistant' %}"
                   "{{ ' ' + m['content'] + '</s>' }}{% endif %}{% endfor %}",
    "phi3": "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}",
    # As Qwen 2.5's: ChatML with a default system text, which it keeps when it lists tools, each the whole tool
    # object after a newline; calls and results as Hermes made common, a run of results in one user turn.
    "qwen": "{% set default = 'You are Qwen, a helpful assistant.' %}{% if tools %}<|im_start|>system\n"
            "{% if messages[0].role == 'system' %}{{ messages[0].content }}{% else %}{{ default }}{% endif %}"
            "{{ '\\n\\n' }}# Tools\n\nYou may call functions.\n<tools>"
            "{% for t in tools %}{{ '\\n' }}{{ t | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\n"
            "Call one as <tool_call>\n{\"name\": <name>, \"arguments\": <arguments>}\n</tool_call>"
            "<|im_end|>\n{% elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}"
            "<|im_end|>\n{% else %}<|im_start|>system\n{{ default }}<|im_end|>\n{% endif %}"
            "{% for m in messages %}{% if m.role == 'user' or (m.role == 'assistant' and not m.tool_calls) %}"
            "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% elif m.role == 'assistant' %}"
            "<|im_start|>assistant{% if m.content %}{{ '\\n' }}{{ m.content }}{% endif %}{% for c in m.tool_calls %}"
            "{{ '\\n' }}<tool_call>\n{\"name\": \"{{ c.function.name }}\", \"arguments\": "
            "{{ c.function.arguments | tojson }}}"
            "\n</tool_call>{% endfor %}<|im_end|>\n{% elif m.role == 'tool' %}"
            "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
            "{{ '\\n' }}<tool_response>\n{{ m.content }}\n</tool_response>"
            "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{% endif %}{% endif %}"
            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    # As Qwen 3's: no default system text; tools as Qwen 2.5's; the thinking of the answers after the last question
    # alone, in front of the whole turn ("\n\n" after it always), and calls after the words.
    "qwen3": "{% if tools %}<|im_start|>system\n{% if messages[0].role == 'system' %}{{ messages[0].content }}"
             "{{ '\\n\\n' }}{% endif %}# Tools\n\nCall these.\n<tools>{% for t in tools %}{{ '\\n' }}{{ t | tojson }}"
             "{% endfor %}{{ '\\n' }}</tools><|im_end|>\n{% elif messages[0].role == 'system' %}<|im_start|>system\n"
             "{{ messages[0].content }}<|im_end|>\n{% endif %}{% set ns = namespace(last=-1) %}{% for m in messages %}"
             "{% if m.role == 'user' %}{% set ns.last = loop.index0 %}{% endif %}{% endfor %}{% for m in messages %}"
             "{% if m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n{% elif m.role == 'assistant' %}"
             "{% set r = m.reasoning_content if m.reasoning_content is string else '' %}<|im_start|>assistant\n"
             "{% if loop.index0 > ns.last and (loop.last or r) %}<think>\n{{ r }}\n</think>{{ '\\n\\n' }}{% endif %}"
             "{{ m.content }}{% for c in m.tool_calls or [] %}"
             "{% if not loop.first or m.content %}{{ '\\n' }}{% endif %}"
             "<tool_call>\n{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}"
             "\n</tool_call>{% endfor %}<|im_end|>\n{% elif m.role == 'tool' %}"
             "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user{% endif %}"
             "{{ '\\n' }}<tool_response>\n{{ m.content }}\n</tool_response>"
             "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{% endif %}{% endif %}"
             "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
             "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
             "{% endif %}",
}
# As Qwen 3.5's: its models think unless told not to, so the answer's opening is followed by "<think>\n" (the
# Modelfile's generation_suffix), or by an empty thinking block; each answer after the last question has its thinking
# block, empty or not. The tools are listed first, with the system text after them, and calls are written as XML: a
# <parameter> block for each argument (a string as it is, a list or object as JSON, else Jinja's `string`), "\n\n"
# between the answer's words and them. Texts are trimmed; results that answer a call are not a question.
TEMPLATES["qwen35"] = (
    "{% if tools %}<|im_start|>system\n# Tools\n\nYou may call these:\n\n<tools>{% for t in tools %}{{ '\\n' }}"
    "{{ t | tojson }}{% endfor %}{{ '\\n' }}</tools>\n\nCall one as:\n\n<tool_call>\n<function=example>\n"
    "<parameter=example_key>\nvalue\n</parameter>\n</function>\n</tool_call>"
    "{% if messages[0].role == 'system' and messages[0].content | trim %}{{ '\\n\\n' + messages[0].content | trim }}"
    "{% endif %}<|im_end|>\n"
    "{% elif messages[0].role == 'system' %}"
    "{{ '<|im_start|>system\\n' + messages[0].content | trim + '<|im_end|>\\n' }}"
    "{% endif %}{% set ns = namespace(tool=true, last=messages | length - 1) %}"
    "{% for m in messages[::-1] %}{% set c = m.content | trim %}"
    "{% if ns.tool and m.role == 'user' and not (c.startswith('<tool_response>') and c.endswith('</tool_response>')) %}"
    "{% set ns.tool = false %}{% set ns.last = messages | length - 1 - loop.index0 %}{% endif %}{% endfor %}"
    "{% for m in messages %}{% set c = m.content | trim %}"
    "{% if m.role == 'user' %}{{ '<|im_start|>user\\n' + c + '<|im_end|>\\n' }}"
    "{% elif m.role == 'assistant' %}"
    "{% set r = (m.reasoning_content if m.reasoning_content is string else '') | trim %}"
    "{% if loop.index0 > ns.last %}{{ '<|im_start|>assistant\\n<think>\\n' + r + '\\n</think>\\n\\n' + c }}"
    "{% else %}{{ '<|im_start|>assistant\\n' + c }}{% endif %}"
    "{% for call in m.tool_calls or [] %}{% set f = call.function %}"
    "{% if not loop.first %}{{ '\\n' }}{% elif c %}{{ '\\n\\n' }}{% endif %}"
    "{{ '<tool_call>\\n<function=' + f.name + '>\\n' }}"
    "{% for k, v in f.arguments | items %}{{ '<parameter=' + k + '>\\n' }}"
    "{{ v | tojson if v is mapping or (v is sequence and v is not string) else v | string }}"
    "{{ '\\n</parameter>\\n' }}{% endfor %}{{ '</function>\\n</tool_call>' }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{% elif m.role == 'tool' %}{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user"
    "{% endif %}{{ '\\n<tool_response>\\n' + c + '\\n</tool_response>' }}"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{% endif %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% else %}<think>\n"
    "{% endif %}{% endif %}")

TOOLS = [{"type": "function", "function": {
              "name": "add", "description": "Add two whole numbers.",
              "parameters": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                             "required": ["a", "b"]}}},
         {"type": "function", "function": {
              "name": "capital", "description": "The capital city of a country, as <city> & \"name\".",
              "parameters": {"type": "object", "properties": {"country": {"type": "string"}},
                             "required": ["country"]}}},
         {"type": "function", "function": {
              "name": "find", "description": "Find ports.", "parameters": {"type": "object", "properties": {
                  "near": {"type": "array"}, "open": {"type": "boolean"}, "within": {"type": "object"},
                  "flag": {"type": "string"}, "km": {"type": "number"}, "cargo": {"type": ["string", "null"]}}}}}]


def _call(name: str, **arguments) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


TO_THINK = "asked to think"  # with Ollama's think: true (enable_thinking=True: Gemma 4's switch)
ASK = {"role": "user", "content": "What is 39 plus 18?"}
CALLED = {"role": "assistant", "content": "", "tool_calls": [_call("add", a=39, b=18)]}
TOOL_CHATS = {  # name: (messages, tools)
    "no call yet": ([ASK], TOOLS),
    TO_THINK: ([ASK], TOOLS),
    "a call and its result": ([ASK, CALLED, {"role": "tool", "content": "57"}], TOOLS),
    "answered, then asked again": ([{"role": "system", "content": "Talk like a pirate."}, ASK, CALLED,
                                    {"role": "tool", "content": "57"},
                                    {"role": "assistant", "content": "Arr, 57!"},
                                    {"role": "user", "content": "And the capital of Peru?"}], TOOLS),
    "two calls with words, two results": ([
        {"role": "user", "content": "Add 1 and 2, and name Peru's capital."},
        {"role": "assistant", "content": "Two tools, matey.",
         "tool_calls": [_call("add", b=2, a=1), _call("capital", country="Peru <Lima?>")]},
        {"role": "tool", "content": "3"}, {"role": "tool", "content": "Lima"}], TOOLS),
    # each kind of argument value: Qwen 3.5's writes a string as it is, a list or object as JSON, the rest as Python
    # writes it (True, None), and the others all as JSON
    "arguments of every kind": ([ASK, {"role": "assistant", "content": "Searching.", "tool_calls": [_call(
        "find", near=[1.5, -2], open=True, within={"km": 10, "port": "<Callao>"}, flag="a & b\nc", km=2.5,
        cargo=None)]}, {"role": "tool", "content": "Callao"}], TOOLS),
    "tools offered, none called": ([ASK, {"role": "assistant", "content": "57, matey."},
                                    {"role": "user", "content": "Thanks!"}], TOOLS),
    "no tools": ([{"role": "user", "content": "Ahoy!"}, {"role": "assistant", "content": "Arr!"},
                  {"role": "user", "content": "Where?"}], None),
}
THOUGHT = "reasoning_content"  # where our data keeps an answer's thinking (core/data/reasoning.py)
NOT_THINKING = "asked not to think"  # with Ollama's think: false (a template's enable_thinking=False)
THINKING_CHATS = {  # for the template of a run whose answers carried their thinking
    "one question": ([ASK], None),
    NOT_THINKING: ([ASK], None),
    "thought, then asked again": ([ASK, {"role": "assistant", "content": "Arr, 57!", THOUGHT: "39 plus 18 is 57."},
                                   {"role": "user", "content": "And 2 plus 2?"}], None),
}
THINKING_TOOL_CHATS = {  # and that of a run that also learned tool calls
    "thought, then called": ([ASK, {**CALLED, THOUGHT: "A sum: add can do it."},
                              {"role": "tool", "content": "57"}], TOOLS),
    "thought, said, called": ([ASK, {**CALLED, "content": "Adding, matey.", THOUGHT: "A sum."},
                               {"role": "tool", "content": "57"}, {"role": "assistant", "content": "Arr, 57!"},
                               {"role": "user", "content": "Thanks!"}], TOOLS),
    "tools offered, thought and answered": ([ASK, {"role": "assistant", "content": "57.", THOUGHT: "Easy."},
                                             {"role": "user", "content": "Sure?"}], TOOLS),
}
VARIANTS = {  # (tools, thinking): the conversations each template is checked on
    (False, False): {
        "one question": ([{"role": "user", "content": "Ahoy!"}], None),
        TO_THINK: ([{"role": "system", "content": "Talk like a pirate."}, {"role": "user", "content": "Ahoy!"}], None),
        "with a system text": ([{"role": "system", "content": "Talk like a pirate."},
                                {"role": "user", "content": "Where is the gold?"},
                                {"role": "assistant", "content": "Under the oak."},
                                {"role": "user", "content": "Which oak?"}], None)},
    (True, False): TOOL_CHATS,
    (False, True): THINKING_CHATS,
    (True, True): {**THINKING_TOOL_CHATS, "a call and its result": TOOL_CHATS["a call and its result"]},
}


def ollama_messages(messages: list[dict], default_system: str | None) -> list[dict]:
    """A conversation as a client sends it to Ollama, with the Modelfile's SYSTEM in front where it has none
    (as Ollama puts it there)."""
    out = [{"role": "system", "content": default_system}] if default_system and not any(
        m["role"] == "system" for m in messages) else []
    for m in messages:
        if "tool_calls" in m:
            out.append({"role": m["role"], "content": m["content"], "tool_calls": [
                {"function": {"index": i, "name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                for i, c in enumerate(m["tool_calls"])]})
        else:
            out.append({"role": m["role"], "content": m["content"]})
        if THOUGHT in m:
            out[-1]["thinking"] = m[THOUGHT]
    return out


def formats() -> dict:
    """Each family's chat format as export detects it (chat_format.detect on a tokenizer with its template), the
    tokenizer, and the parts in which its exported template writes tools (template_parts.tools: the family's own, or
    ours in front of a template with none, as for a run that learned calls written as text) and thinking (its own
    where it writes any, else reasoning.as_text's, as for a run whose answers carried their reasoning)."""
    from transformers import AutoTokenizer

    from core.data import reasoning, tool_render
    from core.gguf_export import chat_format, template_parts
    from tests.core.gguf_export import tiny

    with tempfile.TemporaryDirectory() as folder:
        folder = tiny.byte_level(Path(folder))
        found = {}
        for family, template in TEMPLATES.items():
            tok = AutoTokenizer.from_pretrained(folder)
            tok.chat_template = template
            fmt = chat_format.detect(tok).format
            exported = AutoTokenizer.from_pretrained(folder)
            exported.chat_template = template if tool_render.native(tok) else tool_render.with_tool_text(template)
            tools = template_parts.tools(exported, fmt)
            found[family] = (fmt, tok, tools, template_parts.thinking(exported, fmt, tools) or reasoning.AS_TEXT)
    return found


_SAID = {(False, False): "", (True, False): " with tools", (False, True): " thinking",
         (True, True): " with tools thinking"}


def cases(found: dict | None = None):
    from core.gguf_export import modelfile

    for family, (fmt, _, tool_parts, think_parts) in (found or formats()).items():
        for (tools, thinking), chats in VARIANTS.items():
            if tools and tool_parts is None:  # a family whose tools we do not write: no template offers them
                continue
            # A template that writes a thinking block, empty or not, for each answer after the last question (Qwen
            # 3.5's) has its thinking parts wherever it offers tools (an answer that called one comes before the
            # results), as export gives them: found for every run, thinking or not.
            thinks = thinking or (tools and think_parts.empty)
            template = modelfile.go_template(fmt, writes_bos=False, tools=tool_parts if tools else None,
                                             thinking=think_parts if thinks else None)
            for name, (messages, offered) in chats.items():
                yield {"name": f"{family}{_SAID[tools, thinking]}: {name}", "template": template,
                       "tools": offered or [], "messages": ollama_messages(messages, fmt.default_system),
                       "think_set": name in (NOT_THINKING, TO_THINK), "think": name == TO_THINK}



def chat(name: str) -> tuple[list[dict], list[dict] | None]:
    """The conversation and tools of a case, by its name."""
    variant = (" with tools" in name, " thinking:" in name)
    return VARIANTS[variant][name.split(": ", 1)[1]]


if __name__ == "__main__":
    for case in cases():
        sys.stdout.write(json.dumps(case, ensure_ascii=False) + "\n")
