"""The tokenizer as GGUF metadata: both kinds of vocabulary, read back by transformers' GGUF tokenizer."""

import json

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


# --- Gemma 4: llama.cpp's own "gemma4" tokenizer model -------------------------------------------------
GEMMA4_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<|tool>", "<tool|>", "<|tool_call>",
                   "<tool_call|>", "<|tool_response>", "<tool_response|>", '<|"|>', "<|think|>", "<|channel>",
                   "<channel|>", "<|turn>", "<turn|>"]
VISIBLE = ["<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", '<|"|>']
MIXED = """def f(x):\n    return x * 2\n\n\n\tprint(f(21))  # 42\nIndented  twice,   thrice.\n\n
Numbers 3.14159 and 1,000,000. 日本語の文章 and 中文 🦙🔥 naïve café нещо"""
TEXTS = ["Hello world", "  two leading spaces", "a  b   c", "\n\n\n", "line\n\nline\n\n\n\nline", "\tTab\t\tTabs",
         "def f(x):\n    return x * 2", "for (int i = 0; i < 10; ++i) {}", "3.14159 and 2718281828", "🦙 emoji 🔥",
         "日本語のテキスト", "Ünder the oak, 42 steps.", " Where is the gold?", "trailing   "]


@pytest.fixture(scope="module")
def gemma4_tokenizer():
    """A tokenizer as Gemma 4's tokenizer.json is (as transformers' GemmaTokenizer and llama.cpp's ggml-vocab-gemma-4
    have it): BPE with byte fallback over the whole text, spaces written "▁" by the normalizer, no pre-tokenizer, its
    special tokens added (the ones llama.cpp renders among them), no BOS added. Trained a piece at a time as
    SentencePiece learns Gemma's ("▁" opens a word; runs of spaces, tabs and newlines are tokens of their own)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "\u2581")
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("\n+|\t+|\u2581[^\u2581\n\t]+|[^\u2581\n\t]+|\u2581+"), "isolated")
    tok.train_from_iterator(tiny.corpus() + [MIXED] * 5, trainers.BpeTrainer(
        vocab_size=700, limit_alphabet=80, show_progress=False,
        special_tokens=GEMMA4_SPECIALS + [f"<0x{i:02X}>" for i in range(256)]))
    tok.pre_tokenizer = None
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in GEMMA4_SPECIALS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>")


def llama_cpp_gemma4(v: vocab.Vocab, text: str) -> list[int]:
    """llama.cpp's "gemma4" tokenizer (llama-vocab.cpp) on plain text, over what the file holds: spaces as "▁", the
    text split at newlines only (a run of newlines that is a token taken whole), each piece merged by the merges'
    ranks, leftmost first, and a piece no token spells written as its bytes <0xNN>."""
    import re

    ids = {t: i for i, t in enumerate(v.tokens)}
    ranks = {tuple(m.split(" ", 1)): rank for rank, m in enumerate(v.merges)}
    out = []
    for word in re.findall(r"[^\n]+|\n+", text.replace(" ", "\u2581")):
        parts = [word] if word.strip("\n") == "" and word in ids else list(word)
        while (found := [(ranks[p], i) for i, p in enumerate(zip(parts, parts[1:])) if p in ranks]):
            i = min(found)[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        out += [k for p in parts for k in ([ids[p]] if p in ids else [ids[f"<0x{b:02X}>"] for b in p.encode()])]
    return out


@pytest.mark.parametrize("model_type,model", [(None, "llama"), ("gemma3_text", "llama"), ("gemma4_text", "gemma4")])
def test_gemma_4s_vocabulary_is_written_as_llama_cpps_converter_writes_it(model_type, model, gemma4_tokenizer):
    """Gemma 4's SentencePiece-style vocabulary as llama.cpp's tokenizer model "gemma4" (BPE by the merges, which
    reads Gemma 4's tokenizer.json as transformers does), the tokens its chat parser reads kept visible (USER_DEFINED,
    not CONTROL, which llama.cpp leaves out of generated text), BOS added though the tokenizer adds none (llama.cpp
    forces it for gemma4); other architectures' stay "llama". Before, Gemma 4's was "llama" with no merges, the
    channel and tool-call tokens invisible in llama.cpp's output and no BOS on prompts no template wrote."""
    from core.gguf_export import architectures

    tok = gemma4_tokenizer
    assert tok("a")["input_ids"] == tok("a", add_special_tokens=False)["input_ids"]  # no BOS, as Gemma 4's
    arch = architectures.get(model_type) if model_type else None
    v = vocab.build(tok, len(tok), "<turn|>", arch=arch)
    types = {t: v.token_types[tok.convert_tokens_to_ids(t)] for t in GEMMA4_SPECIALS + ["<0x41>", "\u2581the"]}
    assert v.model == model and v.special["eos"] == tok.convert_tokens_to_ids("<turn|>")
    assert types["<0x41>"] == TokenType.BYTE and types["\u2581the"] == TokenType.NORMAL
    assert all(types[t] == TokenType.CONTROL for t in ("<bos>", "<|turn>", "<turn|>", "<|think|>"))
    if model == "llama":
        assert v.merges is None and not v.add_bos and all(types[t] == TokenType.CONTROL for t in VISIBLE)
        return
    assert v.pre == "gemma4" and v.add_bos and v.add_space_prefix is False
    assert all(types[t] == TokenType.USER_DEFINED for t in VISIBLE)
    assert v.merges == [" ".join(m) for m in json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]]
    # what llama.cpp makes of the file, without llama.cpp (CI has none): the same ids as the tokenizer
    assert [llama_cpp_gemma4(v, t) for t in TEXTS] == [tok(t)["input_ids"] for t in TEXTS]


def test_gemma_4s_vocabulary_is_read_back_by_our_import(gemma4_tokenizer, tmp_path):
    """transformers' GGUF reader (our import, and export's check of the file) builds Gemma's tokenizer from
    "gemma4" with the file's merges: the same ids, special and visible tokens included. Before, the "llama" file of
    a Gemma 4 was read as Llama's SentencePiece (a space put in front) and export's own check refused it."""
    from core import gguf_import
    from core.gguf_export import architectures

    tok = gemma4_tokenizer
    v = vocab.build(tok, len(tok) + 2, "<turn|>", arch=architectures.get("gemma4_text"))
    path = tmp_path / "v.gguf"
    w = GGUFWriter(str(path), "gemma4")
    v.write(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    loaded = gguf_import.tokenizer(path)
    chat = "<bos><|turn>user\nWhere is the gold?<turn|>\n<|turn>model\n<|channel>thought\n<channel|>Under the oak."
    for text in TEXTS + [chat, '<|tool_call>call:dig{where:<|"|>oak<|"|>}<tool_call|>']:
        assert loaded(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
