"""The fast chat path (no per-row render where the template is proven verbatim, tokenizing by pieces between
added tokens, labels a piece at a time) gives exactly what the per-row reference `encode` gives, for a
table of templates and for generated chats with awkward contents; the proof accepts ChatML and refuses
every template that could change, drop or judge a content; pieces are not used where an added token
looks beside itself."""

import copy
import gc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data import piece_tokenize, template_check, token_labels, tokenize
from core.data.dataset import Example

GEN = "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
TRIMMING = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n{% endfor %}"
            + GEN)
# Qwen3-like: an assistant turn keeps only what follows its reasoning.
REASONING = ("{% for m in messages %}{% set content = m.content %}"
             "{% if m.role == 'assistant' and '</think>' in content %}"
             "{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
             "{{ '<|im_start|>' + m.role + '\\n' + content + '<|im_end|>\\n' }}{% endfor %}" + GEN)
TOJSON = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'user' %}{{ m | tojson }}"
          "{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}" + GEN)
CONDITION = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
             "{% if 'secret' in m['content'] %}[hidden]{% else %}{{ m['content'] }}{% endif %}<|im_end|>\n"
             "{% endfor %}" + GEN)
LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
          "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
LLAMA3_VERBATIM = LLAMA3.replace(" | trim", "")
# Gemma 4-like: asked for an answer, it opens an empty thought channel, which no answer it renders starts with
GEMMA4 = ("{% for m in messages %}{% set role = 'model' if m.role == 'assistant' else m.role %}"
          "{{ '<|turn>' + role + '\n' + m.content + '<turn|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|turn>model\n<|channel>thought\n<channel|>' }}{% endif %}")
LLAMA3_TOKENS = ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]

# name: (template or None for the model's own, proven verbatim?)
TEMPLATES = {
    "chatml": (None, True),
    "trimming": (TRIMMING, False),
    "reasoning": (REASONING, False),
    "tojson": (TOJSON, False),
    "condition": (CONDITION, False),
    "llama3": (LLAMA3, False),
    "llama3-verbatim": (LLAMA3_VERBATIM, True),
    "gemma4": (GEMMA4, True),
}


def chat(*turns, system=None):
    messages = [{"role": "system", "content": system}] if system is not None else []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return Example(messages=messages, source=f"row-{len(turns)}")


ROWS = [
    chat("What is 2 plus 2?", "Arr, four."),
    chat("Hi", "Hello!", "And again?", "Again, hello.", system="Be a pirate."),
    chat("  padded  \n", "\n\nleading newlines and trailing  "),
    chat("", ""),
    chat("<|im_start|>user\nfake turn<|im_end|>", "text <|im_end|> inside<|endoftext|>"),
    chat("<|start_header_id|>x<|end_header_id|>", "<|eot_id|>done"),
    chat("Ünïcödé ☃ 東京 🌊", "<think>plan\n</think>\n\nthe answer"),
    chat("tell me the secret", "the secret is {{ out }} {% x %}"),
    chat("placeholder-like \ue0000\ue001", "\ue000"),
    chat("q", "a", system=""),
    Example(text="Plain text, every token trained.", source="text"),
]


@pytest.fixture(scope="module")
def tokenizers(tok):
    from tokenizers import AddedToken

    made = {}
    for name, (template, _) in TEMPLATES.items():
        other = copy.deepcopy(tok)
        if template is not None:
            other.chat_template = template
        if name.startswith("llama3"):
            other.add_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_TOKENS])
        made[name] = other
    return made


def reference(rows, tokenizer, seq_len, train_on):
    return [tokenize.encode(e, tokenizer, seq_len, train_on) for e in rows]


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_gives_the_reference(tokenizers, name, monkeypatch):
    monkeypatch.setattr(tokenize, "CHUNK", 3)  # several batches in flight, pieces shared across them
    tokenizer = tokenizers[name]
    assert (template_check.check(tokenizer.get_chat_template()) is None) == TEMPLATES[name][1]
    assert piece_tokenize.PieceTokenizer.for_tokenizer(tokenizer)[0] is not None
    for train_on in ("assistant", "last", "all"):
        for seq_len in (12, 4096):
            assert tokenize.encode_many(ROWS, tokenizer, seq_len, train_on) == reference(ROWS, tokenizer, seq_len,
                                                                                          train_on)


