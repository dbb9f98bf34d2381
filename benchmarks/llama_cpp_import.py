"""GGUF files that llama.cpp's own converter wrote, imported by Tuneforge: the same model comes back.

The unit tests (tests/core/test_gguf_import.py) import files our exporter wrote, so an error made the same way
in both directions would pass them. Here the files come from llama.cpp's convert_hf_to_gguf.py, the converter
behind most GGUF files people download: a tiny random model of each architecture we export (the table of
tests/core/gguf_export/test_architectures.py, the rope settings llama.cpp keeps as tensors: Llama 3.2's,
Phi-3.5's long context, a model split into parts, a Qwen 3.5 with the draft block its released checkpoints
carry, and an LFM2 laid out as its released checkpoints are) is saved as a Hugging Face folder, converted by
llama.cpp to f32, imported through `model_source.resolve` as `--model FILE.gguf` would, and compared with the
model it was made from: its logits after a chat (float32 on both sides: within TOLERANCE), its tokens and its chat
template.

    python benchmarks/llama_cpp_import.py --llama-cpp PATH/llama.cpp [--only smollm3 ...] [--out FILE]

PATH/llama.cpp is a llama.cpp source tree (convert_hf_to_gguf.py and its gguf-py beside it; the converter
needs torch, transformers and sentencepiece). The models use the default model's tokenizer, one llama.cpp's
converter recognizes by its hash, or, for the architectures whose converter reads a SentencePiece tokenizer.model
(Gemma 2 and 3, Phi-3), a tiny one trained here, and for Gemma 4, whose converter reads only a BPE tokenizer.json
with byte fallback, the tests' SentencePiece-style one made as Gemma 4's is (its tokens judged: they agree); a case
llama.cpp's converter refuses is reported with its reason. The SentencePiece ones' tokens are recorded, not judged:
transformers' GGUF tokenizer builder reads such a file otherwise than its own Llama and Gemma classes read the tiny
tokenizer.model (a BOS added or not, a piece the Gemma class added to the vocabulary missing), differences of our
synthetic tokenizer, not of the import, which takes the tokenizer from transformers as it is. The result goes to
benchmarks/results/llama_cpp_import.json unless --out says otherwise; the exit status is 1 when an import differs.
It needs no GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import atomic  # noqa: E402

TOLERANCE = 1e-5  # largest logit difference: float32 on both sides
CHAT = [{"role": "user", "content": "Where is the gold, matey? Arr! The old oak by the river knows."}]
LLAMA3 = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
ROPE_CASES = {  # case → (model type, settings): rope settings llama.cpp keeps as tensors, past whose original
    "llama 3.2 rope": ("llama", {"rope_parameters": LLAMA3}),  # context the chat runs, or in keys transformers'
    # mapping does not read (rope.scaling.*, Phi-4 mini's rope.dimension_count)
    "phi-4 mini partial rope": ("phi3", {"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                                             "partial_rotary_factor": 0.75}}),
    "qwen3 yarn rope": ("qwen3", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                                                      "original_max_position_embeddings": 16}}),
    "gemma 3 linear rope": ("gemma3_text", {"num_hidden_layers": 6, "rope_parameters": {  # on its global layer
        "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}),
    "gemma 2 27b attention scale": ("gemma2", {"num_hidden_layers": 46, "head_dim": 32,  # in no key: llama.cpp's
                                               "query_pre_attn_scalar": 16}),  # width over heads, by the 27B's depth
    "phi-3.5 long rope": ("phi3", {"original_max_position_embeddings": 16, "rope_parameters": {
        "rope_type": "longrope", "rope_theta": 10000.0, "long_factor": [1.0 + i for i in range(8)],
        "short_factor": [1.0 + 0.1 * i for i in range(8)]}}),
}


# Architectures whose converter reads a SentencePiece tokenizer.model, and the ids of its special pieces (Gemma's
# order, or Llama 2's, as Phi-3 has it): a tiny one is trained on the demo text for them.
SENTENCEPIECE = {"gemma2": "gemma", "gemma3_text": "gemma", "phi3": "llama"}
SPECIAL_IDS = {"gemma": dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3),
               "llama": dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)}
# Gemma 4's converter reads tokenizer.json alone, and only a BPE with byte fallback: for it, the tests' SentencePiece-
# style one made as Gemma 4's own is (`byte_fallback_tokenizer`).
BYTE_FALLBACK = {"gemma4_text"}


def byte_fallback_tokenizer(folder: Path):
    """The tests' SentencePiece-style BPE (byte fallback, in tokenizer.json) as Gemma 4's tokenizer is made: no space
    put before the text (llama.cpp's converter writes add_space_prefix false for it), the chat tokens special."""
    from tokenizers import normalizers
    from transformers import AutoTokenizer

    from tests.core.gguf_export import tiny

    tokenizer = AutoTokenizer.from_pretrained(tiny.sentencepiece(folder / "plain"))
    tokenizer.backend_tokenizer.normalizer = normalizers.Replace(" ", "\u2581")
    tokenizer.add_special_tokens({"additional_special_tokens": tiny.SPECIALS[1:]})
    tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def sentencepiece_tokenizer(kind: str, folder: Path):
    """A tiny SentencePiece BPE (byte fallback, the chat tokens as pieces) trained on the demo text, as the
    tokenizer class of its family reads it, with our test chat template."""
    import sentencepiece
    from transformers import GemmaTokenizer, LlamaTokenizer

    from tests.core.gguf_export import tiny

    folder.mkdir(parents=True, exist_ok=True)
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(tiny.corpus()), model_prefix=str(folder / "tokenizer"), vocab_size=600, model_type="bpe",
        byte_fallback=True, user_defined_symbols=["<|im_start|>", "<|im_end|>"], minloglevel=2, **SPECIAL_IDS[kind])
    tokenizer = (GemmaTokenizer if kind == "gemma" else LlamaTokenizer).from_pretrained(folder)
    tokenizer.chat_template = tiny.CHATML
    return tokenizer


