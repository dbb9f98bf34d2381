"""An Ollama Modelfile beside the GGUF, so `ollama create NAME -f Modelfile` works as it is.

The TEMPLATE is written in Ollama's Go-template syntax from the chat format's parts (chat_format.py),
the same parts that were proven to render a probe conversation exactly as the model's own template;
the system prompt becomes Ollama's .System (a default one, like SmolLM2's, becomes SYSTEM), and the
end-of-turn token becomes a stop parameter, so Ollama stops where the model ends its answer.
"""

from __future__ import annotations

from core.gguf_export.chat_format import ChatFormat


def go_template(fmt: ChatFormat, writes_bos: bool) -> str:
    """The chat format as an Ollama template. `writes_bos`: the GGUF asks for BOS to be added at
    tokenization, so a BOS the Jinja template spells out is left to llama.cpp instead (never twice)."""
    begin = "" if writes_bos else fmt.begin
    user = fmt.turn_start.format(role="user")
    assistant = fmt.turn_start.format(role=fmt.assistant_role)
    if fmt.system_turn:
        head = "{{ if .System }}" + fmt.turn("system", "{{ .System }}") + "{{ end }}"
        user_content = "{{ .Content }}"
    else:  # the system text opens the first user turn; $system is emptied once it is used
        head = "{{ $system := .System }}"
        user_content = '{{ if $system }}{{ $system }}\n\n{{ $system = "" }}{{ end }}{{ .Content }}'
    return (begin + head
            + '{{ range .Messages }}{{ if eq .Role "user" }}' + user + user_content + fmt.turn_end
            + '{{ else if eq .Role "assistant" }}' + assistant + "{{ .Content }}" + fmt.turn_end
            + "{{ end }}{{ end }}" + assistant)


def modelfile(gguf_name: str, fmt: ChatFormat | None, writes_bos: bool, stop: str | None, why: str) -> str:
    lines = [f"# Ollama: ollama create NAME -f Modelfile   ({why})", f"FROM ./{gguf_name}", ""]
    if fmt is not None:
        lines += [f'TEMPLATE """{go_template(fmt, writes_bos)}"""', ""]
        if fmt.default_system:
            lines += [f'SYSTEM """{fmt.default_system}"""', ""]
    for token in dict.fromkeys(t for t in (stop, fmt.end_of_turn if fmt else None) if t):
        lines.append(f'PARAMETER stop "{token}"')
    return "\n".join(lines).rstrip() + "\n"
