"""The tokenizer as GGUF metadata: both kinds of vocabulary, read back by transformers' GGUF tokenizer."""

import pytest
from gguf import GGUFWriter, TokenType

from core.errors import BadArgument
from core.gguf_export import reader, vocab
from tests.core.gguf_export import tiny

SAMPLE = "<|im_start|>user\nWhere is the gold? Arr, matey!<|im_end|>\n<|im_start|>assistant\nÜnder the oak.<|im_end|>\n"
# transformers' GGUF tokenizer adds SentencePiece's leading space only at the start of a text (llama.cpp
# and the original also after special tokens), so the SentencePiece vocabulary is compared on plain text.
PLAIN = "Where is the gold? Arr, matey! Ünder the oak, 42 steps."


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tokenizers")
    return {"gpt2": AutoTokenizer.from_pretrained(tiny.byte_level(root / "bl")),
            "llama": AutoTokenizer.from_pretrained(tiny.sentencepiece(root / "sp"))}


def metadata_only_gguf(path, v: vocab.Vocab):
    w = GGUFWriter(str(path), "llama")
    v.write(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return path


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_read_back_by_transformers_encodes_the_same(kind, tokenizers, tmp_path):
    from transformers import AutoTokenizer

    tok = tokenizers[kind]
    v = vocab.build(tok, len(tok) + 3, end_of_turn="<|im_end|>")  # an embedding with 3 spare rows
    assert v.model == kind and len(v.tokens) == len(tok) + 3
    assert v.tokens[-3:] == [f"[PAD{len(tok) + i}]" for i in range(3)]
    assert v.token_types[-1] == TokenType.UNUSED
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert v.token_types[im_end] == TokenType.CONTROL and v.special["eos"] == v.special["eot"] == im_end
    if kind == "llama":  # byte tokens, scores from the merges, and the space prefix SentencePiece adds
        assert v.token_types[tok.convert_tokens_to_ids("<0x41>")] == TokenType.BYTE
        assert v.merges is None and v.scores[tok.convert_tokens_to_ids("\u2581the")] < 0 and v.add_space_prefix
    else:
        assert v.scores is None and len(v.merges) > 100 and v.pre == "gpt-2"
    metadata_only_gguf(tmp_path / "v.gguf", v)
    loaded = AutoTokenizer.from_pretrained(tmp_path, gguf_file="v.gguf")
    text = SAMPLE if kind == "gpt2" else PLAIN
    assert loaded(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert loaded.eos_token == "<|im_end|>"


def test_a_tokenizer_larger_than_the_embedding_is_refused(tokenizers):
    with pytest.raises(BadArgument, match="does not belong to this model"):
        vocab.build(tokenizers["gpt2"], 100)


def test_pre_tokenizer_is_recognised_by_its_structure():
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_PRE_TOKENIZER_SPLITS

    def spec(*parts):
        return {"pre_tokenizer": {"type": "Sequence", "pretokenizers": list(parts)}}

    byte_level = {"type": "ByteLevel", "use_regex": False}
    split = lambda name: {"type": "Split", "pattern": {"Regex": GGUF_PRE_TOKENIZER_SPLITS[name]}}  # noqa: E731
    assert vocab.pre_tokenizer({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}, None)[0] == "gpt-2"
    assert vocab.pre_tokenizer(spec({"type": "Digits", "individual_digits": True},
                                    {"type": "ByteLevel", "use_regex": True}), None)[0] == "smollm"
    assert vocab.pre_tokenizer(spec(split("llama3"), byte_level), None)[0] == "llama-bpe"
    assert vocab.pre_tokenizer(spec(split("qwen2"), byte_level), None)[0] == "qwen2"
    pre, why = vocab.pre_tokenizer(spec({"type": "Whitespace"}), None)
    assert pre == "default" and "differently" in why


def test_the_default_model_keeps_the_pre_tokenizer_of_its_source_gguf(default_model_dir):
    from core.model_source import default_gguf

    assert reader.read_string(default_gguf(), "tokenizer.ggml.pre") == "smollm"
    assert reader.read_string(default_gguf(), "no.such.key") is None
    assert vocab.pre_tokenizer({}, default_model_dir)[0] == "smollm"
