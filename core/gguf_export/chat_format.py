"""The chat format a model was trained on, recognised from its Jinja chat template, in parts other
runtimes can be told: Ollama's Go template (modelfile.py) and the end-of-turn token llama.cpp must stop on.

Why this matters: a GGUF that loses the end-of-turn token generates forever, the commonest failure of
exported fine-tunes. A family is recognised by its markers, then proven: our parts must render a probe
conversation to exactly the text the model's own template renders. Only then is the format used; a
template we cannot reproduce is reported as such, never guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

PROBE_SYSTEM = "You answer briefly."
PROBE = [{"role": "user", "content": "Hello there."}, {"role": "assistant", "content": "Hi! How can I help?"},
         {"role": "user", "content": "Tell me a joke."}]


@dataclass(frozen=True)
class ChatFormat:
    family: str  # "chatml", "llama3", "gemma", "gemma4", "phi3", "granite", "mistral"
    turn_start: str  # text opening a turn, with {role}
    turn_end: str  # text closing a turn
    end_of_turn: str  # the token that ends the assistant's turn: llama.cpp's eos, Ollama's stop
    begin: str = ""  # text before the first turn (a BOS the template writes itself)
    assistant_role: str = "assistant"
    system_turn: bool = True  # False: the system text opens the first user turn (Gemma)
    # with system_turn False: the system text opens the last message instead, and only where that is a question (Mistral
    # Nemo's and 7B's: a conversation that ends with an answer, as every training row does, has none)
    system_last: bool = False
    default_system: str | None = None  # what the template puts there when no system message is given
    # Text the template writes around the system text in a system turn it always writes (Llama 3.1's "Cutting
    # Knowledge Date: ...\nToday Date: ...\n\n" in front; SmolLM3's "## Metadata ..." in front, "\n\n" after)
    system_prefix: str = ""
    system_suffix: str = ""
    # Text the template writes after the answer's opening when it asks for an answer (Qwen 3.5's "<think>\n": its
    # models think unless told not to)
    generation_suffix: str = ""
    # (role, text before, text after) for a family whose turns are not turn_start/turn_end around the role's name:
    # Mistral's [INST]question[/INST]answer</s>
    roles: tuple[tuple[str, str, str], ...] = ()
    # what asks for an answer where it is not the answer turn's opening (Mistral 7B v0.3 writes " " before each
    # answer, and nothing after the last question)
    asking: str | None = None
    # Gemma 4's switch: asked to think (enable_thinking=True), its template opens the system turn with this text,
    # writing that turn where no system text is given too, and writes think_suffix after the answer's opening
    # instead of the generation_suffix (its empty thought channel); None where asking to think changes nothing
    think_prefix: str | None = None
    think_suffix: str = ""

    @property
    def framed(self) -> bool:
        """Whether the system turn is always written, its text framed by the template's own."""
        return bool(self.system_prefix or self.system_suffix)

    def _around(self, role: str) -> tuple[str, str]:
        """(the text before a turn's content, the text after it)."""
        role = self.assistant_role if role == "assistant" else role
        own = {name: (before, after) for name, before, after in self.roles}
        return own.get(role) or (self.turn_start.format(role=role), self.turn_end)

    def opening(self, role: str) -> str:
        """The text before a turn's content (for the assistant, also what asks for an answer)."""
        return self._around(role)[0]

    def closing(self, role: str) -> str:
        """The text after a turn's content."""
        return self._around(role)[1]

    def turn(self, role: str, content: str) -> str:
        return self.opening(role) + content + self.closing(role)

    def ask(self) -> str:
        """The text after the last turn that asks for an answer."""
        return (self.opening("assistant") if self.asking is None else self.asking) + self.generation_suffix

    def system(self, content: str) -> str:
        """The system turn around `content` (the system text, or a Go template's expression for it)."""
        return self.turn("system", self.system_prefix + content + self.system_suffix)

    def thinking(self) -> ChatFormat:
        """The format as the template writes it when asked to think (think_prefix)."""
        return replace(self, system_prefix=(self.think_prefix or "") + self.system_prefix,
                       generation_suffix=self.think_suffix, think_prefix=None, think_suffix="")

    def render(self, messages: list[dict], generation_prompt: bool = True) -> str:
        """The text our parts give for a conversation (the reference the Go template is built from)."""
        system = next((m["content"] for m in messages if m["role"] == "system"), self.default_system)
        out = self.begin
        if self.system_turn and (system or self.framed):
            out += self.system(system or "")
        turns = [m for m in messages if m["role"] != "system"]
        for k, m in enumerate(turns):
            content = m["content"]
            placed = k == len(turns) - 1 if self.system_last else True
            if system and not self.system_turn and m["role"] == "user" and placed:
                content, system = f"{system}\n\n{content}", None
            out += self.turn(m["role"], content)
        if generation_prompt:
            out += self.ask()
        return out