def cases() -> dict[str, tuple[str, dict]]:
    from tests.core.gguf_export.test_architectures import CASES, COMMON, VARIANTS

    table = {model_type: (model_type, {**COMMON, **settings}) for model_type, settings in CASES.items()}
    # llama.cpp's converter writes every Granite hybrid without rope (rope.scaling.finetuned false, as its released
    # hybrids have none), so its file of a hybrid that ropes is not the model it was made from: that one is ours alone
    table.update({name: (model_type, {**COMMON, **settings}) for name, (model_type, settings) in VARIANTS.items()
                  if name != "granitemoehybrid-h-rope"})
    table.update({name: (model_type, {**COMMON, **CASES[model_type], **settings})
                  for name, (model_type, settings) in ROPE_CASES.items()})
    table[SPLIT] = ("llama", {**COMMON, **CASES["llama"]})
    table[DRAFT] = ("qwen3_5_text", {**COMMON, **CASES["qwen3_5_text"]})
    table[LFM2_RELEASED] = ("lfm2", {**COMMON, **CASES["lfm2"], "tie_word_embeddings": True, "full_attn_idxs": None,
                                     "layer_types": ["conv", "conv", "full_attention", "conv"]})
    return table


SPLIT = "llama in 3 parts"  # the converter's --split-max-tensors: NAME-00001-of-00003.gguf, ...
SPLIT_TENSORS = 8
# Qwen 3.5's released checkpoints carry a multi-token-prediction block (mtp.*, for speculative decoding), which the
# converter keeps as a layer past the model's own (nextn_predict_layers); one without such a block it converts only
# when told (--no-mtp: else it stops on an assertion).
DRAFT = "qwen 3.5 with its draft block"
# LFM2 as its released checkpoints are: the head tied, the layers named by layer_types (the table's case is untied,
# its layers given by full_attn_idxs)
LFM2_RELEASED = "lfm2 tied, by layer_types"


