"""Tokenize rendered chats piece by piece: the text between two added tokens is encoded once per distinct
piece, and a text's ids and offsets are its pieces' put end to end.

Rendered chats repeat a lot: every row of SmolLM2 starts with the same default system prompt, and the
template's separators ("<|im_start|>", "\\n", a role name...) come back in every turn. A fast tokenizer
cuts its input at its added tokens before anything else and handles the text between them on its own
(huggingface/tokenizers, AddedVocabulary::extract_and_normalize): it finds the added tokens whose
`normalized` is off in the raw text (leftmost-longest, Aho-Corasick), then normalizes, pre-tokenizes
and models each piece between them separately. So a text's encoding is the concatenation of its
pieces' encodings, offsets shifted by where each piece starts, when nothing else looks across the
cuts. `PieceTokenizer.for_tokenizer` only returns a piece tokenizer when that holds:
- no truncation, padding, `split_special_tokens` or `encode_special_tokens` (which keeps special
  tokens whole instead of cutting at them);
- no added token that is cut at has lstrip, rstrip or single_word (those look at, or take, the
  characters beside the token);
- a normalizer, pre-tokenizer, model and post-processor from a list of kinds that work on one piece
  without knowing where it sits in the text (a Metaspace that adds its space to the first piece only,
  a post-processor that trims the first token's offsets differently, or BPE dropout are not);
- and, checked on probe texts built around the added tokens, pieces give exactly the ids and offsets
  the whole text gives. Otherwise the caller tokenizes whole texts, as before.
The cut itself is the same search: a regular expression of the same tokens, longest first, scanned
left to right, finds the leftmost-longest matches.
"""

from __future__ import annotations

import json
import re
from operator import le

MAX_PIECES = 10_000  # distinct pieces kept between batches (about 2 kB each); past it the cache starts again

_NORMALIZERS = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "StripAccents", "Replace", "Prepend",
                "BertNormalizer", "Nmt", "Precompiled", "ByteLevel", "Sequence"}
_PRE_TOKENIZERS = {"ByteLevel", "Split", "Digits", "Punctuation", "Whitespace", "WhitespaceSplit",
                   "BertPreTokenizer", "CharDelimiterSplit", "UnicodeScripts", "Metaspace", "Sequence"}
_MODELS = {"BPE", "WordPiece", "WordLevel", "Unigram"}


class Piece:
    """One distinct piece of text and its encoding (filled in by `PieceTokenizer.encode`): token ids, where
    each token starts and ends (tuples of ints rather than offset pairs: far fewer objects to keep), and
    whether the starts are in order and any token is empty (what labelling by pieces relies on)."""

    __slots__ = ("text", "ids", "starts", "ends", "ordered", "has_empty", "trained")

    def __init__(self, text: str):
        self.text = text
        self.ids: list[int] = []
        self.starts: tuple[int, ...] = ()
        self.ends: tuple[int, ...] = ()
        self.ordered = True
        self.has_empty = False
        self.trained: list[int] | None = None  # its labels inside a trained span, kept by token_labels.py

    def offsets(self, at: int = 0) -> list[tuple[int, int]]:
        """Its tokens' offsets, shifted to where the piece starts in its text."""
        return [(a + at, b + at) for a, b in zip(self.starts, self.ends)]