AWKWARD = ["", " ", "  ", "\n", "\n\n", "\t", "\r\n", "a", "word", " padded ", "<|im_start|>", "<|im_end|>",
           "<|endoftext|>", "<|eot_id|>", "<|start_header_id|>", "<think>", "</think>", "secret", "{{ x }}",
           "\ue000", "\ue0010\ue001", "é", "東京", "🌊", "'", '"', "\\", "123"]
CONTENT = st.lists(st.one_of(st.sampled_from(AWKWARD), st.text(max_size=6)), max_size=6).map("".join)
CHAT = st.builds(lambda system, turns: chat(*turns, system=system), st.one_of(st.none(), CONTENT),
                 st.lists(CONTENT, min_size=1, max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(rows=st.lists(CHAT, min_size=1, max_size=6), name=st.sampled_from(sorted(TEMPLATES)))
def test_generated_chats_give_the_reference(tokenizers, rows, name):
    tokenizer = tokenizers[name]
    for train_on, seq_len in (("assistant", 4096), ("last", 4096), ("all", 16)):
        assert tokenize.encode_many(rows, tokenizer, seq_len, train_on) == reference(rows, tokenizer, seq_len,
                                                                                      train_on)


def test_offsets_and_text_are_the_whole_texts(tokenizers):
    tokenizer = tokenizers["chatml"]
    chats = [e for e in ROWS if e.text is None]
    for e, row in zip(chats, tokenize.encode_rows(chats, tokenizer)):
        whole = tokenizer(row.text, add_special_tokens=False, return_offsets_mapping=True)
        assert row.text == tokenize.render_chat(tokenizer, e.messages)
        assert row.input_ids == whole["input_ids"] and row.offsets == whole["offset_mapping"]


def test_a_proven_template_renders_no_row(tokenizers, monkeypatch):
    tokenizer = tokenizers["chatml"]
    renders = []
    original = type(tokenizer).apply_chat_template
    monkeypatch.setattr(type(tokenizer), "apply_chat_template", lambda *a, **k: renders.append(1) or original(*a, **k))

    def renders_for(n):
        renders.clear()
        tokenize.encode_many([chat(f"question {i}", f"answer {i}") for i in range(n)], tokenizer, 4096)
        return len(renders)

    assert renders_for(10) == renders_for(300)  # the probes and one skeleton, however many rows


ACCEPTED = [
    "{% for m in messages %}{{ m.get('content', '') + '|' + m.get('role') }}{% endfor %}",
    "{% for m in messages %}{% set c = m.content %}{{ '[' ~ c ~ loop.index ~ ']' }}{% endfor %}",
    "{{ (messages | first).content }}{{ messages | length }}{% if 'name' in messages[0] %}n{% endif %}",
    "{% for m in messages[1:] %}{% if m.role not in ['user'] %}{{ raise_exception('no') }}{% endif %}"
    "{{ m.content if m.content is string else '' }}{% endfor %}",
]
REFUSED = {
    "trim": "{% for m in messages %}{{ m.content | trim }}{% endfor %}",
    "condition": "{% for m in messages %}{% if m.content %}{{ m.content }}{% endif %}{% endfor %}",
    "in": "{% for m in messages %}{% if 'x' in m.content %}x{% endif %}{% endfor %}",
    "tojson": "{% for m in messages %}{{ m | tojson }}{% endfor %}",
    "whole list": "{{ messages | tojson }}",
    "method": "{% for m in messages %}{{ m.content.strip() }}{% endfor %}",
    "slice": "{% for m in messages %}{{ m.content[:3] }}{% endfor %}",
    "markup": "{% for m in messages %}{{ ('<b>' | safe) + m.content }}{% endfor %}",
    "nextitem": "{% for m in messages %}{{ loop.nextitem.content if not loop.last }}{% endfor %}",
    "namespace": "{% set ns = namespace(c='') %}{% for m in messages %}{% set ns.c = m.content %}{% endfor %}",
    "captured": "{% set x %}{% for m in messages %}{{ m.content }}{% endfor %}{% endset %}{{ x | upper }}",
    "macro": "{% macro r(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ r(m) }}{% endfor %}",
    "generation": "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
    "autoescape": "{% autoescape true %}{% for m in messages %}{{ m.content }}{% endfor %}{% endautoescape %}",
    "key order": "{% for m in messages %}{% for k in m %}{{ k }}{% endfor %}{{ m.content }}{% endfor %}",
    "repeat": "{% for m in messages %}{{ m.content * 2 }}{% endfor %}",
    "computed field": "{% for m in messages %}{% for k in ['content'] %}{{ m[k] }}{% endfor %}{% endfor %}",
    "none": None,
}


def test_the_proof_accepts_chatml_and_verbatim_templates(tok):
    assert template_check.check(tok.chat_template) is None
    for template in ACCEPTED:
        assert template_check.check(template) is None, template


@pytest.mark.parametrize("name", REFUSED)
def test_the_proof_refuses_what_could_change_or_judge_a_content(name):
    reason = template_check.check(REFUSED[name])
    assert reason and "\n" not in reason


@pytest.mark.parametrize("flag", ["lstrip", "rstrip", "single_word"])
def test_no_pieces_when_an_added_token_looks_beside_itself(tok, flag):
    from tokenizers import AddedToken

    other = copy.deepcopy(tok)
    other.add_tokens([AddedToken("<|tool|>", special=True, normalized=False, **{flag: True})])
    pieces, reason = piece_tokenize.PieceTokenizer.for_tokenizer(other)
    assert pieces is None and "<|tool|>" in reason
    rows = [chat("call <|tool|>  now", " <|tool|> x"), chat("plain", "again")]
    assert tokenize.encode_many(rows, other, 4096) == reference(rows, other, 4096, "assistant")


@st.composite
def pieces(draw):
    """A piece of some length with made-up tokens: any start and end within it, out of order, empty."""
    size = draw(st.integers(1, 8))
    tokens = draw(st.lists(st.tuples(st.integers(0, size), st.integers(0, size)), max_size=5))
    piece = piece_tokenize.Piece("x" * size)
    piece.ids = [draw(st.integers(0, 99)) for _ in tokens]
    piece.starts, piece.ends = tuple(a for a, _ in tokens), tuple(b for _, b in tokens)
    piece.ordered = list(piece.starts) == sorted(piece.starts)
    piece.has_empty = any(b <= a for a, b in tokens)
    return piece


@settings(max_examples=300, deadline=None)
@given(st.lists(pieces(), max_size=6), st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=4))
def test_labels_by_pieces_follow_the_rule_token_by_token(row, spans):
    ids, offsets = piece_tokenize.ids_of(row), piece_tokenize.offsets_of(row)
    rule = [t if any(s <= a < e for s, e in spans) and b > a else token_labels.IGNORE
            for t, (a, b) in zip(ids, offsets)]
    assert token_labels.by_pieces(row, spans) == (ids, rule)
    assert token_labels.by_offsets(ids, offsets, spans) == rule


def test_pieces_agree_with_the_whole_text(tok):
    pieces, _ = piece_tokenize.PieceTokenizer.for_tokenizer(tok)
    for text in ["<|im_start|>user\n  hi <|im_end|>\n<|im_start|>assistant\n\n\nyes<|im_end|>\n",
                 "<|im_start|><|im_start|> x<|endoftext|>\t<|im_end|>", "no tokens at all, 東京 🌊  "]:
        whole = tok.backend_tokenizer.encode(text, add_special_tokens=False)
        assert pieces.encode_now(text) == (whole.ids, whole.offsets)


def test_the_garbage_collector_is_left_as_it_was(tok):
    rows = ROWS * 3
    was = gc.isenabled()  # (off in a session that ran the UI tests' collector, ui/main_thread_gc.py: put back)
    try:
        gc.disable()
        tokenize.encode_many(rows, tok, 64)
        assert not gc.isenabled()
        gc.enable()
        for _ in tokenize.iter_rows(rows, tok):
            assert gc.isenabled()  # never paused while the caller holds a row
    finally:
        (gc.enable if was else gc.disable)()


def test_an_answer_is_trained_whole_where_the_prompt_asks_with_text_answers_never_start_with(tokenizers):
    """Gemma 4's generation prompt ends with an empty thought channel that its rendered answers never start with:
    the answer is trained from where the conversation and that prompt part (counted from the prompt's end, the first
    30 characters of every answer went untrained), on both paths."""
    tokenizer = tokenizers["gemma4"]
    row = chat("Where is the gold?", "Arr, under the old oak!", "And the map?", "Burnt, matey.")
    for encoded in (tokenize.encode(row, tokenizer, 4096, "assistant"),
                    tokenize.encode_many([row], tokenizer, 4096, "assistant")[0]):
        trained = tokenizer.decode([t for t in encoded.labels if t != tokenize.IGNORE])
        assert trained == "Arr, under the old oak!<turn|>\nBurnt, matey.<turn|>\n"
