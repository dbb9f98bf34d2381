"""The tokenizer, as llama.cpp reads it from GGUF metadata.

Two kinds of vocabulary are written, told apart by the tokenizer's own model:
- "gpt2": byte-level BPE (SmolLM, Qwen, Llama 3): the tokens as the tokenizer spells them, and merges;
- "llama": SentencePiece-style BPE with byte fallback (Llama 2, Mistral, Gemma, Phi-3): tokens with "▁"
  for spaces, byte tokens <0xNN>, and scores. Without sentencepiece's model file the scores come from the
  merge ranks (a token made by an earlier merge scores higher), which is the order llama.cpp's tokenizer
  merges in.
An architecture may name a tokenizer model of llama.cpp's own for its SentencePiece-style vocabulary
(`tokenizer_model`, Gemma 4's "gemma4"): the same tokens and scores, and the merges too, which that model
merges by (BPE over text whose spaces are "▁", split at newlines only); see `_own_model`.

Token types follow llama.cpp's converter: added special tokens are CONTROL, other added tokens
USER_DEFINED, padding rows up to the embedding's size UNUSED. `tokenizer.ggml.pre` names llama.cpp's
pre-tokenizer (how text is split before BPE): taken from the GGUF the model was converted from when
there is one, else recognised from the tokenizer's pre-tokenizer (see `pre_tokenizer`).

The end-of-sequence id written is the chat format's end-of-turn token when there is one: that is the
token a chat model emits when its answer ends, and what llama.cpp must stop on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gguf import GGUFWriter, TokenType

from core.errors import BadArgument
from core.gguf_export import reader
from core.model_source import SOURCE_NOTE


@dataclass
class Vocab:
    model: str  # "gpt2", "llama", or the architecture's own (`_own_model`)
    pre: str
    pre_reason: str
    tokens: list[str]
    token_types: list[int]
    scores: list[float] | None = None
    merges: list[str] | None = None
    special: dict[str, int] = field(default_factory=dict)  # bos, eos, eot, unk, pad → id
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None

    def write(self, w: GGUFWriter) -> None:
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.token_types)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        if self.merges:
            w.add_token_merges(self.merges)
        for kind, token_id in self.special.items():
            getattr(w, f"add_{kind}_token_id")(token_id)
        w.add_add_bos_token(self.add_bos)
        w.add_add_eos_token(self.add_eos)
        if self.add_space_prefix is not None:
            w.add_add_space_prefix(self.add_space_prefix)
        if self.chat_template:
            w.add_chat_template(self.chat_template)


def build(tokenizer, vocab_size: int, end_of_turn: str | None = None, model_path: str | Path | None = None,
          arch=None) -> Vocab:
    """The GGUF vocabulary of an HF fast tokenizer, padded to the embedding's `vocab_size` rows; `arch` (an
    Architecture) may have llama.cpp read a SentencePiece-style one as a tokenizer model of its own."""
    if not hasattr(tokenizer, "backend_tokenizer"):
        raise BadArgument("GGUF export reads the tokenizer from its tokenizer.json, which this model folder lacks; "
                          "save the tokenizer with transformers (save_pretrained) to write one.")
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    kind = spec["model"]["type"]
    sentencepiece = kind == "BPE" and spec["model"].get("byte_fallback", False)
    if kind != "BPE":
        raise BadArgument(f"GGUF export handles BPE tokenizers; this model's is {kind}, so export merged "
                          "safetensors instead.")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if len(by_id) > vocab_size:
        raise BadArgument(f"The tokenizer has {len(by_id)} tokens but the model's embedding only {vocab_size} "
                          "rows; the tokenizer does not belong to this model.")
    added = tokenizer.added_tokens_decoder
    unk = tokenizer.unk_token_id
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
            continue
        text = by_id[i]
        tokens.append(text)
        if sentencepiece and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
            types.append(TokenType.BYTE)  # even where a tokenizer lists them as added tokens
        elif i in added:
            types.append(TokenType.CONTROL if added[i].special or _looks_special(text) else TokenType.USER_DEFINED)
        elif sentencepiece and i == unk:
            types.append(TokenType.UNKNOWN)
        else:
            types.append(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(_spaces(part) for part in m) for m in spec["model"]["merges"]]
    pre, reason = ("default", "SentencePiece vocabularies are split by llama.cpp's own rules") if sentencepiece \
        else pre_tokenizer(spec, model_path)
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    marked = tokenizer("a")["input_ids"]
    vocab = Vocab(model="llama" if sentencepiece else "gpt2", pre=pre,
                  pre_reason=reason, tokens=tokens, token_types=[int(t) for t in types],
                  add_bos=len(marked) > len(plain) and marked[0] == tokenizer.bos_token_id,
                  add_eos=len(marked) > len(plain) and marked[-1] == tokenizer.eos_token_id,
                  chat_template=getattr(tokenizer, "chat_template", None))
    if sentencepiece:
        vocab.scores = _scores_from_merges(tokens, merges)
        first = tokenizer.convert_ids_to_tokens(plain[:1])
        vocab.add_space_prefix = bool(first) and first[0].startswith("\u2581")
    else:
        vocab.merges = merges
    vocab.special = {kind: tid for kind, tid in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                                                 ("unk", unk), ("pad", tokenizer.pad_token_id)) if tid is not None}
    if end_of_turn is not None and end_of_turn in tokenizer.get_vocab():
        vocab.special["eos"] = vocab.special["eot"] = tokenizer.get_vocab()[end_of_turn]
    if sentencepiece and arch is not None and arch.tokenizer_model:
        _own_model(vocab, arch, merges)
    return vocab


def _own_model(vocab: Vocab, arch, merges: list[str]) -> None:
    """The SentencePiece-style vocabulary as llama.cpp's tokenizer model `arch.tokenizer_model`, written as its
    converter writes it (Gemma 4's "gemma4": llama.cpp's converter, conversion/gemma.py, and llama-vocab.cpp):

    - the merges, which that model tokenizes by: BPE over the text with spaces written "▁", split at newlines only
      (a run of newlines that is a token is taken whole), bytes <0xNN> where no token fits. That is how the
      tokenizer.json of Gemma 4 reads text (a normalizer writing spaces as "▁", no pre-tokenizer, BPE with byte
      fallback); read as "llama" (SentencePiece, by the scores) llama.cpp tokenized it the same on all we tried;
    - `arch.visible_tokens` USER_DEFINED, not CONTROL: llama.cpp leaves control tokens out of the text it
      generates, and these (thinking channels, tool calls and the quote in their arguments) are what its chat
      parser and Ollama's read back from that text;
    - BOS added, whatever the tokenizer says: llama.cpp adds it for "gemma4" anyway, as Gemma 4 loses much without
      it on prompts no chat template wrote (llama.cpp PR 21500), and takes a template's own <bos> off when it adds
      one (as our Modelfile does); no space prefix (Gemma 4's tokenizer adds none).
    """
    vocab.model = vocab.pre = arch.tokenizer_model
    vocab.pre_reason = (f"llama.cpp's {arch.tokenizer_model} tokenizer writes spaces as \"\u2581\", splits text at "
                        "newlines only and merges the rest by the file's merges, as the model's tokenizer does")
    vocab.merges = merges
    vocab.add_bos, vocab.add_space_prefix = True, False
    visible = set(arch.visible_tokens)
    vocab.token_types = [int(TokenType.USER_DEFINED) if text in visible else kind
                         for text, kind in zip(vocab.tokens, vocab.token_types)]


def _looks_special(text: str) -> bool:
    # Added tokens some models forget to mark special (llama.cpp's converter makes the same call).
    return (text.startswith("<|") and text.endswith("|>")) or (text.startswith("<unused") and text.endswith(">"))


def _spaces(part: str) -> str:
    # A merge is stored as "left right", so a space inside a part is written shifted past the byte
    # alphabet (U+0120 range), the way llama.cpp reads it back.
    return "".join(chr(ord(c) + 256) if c == " " else c for c in part)


def _scores_from_merges(tokens: list[str], merges: list[str]) -> list[float]:
    made_at = {}
    for rank, merge in enumerate(merges):
        left, _, right = merge.partition(" ")
        made_at.setdefault(left + right, rank)
    return [-float(made_at[t]) if t in made_at else 0.0 for t in tokens]


# --- the pre-tokenizer ---------------------------------------------------------------------------------
PREFERRED = ("llama-bpe", "qwen2")  # the names llama.cpp's converter writes for Llama 3 and Qwen 2 splits


def pre_tokenizer(spec: dict, model_path: str | Path | None) -> tuple[str, str]:
    """llama.cpp's name for how the tokenizer splits text before BPE, and why we think so.

    llama.cpp's converter recognises a tokenizer by hashing its output on a test text; we read the
    pre-tokenizer's structure instead, which needs no table of hashes: the GPT-2 split, SmolLM's
    digits-then-GPT-2 split, or a Split regex that transformers' GGUF reader knows by name.
    """
    source = _source_gguf_pre(model_path)
    if source:
        return source, f"the pre-tokenizer '{source}' is kept from the GGUF this model was converted from"
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2", "the tokenizer splits text with GPT-2's pattern"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
        return "smollm", "the tokenizer splits digits one by one, then with GPT-2's pattern (SmolLM's split)"
    if kinds == ["Split", "ByteLevel"]:
        pattern = (parts[0].get("pattern") or {}).get("Regex")
        names = _known_splits().get(pattern, [])
        if names:
            name = next((n for n in PREFERRED if n in names), names[0])
            return name, f"the tokenizer's split pattern is {name}'s"
    return "default", ("the tokenizer's pre-tokenizer is not one llama.cpp names, so llama.cpp will split text "
                       "its default way, which may tokenize some text differently")


def _known_splits() -> dict[str, list[str]]:
    """Split regex → llama.cpp pre-tokenizer names, as transformers' GGUF reader pairs them."""
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS
    except ImportError:  # an older transformers without the table: only the structural cases above apply
        return {}
    table: dict[str, list[str]] = {}
    for name, regex in GGUF_PRE_TOKENIZER_SPLITS.items():
        table.setdefault(regex, []).append(name)
    return table


def _source_gguf_pre(model_path: str | Path | None) -> str | None:
    """The pre-tokenizer named in the GGUF a model folder was converted from (core.model_source notes it)."""
    note = Path(model_path) / SOURCE_NOTE if model_path else None
    if note is None or not note.is_file():
        return None
    source = Path(json.loads(note.read_text(encoding="utf-8")).get("gguf", ""))
    return reader.read_string(source, "tokenizer.ggml.pre") if source.is_file() else None