class PieceTokenizer:
    def __init__(self, backend, separators: list[str]):
        self._backend = backend
        longest_first = sorted(set(separators), key=len, reverse=True)
        self._cut = re.compile("(" + "|".join(map(re.escape, longest_first)) + ")").split if separators else None
        self._known: dict[str, Piece] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer) -> tuple[PieceTokenizer | None, str]:
        """(a piece tokenizer, why) or (None, why not)."""
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        if backend is None:
            return None, "the tokenizer is not a fast (Rust) tokenizer"
        reason = _unsafe(tokenizer, backend)
        if reason:
            return None, reason
        added = backend.get_added_tokens_decoder().values()
        pieces = cls(backend, [t.content for t in added if not t.normalized])
        for text in _probe_texts([t.content for t in added]):
            whole = backend.encode(text, add_special_tokens=False)
            ids, offsets = pieces.encode_now(text)
            if ids != whole.ids or offsets != whole.offsets:
                return None, f"pieces encode {text!r} differently from the whole text"
        return pieces, "the text between added tokens is tokenized on its own, and probes agree"

    def split(self, text: str, new: list[Piece]) -> list[Piece]:
        """The text's pieces, in order; pieces not seen before are appended to `new` (to be encoded)."""
        known = self._known
        out = []
        for part in self._cut(text) if self._cut else (text,):
            if part:
                piece = known.get(part)
                if piece is None:
                    piece = known[part] = Piece(part)
                    new.append(piece)
                out.append(piece)
        return out

    def forget_if_full(self) -> None:
        """Between batches: start the cache again when it holds too many pieces (pieces in use are kept by
        their rows)."""
        if len(self._known) > MAX_PIECES:
            self._known = {}

    def encode(self, new: list[Piece]) -> None:
        """Encode new pieces (on a worker thread: the Rust tokenizer releases the GIL)."""
        if new:
            for piece, e in zip(new, self._backend.encode_batch([p.text for p in new], add_special_tokens=False)):
                piece.ids = e.ids
                if piece.ids:
                    starts, ends = zip(*e.offsets)
                    piece.starts, piece.ends = starts, ends
                    piece.ordered = all(map(le, starts, starts[1:]))
                    piece.has_empty = any(map(le, ends, starts))

    def encode_now(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        new: list[Piece] = []
        pieces = self.split(text, new)
        self.encode(new)
        return ids_of(pieces), offsets_of(pieces)


def ids_of(pieces: list[Piece]) -> list[int]:
    ids: list[int] = []
    for p in pieces:
        ids += p.ids
    return ids


def offsets_of(pieces: list[Piece]) -> list[tuple[int, int]]:
    offsets: list[tuple[int, int]] = []
    at = 0
    for p in pieces:
        offsets += p.offsets(at)
        at += len(p.text)
    return offsets


def _unsafe(tokenizer, backend) -> str | None:
    if backend.truncation is not None or backend.padding is not None:
        return "the tokenizer truncates or pads"
    if getattr(tokenizer, "split_special_tokens", False) or getattr(backend, "encode_special_tokens", False):
        return "the tokenizer is set to encode special tokens as text"
    for t in backend.get_added_tokens_decoder().values():
        if not t.normalized and (t.lstrip or t.rstrip or t.single_word):
            return f"the added token {t.content!r} strips or matches whole words"
    parts = {"normalizer": (backend.normalizer, _NORMALIZERS),
             "pre-tokenizer": (backend.pre_tokenizer, _PRE_TOKENIZERS),
             "post-processor": (backend.post_processor, {"TemplateProcessing", "ByteLevel", "Sequence"})}
    for name, (part, allowed) in parts.items():
        if part is not None:
            for kind in _kinds(json.loads(part.__getstate__())):
                if kind.get("type") not in allowed:
                    return f"the tokenizer's {name} {kind.get('type')} is not known to work piece by piece"
                if kind.get("type") == "Metaspace" and kind.get("prepend_scheme", "always") == "first":
                    return "the tokenizer's Metaspace adds its space to the first piece only"
                if name == "post-processor" and kind.get("type") == "ByteLevel" and kind.get("trim_offsets") \
                        and kind.get("add_prefix_space"):
                    return "the tokenizer's post-processor trims the first token's offsets differently"
    model = backend.model
    if type(model).__name__ not in _MODELS or getattr(model, "dropout", None):
        return f"the tokenizer's model {type(model).__name__} is not known to work piece by piece"
    return None


def _kinds(config: dict) -> list[dict]:
    """A component and, for a Sequence, everything in it."""
    inner = config.get("normalizers") or config.get("pretokenizers") or config.get("processors") or []
    return [config] + [k for c in inner for k in _kinds(c)]


def _probe_texts(added: list[str]) -> list[str]:
    """Texts around the added tokens: spaces and newlines on either side, tokens side by side, no text at
    all. Up to 32 tokens each in several such texts (models reserve hundreds alike), and every token in
    one text together."""
    texts = ["", "plain words, 123 numbers  and   spaces\n\n\ttabs é 東京 🌊"]
    for tok in sorted(added)[:32]:
        texts += [tok, f"a{tok}b", f" {tok} ", f"x \n{tok}\n\n y", f"{tok}{tok}", f"été  {tok}  🌊 1234 {tok}\n"]
    texts.append(" ".join(added) + "".join(added) + "\n".join(added))
    return texts
