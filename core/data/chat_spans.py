"""Render chat rows through the model's template and find the assistant spans the loss falls on.

The reference method (`trained_spans`) renders the conversation up to each assistant turn: a span
starts where the template's generation prompt ends and stops where the rendered turn ends, its
end-of-turn text included. That costs two or three template renders per assistant turn. A turn the template
writes otherwise as the last one (Qwen 3's puts an empty thinking block into the last answer only) is the longest
tail of that render which the whole holds where the turn starts: what is trained is always the text the whole
conversation holds.

`ChatRenderer` gets the same spans from one render per row. Rows of one *shape* (the same roles and
other fields, with their types, in order) render the same template text around their contents, so it
renders the shape once with numbered placeholder contents, runs the reference method on that
skeleton, and keeps each span boundary as "literal characters + the lengths of these contents". A
row's spans are then sums.
This holds only for templates that copy contents verbatim, so:
- every row's real render must equal its skeleton with the contents put back, or the row takes the
  reference method (a template that trims, drops or rewrites content fails this check);
- before use, the renderer runs both methods on probe conversations chosen to upset templates
  (padded whitespace, reasoning tags, several turns) and uses the reference method for every row if
  any answer differs;
- a skeleton that is not prefix-stable sends its rows to the reference method, which raises the same
  error it always did.

`ChatRenderer.filled` goes one step further and skips the row's render altogether, but only where
template_check.py has proven from the template's source that it writes every content verbatim and
decides nothing on it (the argument is there), the probes agree, and the shape's skeleton renders
its empty contents as it fills them (a skeleton whose literal text happened to look like a
placeholder would fail that). Everywhere else each row is rendered and checked as above.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import weakref
from collections.abc import Callable

from core.data import template_check
from core.errors import DatasetError

# Private-use characters: no template writes them, and a row holding one takes the reference method.
_OPEN, _CLOSE = "\ue000", "\ue001"
_PLACEHOLDER = re.compile(f"{_OPEN}(\\d+){_CLOSE}")

_PROBES = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  padded  \n"},
     {"role": "assistant", "content": "\n\nleading newlines "}, {"role": "user", "content": "again"},
     {"role": "assistant", "content": "<think>hmm</think>Done."}],
    [{"role": "user", "content": "été 🌊 {{ x }}"}, {"role": "assistant", "content": " yes\t"},
     {"role": "user", "content": "more"}, {"role": "assistant", "content": "last "}],
]


def per_template(probe: Callable):
    """`probe(tokenizer)` (a fact found by rendering probe conversations), kept per tokenizer while its chat
    template stays the same: a tokenizer's template can be changed in place, and some cannot be weakly referred to
    (those are probed each time)."""
    known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (its template, the fact)

    @functools.wraps(probe)
    def fact(tokenizer):
        template = getattr(tokenizer, "chat_template", None)
        try:
            seen = known.get(tokenizer)
        except TypeError:
            seen = None
        if seen is not None and seen[0] == template:
            return seen[1]
        found = probe(tokenizer)
        try:
            known[tokenizer] = (template, found)
        except TypeError:
            pass
        return found

    return fact


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = False,
                tools: list[dict] | None = None) -> str:
    """The conversation as the model's template writes it; `tools`, the functions it may call, where the template
    writes them (tool_render.py decides)."""
    if not getattr(tokenizer, "chat_template", None):
        raise DatasetError("The model has no chat template, so chat data cannot be rendered; use a chat model "
                           "or a 'text' dataset.")
    more = {"tools": tools} if tools else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **more)


def put_prelude(tokenizer, prelude: str, plain: list[list[dict]], proves: Callable) -> bool:
    """Put `prelude` (Jinja that rewrites `messages`) in front of the tokenizer's chat template where the template then
    renders the `plain` conversations exactly as before (with and without the generation prompt) and
    `proves(tokenizer, original)` holds; else leave the template as it was. Whether it was put."""
    template = tokenizer.chat_template
    original = copy.copy(tokenizer)
    tokenizer.chat_template = prelude + template
    try:
        same = all(render_chat(tokenizer, chat, gen) == render_chat(original, chat, gen)
                   for chat in plain for gen in (False, True)) and proves(tokenizer, original)
    except Exception:  # a template the prelude upsets: it stays as it was
        same = False
    if not same:
        tokenizer.chat_template = template
    return same


def trained_spans(tokenizer, messages: list[dict], full: str,
                  tools: list[dict] | None = None) -> list[tuple[int, int]]:
    """The reference method: character spans of the assistant turns in `full`, by rendering prefixes. A turn the
    template writes differently when it is the last one (Qwen 3's writes an empty thinking block into the last
    answer only) is located in `full` by _ended."""
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        start = len(asked(tokenizer, messages[:i], full, tools))
        upto = render_chat(tokenizer, messages[: i + 1], tools=tools)
        spans.append((start, len(upto) if full.startswith(upto) else _ended(tokenizer, messages, i, full, start,
                                                                            upto, tools)))
    return spans


def asked(tokenizer, before: list[dict], full: str, tools: list[dict] | None = None) -> str:
    """The text in front of an answer as `full` holds it: the conversation before it with the generation prompt; or,
    where the template asks for an answer with text its answers never start with (Gemma 4's empty thought channel,
    written after the answer's opening only to ask for one), that prompt up to where `full` parts from it, provided
    that is past the conversation without it. (Counted from the whole prompt, the first 30 characters of every Gemma
    4 answer went untrained.)"""
    prompt = render_chat(tokenizer, before, add_generation_prompt=True, tools=tools)
    if full.startswith(prompt):
        return prompt
    plain = render_chat(tokenizer, before, tools=tools)
    shared = len(os.path.commonprefix([prompt, full]))
    return prompt[:shared] if full.startswith(plain) and shared >= len(plain) else prompt


def _ended(tokenizer, messages: list[dict], i: int, full: str, start: int, upto: str, tools) -> int:
    """Where answer `i` ends in `full` when its render as the last turn (`upto`) is not a prefix of it: after the
    longest tail of that render (from `start`) that `full` holds from `start` on, a tail holding the answer's words
    (Qwen 3's: the turn without the empty thinking block it writes into the last answer), provided the conversation
    up to the next message renders as `full` does up to that end, and on past it. Raises where it cannot be located
    so."""
    turn = upto[start:]
    said = messages[i]["content"].strip() if isinstance(messages[i]["content"], str) else ""
    latest = turn.rfind(said) if said else len(turn) - 1  # a tail must start at or before this
    if i + 1 < len(messages) and latest >= 0:
        following = render_chat(tokenizer, messages[: i + 2], tools=tools)
        for cut in range(latest + 1):  # the longest tail first
            if full.startswith(turn[cut:], start):
                end = start + len(turn) - cut
                if len(following) > end and following[:end] == full[:end]:
                    return end
                break
    raise DatasetError("The model's chat template is not prefix-stable, so assistant turns cannot be located; "
                       "train on all tokens instead (train_on='all').")


def render_many(tokenizer, rows: list[list[dict]]) -> list[str]:
    """render_chat for many rows in one call (the template is compiled and set up once)."""
    if not rows:
        return []
    for row in (rows[0], *(r for r in rows if not r)):
        render_chat(tokenizer, row)  # the errors one row alone would raise, worded as everywhere else
    return tokenizer.apply_chat_template(rows, tokenize=False)


class _Skeleton:
    """One shape's rendered text with contents left out, and its spans as (literal length, content refs)."""

    def __init__(self, tokenizer, messages: list[dict]):
        placeholder = [dict(m, content=f"{_OPEN}{i}{_CLOSE}") for i, m in enumerate(messages)]
        text = render_chat(tokenizer, placeholder)
        self.pieces: list[str | int] = []
        at = 0
        for m in _PLACEHOLDER.finditer(text):
            self.pieces += [text[at:m.start()], int(m.group(1))]
            at = m.end()
        self.pieces.append(text[at:])
        self._format = "".join(p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else f"{{{p}}}"
                               for p in self.pieces)
        # The reference method's ends, on the skeleton (it raises its error when they cannot be located); each
        # falls between turns, so the text before it holds whole placeholders.
        ends = [end for _, end in trained_spans(tokenizer, placeholder, text)]
        starts = [_measure(asked(tokenizer, placeholder[:i], text))
                  for i, m in enumerate(placeholder) if m["role"] == "assistant"]
        self.spans = [(start, _measure(text[:end])) for start, end in zip(starts, ends)]
        self.renders_empty: bool | None = None  # checked on first use by ChatRenderer.filled

    def fill(self, contents: list[str]) -> str:
        return self._format.format(*contents)

    def locate(self, contents: list[str]) -> list[tuple[int, int]]:
        length = [len(c) for c in contents].__getitem__
        return [(s_lit + sum(map(length, s_refs)), e_lit + sum(map(length, e_refs)))
                for (s_lit, s_refs), (e_lit, e_refs) in self.spans]


def _measure(text: str) -> tuple[int, list[int]]:
    refs = [int(m.group(1)) for m in _PLACEHOLDER.finditer(text)]
    return len(_PLACEHOLDER.sub("", text)), refs


class ChatRenderer:
    """Renders rows in batches and finds their assistant spans, one template render per row where it can,
    none where the template is proven to copy contents verbatim."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._skeletons: dict[tuple, _Skeleton | None] = {}
        self.fast = True
        self.fast = self._agrees_on_probes()
        # None when rows need no render of their own, else why they do.
        self.unproven = template_check.check(_template(tokenizer)) if self.fast else "the probes disagree"

    def spans(self, messages: list[dict], full: str) -> list[tuple[int, int]]:
        skeleton, contents = self._skeleton_for(messages)
        if skeleton is not None and skeleton.fill(contents) == full:
            return skeleton.locate(contents)
        return trained_spans(self.tokenizer, messages, full)

    def filled(self, messages: list[dict]) -> tuple[str, list[tuple[int, int]]] | None:
        """(the row's render, its spans) without rendering it, or None where the row must be rendered."""
        if self.unproven is not None:
            return None
        skeleton, contents = self._skeleton_for(messages)
        if skeleton is None:
            return None
        if skeleton.renders_empty is None:
            try:
                empty = render_chat(self.tokenizer, [dict(m, content="") for m in messages])
            except Exception:  # cannot happen for a proven template; if it does, rows are rendered
                empty = None
            skeleton.renders_empty = empty == skeleton.fill([""] * len(messages))
        if not skeleton.renders_empty:
            return None
        return skeleton.fill(contents), skeleton.locate(contents)

    def _skeleton_for(self, messages: list[dict]) -> tuple[_Skeleton | None, list[str]]:
        if not self.fast:
            return None, []
        contents, shape = [], []
        try:
            for m in messages:
                c, role = m["content"], m["role"]
                if type(c) is not str or _OPEN in c or _CLOSE in c:
                    return None, []
                contents.append(c)
                shape.append(role if len(m) == 2 and type(role) is str else _fields(m))
        except (TypeError, KeyError, AttributeError):  # odd rows (a field holding a list): the reference method
            return None, []
        key = tuple(shape)
        if key not in self._skeletons:
            try:
                self._skeletons[key] = _Skeleton(self.tokenizer, messages)
            except Exception:  # the template refuses this shape; the reference method says so in its own words
                self._skeletons[key] = None
        return self._skeletons[key], contents

    def _agrees_on_probes(self) -> bool:
        for probe in _PROBES:
            try:
                full = render_chat(self.tokenizer, probe)
                expected = trained_spans(self.tokenizer, probe, full)
            except Exception:  # a template that refuses this probe (roles, system turn) tells us nothing
                continue
            skeleton, contents = self._skeleton_for(probe)
            if skeleton is None or skeleton.fill(contents) != full or skeleton.locate(contents) != expected:
                return False
        return True


def _fields(message: dict) -> tuple:
    """A message's shape: its fields but the content, each value with its type (1, 1.0 and True are equal
    in Python but render differently). A message of only a role and a content (most of them) is keyed by
    its role instead: a string, which never equals one of these tuples."""
    out = []
    for k, v in message.items():
        if k != "content":
            if type(v) not in (str, int, float, bool, type(None)):
                raise TypeError(k)
            out.append((k, type(v).__name__, repr(v) if type(v) is float else v))  # repr: -0.0 == 0.0
    return tuple(sorted(out))


def _template(tokenizer) -> str | None:
    """The template string apply_chat_template renders with."""
    try:
        return tokenizer.get_chat_template()
    except Exception:  # no template (or several and no default): rows are rendered, which says so
        return None
