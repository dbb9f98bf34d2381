"""Tiny real tokenizers and random models for the GGUF tests: built in a second from our own demo text.

Two tokenizers, one of each kind GGUF export writes: byte-level BPE ("gpt2", as SmolLM and Qwen use)
and SentencePiece-style BPE with byte fallback ("llama", as Llama 2, Gemma and Phi-3 use). Both carry a
ChatML template, so every model built here has a chat format and an end-of-turn token.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DEMO

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus() -> list[str]:
    return DEMO.read_text(encoding="utf-8").splitlines()


def byte_level(folder: Path, vocab_size: int = 384) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   unk_token="<|endoftext|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return folder


def sentencepiece(folder: Path, vocab_size: int = 400) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", *SPECIALS[1:]]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    # Trained on words that start with "▁" (SentencePiece's habit), then used as Llama 2's tokenizer.json
    # does: a normalizer that writes spaces as "▁", no pre-tokenizer.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=vocab_size + 256,
                                                          special_tokens=specials + byte_tokens))
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHATML
    fast.save_pretrained(folder)
    return folder


def random_model(model_type: str, tokenizer, **config):
    """A random model of `model_type` for `tokenizer`, its norms moved off 1 (0 for Gemma), so a missed
    norm offset shows in the logits, and so its scales (Gemma 4's router: a scale per width and per expert)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    cfg = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **config)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "scale" in name.rsplit(".", 1)[-1]:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def plan(model, tokenizer, quant: str):
    """The GGUF plan of a model as the exporter makes it (no merge, no chat-format detection)."""
    from core.gguf_export import architectures, tensor_types, vocab, writer

    cfg = model.config.to_dict()
    v = vocab.build(tokenizer, cfg["vocab_size"], "<|im_end|>")
    shapes = {k: tuple(t.shape) for k, t in model.state_dict().items()}
    return writer.plan(architectures.for_config(cfg), cfg, shapes, v, tensor_types.pick(quant), "tiny")


def written(model) -> tuple[dict, dict]:
    """(config, tensors) of `model` as its architecture writes them (Architecture.written_config and parts): what a
    file of it comes back as (Granite 4.0's dense models: the granite model they are written as). A model written as
    its own type comes back as itself, its parts put together again (Qwen3 MoE's gate_up_proj)."""
    from core.gguf_export import architectures

    cfg = model.config.to_dict()
    arch = architectures.for_config(cfg)
    if arch.written_config(cfg)["model_type"] == cfg["model_type"]:
        return cfg, model.state_dict()
    state = {part: t if rows is None else t[architectures.part_index(rows, columns)]
             for name, t in model.state_dict().items()
             for part, rows, columns, _ in architectures.pieces(arch, name, t.shape)}
    return arch.written_config(cfg), state


def write_parts(plan, state_dict, path: Path, max_tensors: int) -> list[Path]:
    """The planned file as a model split into parts of at most `max_tensors` tensors, written by gguf's own writer
    as llama.cpp's converter splits (--split-max-tensors): STEM-00001-of-0000N.gguf, ... beside `path`."""
    import numpy as np
    from gguf import GGUFWriter

    from core.gguf_export import quants, writer

    w = GGUFWriter(path, plan.arch.name, split_max_tensors=max_tensors)
    w.kv_data[0].update(plan.kv)
    for t in plan.tensors:
        data = writer.encode(plan, t, state_dict)
        shape = writer._byte_shape(t) if data.dtype == np.uint8 else t.shape
        w.add_tensor(t.name, data.reshape(shape), raw_dtype=quants.get(t.type).ggml)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return w.format_shard_names(path)


def adapter_run(model, tmp_path: Path, base: Path, targets, use_dora: bool = False, run_id: str = "s1",
                target_parameters=None) -> dict:
    """The history row of a LoRA (DoRA) run on `model`, whose base is saved at `base`: adapters on `targets` (and on
    the 3-D weights `target_parameters`: a mixture of experts') saved as a run's result, B drawn at random so the
    update shows."""
    import torch
    from peft import LoraConfig, get_peft_model

    adapted = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, use_dora=use_dora,
                                                target_parameters=target_parameters))
    with torch.no_grad():
        for name, p in adapted.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    adapted.save_pretrained(tmp_path / "run" / "result")
    return {"id": run_id, "run_dir": str(tmp_path / "run"), "model_path": str(base),
            "strategy": "dora" if use_dora else "lora", "status": "done"}