def as_granite_4_is_released(folder: Path) -> None:
    """The saved config as Granite 4.0's dense models are released: layers named "attention" and "mamba"
    (transformers 5 saves "full_attention" and "linear_attention"; llama.cpp's converter takes any layer not named
    "attention" for a Mamba layer), and intermediate_size equal to shared_intermediate_size (the converter writes the
    first as the feed-forward width, where the tensors have the second)."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    names = {"full_attention": "attention", "linear_attention": "mamba"}
    config["layer_types"] = [names.get(kind, kind) for kind in config["layer_types"]]
    config["intermediate_size"] = config["shared_intermediate_size"]
    (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")


def add_draft_block(model, folder: Path) -> None:
    """A draft block in the saved folder, as Qwen 3.5's checkpoints have it: a copy of the model's last layer (a
    full-attention one), a random projection of [embedding; hidden] and its norms, and the config's count of it."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    last, hidden = f"model.layers.{model.config.num_hidden_layers - 1}.", model.config.hidden_size
    state.update({"mtp.layers.0." + k.removeprefix(last): v.clone() for k, v in state.items() if k.startswith(last)})
    state["mtp.fc.weight"] = torch.randn(hidden, 2 * hidden, generator=torch.Generator().manual_seed(0)) * 0.02
    state.update({f"mtp.{norm}.weight": torch.zeros(hidden) for norm in ("pre_fc_norm_embedding",
                                                                          "pre_fc_norm_hidden", "norm")})
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    (folder / "config.json").write_text(json.dumps({**config, "mtp_num_hidden_layers": 1}, indent=2), encoding="utf-8")