FAMILIES = [  # (marker in the template, the format)
    ("<|im_start|>", ChatFormat("chatml", "<|im_start|>{role}\n", "<|im_end|>\n", "<|im_end|>")),
    ("<|start_header_id|>", ChatFormat("llama3", "<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>",
                                       "<|eot_id|>", begin="<|begin_of_text|>")),
    ("<start_of_turn>", ChatFormat("gemma", "<start_of_turn>{role}\n", "<end_of_turn>\n", "<end_of_turn>",
                                   begin="<bos>", assistant_role="model", system_turn=False)),
    # Gemma 4's: a system turn of its own; asked for an answer, it opens an empty thought channel unless told to think
    # (read off the template as the generation suffix)
    ("<|turn>", ChatFormat("gemma4", "<|turn>{role}\n", "<turn|>\n", "<turn|>", begin="<bos>", assistant_role="model")),
    ("<|end|>", ChatFormat("phi3", "<|{role}|>\n", "<|end|>\n", "<|end|>")),
    # Mistral's since Small 3 (Ministral 3, Devstral): a system prompt of its own, the question in [INST], the answer
    # ended by </s>; the older [INST]-only ones (Nemo, 7B v0.3) put the system text into the last question.
    ("[SYSTEM_PROMPT]", ChatFormat("mistral", "", "", "</s>", begin="<s>", roles=(
        ("system", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"), ("user", "[INST]", "[/INST]"), ("assistant", "", "</s>")))),
    ("[INST]", ChatFormat("mistral", "", "", "</s>", begin="<s>", system_turn=False, system_last=True,
                          roles=(("user", "[INST]", "[/INST]"), ("assistant", "", "</s>")))),
    ("[INST]", ChatFormat("mistral", "", "", "</s>", begin="<s>", system_turn=False, system_last=True,  # 7B v0.3's
                          roles=(("user", "[INST] ", "[/INST]"), ("assistant", " ", "</s>")), asking="")),
    ("<|start_of_role|>", ChatFormat("granite", "<|start_of_role|>{role}<|end_of_role|>", "<|end_of_text|>\n",
                                     "<|end_of_text|>")),
]


@dataclass(frozen=True)
class Detected:
    format: ChatFormat | None
    reason: str  # one sentence for the export report


def detect(tokenizer) -> Detected:
    """The model's chat format, proven against its own template on a probe conversation."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return Detected(None, "The model has no chat template, so the Modelfile has none and llama.cpp stops at "
                              "the tokenizer's end token.")
    if all(marker in template for marker in HARMONY_MARKERS):  # (its <|end|> would otherwise read as Phi-3's)
        return Detected(None, HARMONY + _OLLAMA_PICKS)
    found = next((marker for marker, _ in FAMILIES if marker in template), None)
    formats = [fmt for marker, fmt in FAMILIES if marker == found]  # the first marker's the template holds, in turn
    for fmt in formats:
        for candidate in _variants(fmt, tokenizer):
            candidate = _thinks(_asked(candidate, tokenizer), tokenizer)
            if _matches(candidate, tokenizer):
                return Detected(candidate, f"The chat template is {fmt.family}; the Modelfile's template renders a "
                                           "probe conversation exactly as the model's own template does.")
    if formats:
        return Detected(None, f"The chat template looks like {formats[0].family} but renders differently from it, so "
                              f"the Modelfile has no TEMPLATE{_OLLAMA_PICKS}")
    return Detected(None, "The chat template is not one of the families written for Ollama (ChatML, Llama 3, "
                          f"Gemma, Gemma 4, Phi-3, Granite, Mistral), so the Modelfile has no TEMPLATE{_OLLAMA_PICKS}")


# gpt-oss's: its system message carries the day it is rendered, answers go in named channels (analysis, final) and
# end with <|return|> or <|end|> by their place in the chat; none of that is a fixed frame a Go template can copy
HARMONY_MARKERS = ("<|start|>", "<|channel|>", "<|message|>")
HARMONY = ("The chat template is gpt-oss's Harmony format (a system message dated the day it is rendered, answers "
           "in channels), which a fixed Modelfile template cannot write as the model's own does, so the Modelfile has "
           "no TEMPLATE")

# What Ollama does without one: it keeps a template of its own whose Jinja source is nearly the GGUF's (its
# template.Named), else sends the bare prompt; llama.cpp's --jinja renders the GGUF's template itself.
_OLLAMA_PICKS = (" (Ollama then uses one of its own templates if the model's is one it knows, else the bare prompt; "
                 "llama.cpp's --jinja uses the model's own).")


def _hf(tokenizer, messages, **more) -> str | None:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **more)
    except Exception:  # a template that refuses a system message raises; that variant just does not match
        return None


def _variants(fmt: ChatFormat, tokenizer):
    """The family with and without its BOS text, with the default system text the template adds, and with the text
    it frames the system text in (Llama 3.1's dates, SmolLM3's metadata)."""
    for begin in dict.fromkeys((fmt.begin, "")):
        base = replace(fmt, begin=begin)
        yield base
        plain = _hf(tokenizer, PROBE)
        if plain is None:
            continue
        # A default system prompt shows as the difference between the template's text and ours without it.
        mine = base.render(PROBE)
        head = base.begin + base.opening("system" if base.system_turn else "user")
        if plain != mine and plain.startswith(head):
            rest = plain[len(head):]
            end = rest.find(base.closing("system") if base.system_turn else "\n\n")
            if end > 0:
                yield replace(base, default_system=rest[:end])
        framed = _framed(base, head, plain, _hf(tokenizer, [{"role": "system", "content": PROBE_SYSTEM}, *PROBE]))
        if framed is not None:
            yield framed


def _asked(fmt: ChatFormat, tokenizer) -> ChatFormat:
    """The format with the text its template writes after the answer's opening when asked for an answer (Qwen 3.5
    opens its thinking there), read off the probe's end; `fmt` itself where there is none we could give Ollama."""
    theirs, ours = _hf(tokenizer, PROBE), fmt.render(PROBE)
    if theirs is None or theirs == ours or not theirs.startswith(ours):
        return fmt
    extra = theirs[len(ours):]
    return fmt if "{{" in extra or '"""' in extra else replace(fmt, generation_suffix=extra)


def _thinks(fmt: ChatFormat, tokenizer) -> ChatFormat:
    """The format with what its template writes differently when asked to think (Gemma 4's <|think|> opening the
    system turn, and no empty thought channel after the answer's opening), read off the probe asked so and proven
    on it with and without a system text; `fmt` itself where that changes nothing, or not in a way we can give."""
    on = _hf(tokenizer, PROBE, enable_thinking=True)
    if on is None or on == _hf(tokenizer, PROBE) or not fmt.system_turn or fmt.framed or fmt.default_system:
        return fmt
    head, ask = fmt.begin + fmt.opening("system"), fmt.opening("assistant")
    end = on.find(fmt.closing("system"), len(head))
    if not on.startswith(head) or end < 0 or ask not in on:
        return fmt
    candidate = replace(fmt, think_prefix=on[len(head):end], think_suffix=on[on.rindex(ask) + len(ask):])
    if not candidate.think_prefix or any("{{" in t or '"""' in t for t in (candidate.think_prefix,
                                                                          candidate.think_suffix)):
        return fmt
    with_system = [{"role": "system", "content": PROBE_SYSTEM}, *PROBE]
    theirs = _hf(tokenizer, with_system, enable_thinking=True)
    if on != candidate.thinking().render(PROBE) or theirs not in (None, candidate.thinking().render(with_system)):
        return fmt
    return candidate


def _framed(base: ChatFormat, head: str, plain: str, given: str | None) -> ChatFormat | None:
    """The format with the text its template writes around a system text (in front, after) and in its place
    when none is given, read off the system turn with and without one; None where the template writes no such
    turn, or text Ollama's template (or the Modelfile's quotes) would read as its own."""
    if not base.system_turn or given is None or not (plain.startswith(head) and given.startswith(head)):
        return None
    ends = [t.find(base.closing("system"), len(head)) for t in (plain, given)]
    if min(ends) < 0:
        return None
    texts = [t[len(head):end] for t, end in zip((plain, given), ends)]
    at = texts[1].find(PROBE_SYSTEM)
    if at < 0:
        return None
    prefix, suffix = texts[1][:at], texts[1][at + len(PROBE_SYSTEM):]
    if not (prefix or suffix) or not (texts[0].startswith(prefix) and texts[0].endswith(suffix)) \
            or len(texts[0]) < len(prefix) + len(suffix) or any("{{" in t or '"""' in t for t in texts):
        return None
    return replace(base, system_prefix=prefix, system_suffix=suffix,
                   default_system=texts[0][len(prefix):len(texts[0]) - len(suffix)] or None)


def _matches(fmt: ChatFormat, tokenizer) -> bool:
    with_system = [{"role": "system", "content": PROBE_SYSTEM}, *PROBE]
    checks = [PROBE, with_system]
    for messages in checks:
        theirs = _hf(tokenizer, messages)
        if theirs is None and messages is with_system:
            continue  # the template has no system role; the Modelfile then never sends one
        if theirs != fmt.render(messages):
            return False
    return True