def convert(llama_cpp: Path, folder: Path, out: Path, more: tuple[str, ...] = ()) -> str | None:
    """llama.cpp's converter on `folder`; None when it wrote `out`, else its last line of complaint."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(llama_cpp / "gguf-py"),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(llama_cpp / "convert_hf_to_gguf.py"), str(folder), "--outtype", "f32",
                           "--outfile", str(out), *more], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode == 0 and (out.is_file() or list(out.parent.glob(f"{out.stem}-00001-of-*.gguf"))):
        return None
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit status {done.returncode}"


def check(name: str, model_type: str, settings: dict, tokenizer, llama_cpp: Path, tmp: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core import gguf_import, model_source
    from tests.core.gguf_export import tiny

    slug = name.replace(" ", "-").replace(".", "")
    if model_type in SENTENCEPIECE:
        tokenizer = sentencepiece_tokenizer(SENTENCEPIECE[model_type], tmp / f"sp-{slug}")
    if model_type in BYTE_FALLBACK:
        tokenizer = byte_fallback_tokenizer(tmp / f"bpe-{slug}")
    if settings.get("hidden_size_per_layer_input"):  # Gemma 4's per-layer inputs: the tokenizer's vocabulary
        settings = {**settings, "vocab_size_per_layer_input": len(tokenizer)}
    model = tiny.random_model(model_type, tokenizer, **settings)
    folder, gguf = tmp / f"hf-{slug}", tmp / f"{slug}.f32.gguf"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if model_type in SENTENCEPIECE:  # transformers 5 saves tokenizer.json alone; the converter reads the model
        shutil.copy(tmp / f"sp-{slug}" / "tokenizer.model", folder)
    if name == DRAFT:
        add_draft_block(model, folder)
    if model_type == "granitemoehybrid":
        as_granite_4_is_released(folder)
    more = ("--split-max-tensors", str(SPLIT_TENSORS)) if name == SPLIT else \
        ("--no-mtp",) if model_type in ("qwen3_5_text", "qwen3_5_moe_text") and name != DRAFT else ()
    refused = convert(llama_cpp, folder, gguf, more)
    if name == SPLIT:  # the converter names the parts after the file asked for; the first stands for the model
        gguf = gguf.with_name(f"{gguf.stem}-00001-of-00003.gguf")
    if refused:
        return {"case": name, "architecture": model_type, "converted": False, "why": refused, "ok": None}
    contents = gguf_import.read(gguf)
    ref = model_source.resolve(str(gguf), tmp / "models")
    loaded = AutoModelForCausalLM.from_pretrained(str(ref.path), dtype=torch.float32).eval()
    theirs = AutoTokenizer.from_pretrained(ref.path)
    chat = tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(chat)["input_ids"]
    with torch.no_grad():
        worst = float((loaded(torch.tensor([ids])).logits - model(torch.tensor([ids])).logits).abs().max())
    same_tokens = theirs(chat)["input_ids"] == ids
    judged = model_type not in SENTENCEPIECE  # see the module's note on the tiny SentencePiece tokenizers
    same_template = theirs.chat_template == tokenizer.chat_template
    return {"case": name, "architecture": model_type, "converted": True,
            "gguf_architecture": contents.metadata.get("general.architecture"),
            "config_read_by": "ours" if gguf_import.reads_config(contents) else "transformers' GGUF mapping",
            "kept_as_tensors": sorted(t.name for t in contents.tensors if t.name.startswith("rope_")),
            "draft_layers": int(contents.metadata.get(f"{contents.metadata.get('general.architecture')}."
                                                      "nextn_predict_layers") or 0),
            "parts": int(contents.metadata.get("split.count") or 1),
            "chat_tokens": len(ids), "max_logit_difference": worst, "same_tokens": same_tokens,
            "tokens_judged": judged, "same_chat_template": same_template,
            "ok": worst <= TOLERANCE and same_template and (same_tokens or not judged)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp", type=Path, required=True, help="A llama.cpp source tree.")
    parser.add_argument("--only", nargs="*", help="Cases to check (default: all).")
    parser.add_argument("--out", type=Path, help="JSON to write (default benchmarks/results/llama_cpp_import.json).")
    args = parser.parse_args(argv)
    if not (args.llama_cpp / "convert_hf_to_gguf.py").is_file():
        parser.error(f"{args.llama_cpp}: has no convert_hf_to_gguf.py; give the folder of a llama.cpp source tree.")
    table = cases()
    unknown = sorted(set(args.only or ()) - set(table))
    if unknown:
        parser.error(f"{', '.join(unknown)}: not a case here; choose from {', '.join(sorted(table))}.")

    from transformers import AutoTokenizer

    from app import paths
    from core import model_source

    tokenizer = AutoTokenizer.from_pretrained(model_source.resolve("default", paths.models_dir()).path)
    checks = []
    with tempfile.TemporaryDirectory(prefix="llama-cpp-import-") as tmp:
        for name in sorted(args.only or table):
            model_type, settings = table[name]
            c = check(name, model_type, settings, tokenizer, args.llama_cpp, Path(tmp))
            checks.append(c)
            if not c["converted"]:
                print(f"--   {name}: llama.cpp's converter did not convert it ({c['why']})")
                continue
            tokens = ("same" if c["same_tokens"] else "DIFFER") + ("" if c["tokens_judged"] else " (not judged)")
            print(f"{'ok  ' if c['ok'] else 'FAIL'} {name} ({c['gguf_architecture']}, config by "
                  f"{c['config_read_by']}): largest logit difference {c['max_logit_difference']:.1e}, tokens "
                  f"{tokens}, template {'same' if c['same_chat_template'] else 'DIFFERS'}")
    result = {
        "benchmark": "llama_cpp_import", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": platform.processor() or platform.machine(), "platform": platform.platform()},
        "llama_cpp": _source_version(args.llama_cpp), "tolerance": TOLERANCE, "checks": checks,
        "ok": all(c["ok"] is not False for c in checks),
    }
    out = args.out or REPO / "benchmarks" / "results" / "llama_cpp_import.json"
    atomic.write_json(out, result)
    print(f"Wrote {out}")
    return 0 if result["ok"] else 1


def _source_version(llama_cpp: Path) -> str:
    """The version of the tree's own llama-server build where it has one, else the tree's path."""
    server = llama_cpp / "build" / "bin" / "llama-server"
    if server.is_file():
        from benchmarks.llama_cpp_check import version

        return version(server)
    return str(llama_cpp)


if __name__ == "__main__":
    sys.exit(main())
