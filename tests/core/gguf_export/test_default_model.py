"""The default model (SmolLM2-135M-Instruct) with a LoRA adapter, exported through core.export as f16:
verified exactly, with the right Modelfile, metadata, tokenizer and LoRA file; bad requests refused in
a sentence.

The adapter is a real PEFT adapter with random weights instead of a trained one; random B matrices make
the merge change every adapted weight. tests/e2e/test_export_gguf.py exports a trained run as q4_k_m
through the command line (each export with its verification costs about half a minute here, so the
quantized one is checked there only).
"""

import json
from pathlib import Path

import pytest
from gguf import GGUFReader

from core import export
from core.errors import BadArgument
from core.progress import Progress


@pytest.fixture(scope="module")
def lora_run(default_model_dir, tmp_path_factory) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(default_model_dir),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                          "gate_proj", "up_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    model.save_pretrained(run_dir / "result")
    return {"id": "r1", "run_dir": str(run_dir), "model_path": str(default_model_dir), "strategy": "lora",
            "status": "done"}


@pytest.fixture(scope="module")
def exported(lora_run, tmp_path_factory) -> Path:
    return export.export(lora_run, "gguf", tmp_path_factory.mktemp("exports") / "f16", "F16", Progress())


def report(folder: Path) -> dict:
    return json.loads((folder / "export.json").read_text(encoding="utf-8"))


def test_f16_is_verified_exactly(exported):
    r = report(exported)
    v = r["verification"]
    assert v["ok"] and v["figures"]["greedy_matches"] == v["figures"]["prompts"] == 3
    assert v["summary"] == "Verified: 272 tensors, vocab 49152, greedy output matches the merged model on 3 prompts."
    assert any("encodes a chat sample to the same" in c for c in v["checks"])
    assert r["tensor_types"] == {"f16": 211, "f32": 61}
    assert sorted(p.name for p in exported.iterdir()) == [
        "Modelfile", "README.md", "export.json", "smollm2-135m-instruct-r1.f16.gguf",
        "smollm2-135m-instruct-r1.lora.gguf"]


def test_metadata_says_how_to_stop_and_chat(exported, default_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    fields = GGUFReader(exported / "smollm2-135m-instruct-r1.f16.gguf").fields
    value = lambda key: fields[key].contents()  # noqa: E731
    assert value("tokenizer.ggml.eos_token_id") == value("tokenizer.ggml.eot_token_id") == 2  # <|im_end|>
    assert value("tokenizer.chat_template") == tok.chat_template
    assert (value("tokenizer.ggml.model"), value("tokenizer.ggml.pre")) == ("gpt2", "smollm")
    assert (value("general.file_type"), value("general.quantization_version")) == (1, 2)
    assert value("general.name") == "smollm2-135m-instruct-r1" and value("general.architecture") == "llama"


def test_modelfile_works_with_ollama_as_is(exported):
    text = (exported / "Modelfile").read_text()
    assert "\nFROM ./smollm2-135m-instruct-r1.f16.gguf\n" in text
    assert 'TEMPLATE """{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}' in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert text.endswith('PARAMETER stop "<|im_end|>"\n')


def test_the_gguf_tokenizer_encodes_a_chat_like_the_model(exported, default_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    loaded = AutoTokenizer.from_pretrained(exported, gguf_file="smollm2-135m-instruct-r1.f16.gguf")
    chat = tok.apply_chat_template([{"role": "user", "content": "Where's the treasure? Tell me, you scallywag!"},
                                    {"role": "assistant", "content": "Arr, matey! Under the old oak."}], tokenize=False)
    assert loaded(chat, add_special_tokens=False)["input_ids"] == tok(chat, add_special_tokens=False)["input_ids"]


def test_the_lora_file_reproduces_the_adapter(exported):
    r = report(exported)
    assert r["lora"]["written"] and "210 adapted weights" in r["lora"]["check"]
    assert "chat_template" not in r["lora"] and not (exported / "chat_template.jinja").exists()  # the base's own
    fields = GGUFReader(exported / r["lora"]["file"]).fields
    assert fields["general.type"].contents() == "adapter" and fields["adapter.type"].contents() == "lora"
    assert fields["adapter.lora.alpha"].contents() == 16.0


def test_bad_requests_are_one_sentence(lora_run, tmp_path):
    with pytest.raises(BadArgument, match=r"^Unknown GGUF quantization type 'q3_k'; choose one of .*\.$"):
        export.export(lora_run, "gguf", tmp_path / "a", "q3_k")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(BadArgument, match="already exists"):
        export.export(lora_run, "gguf", tmp_path / "taken", "q8_0")
    other = tmp_path / "neox"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "gpt_neox"}))
    with pytest.raises(BadArgument, match=r"^GGUF export does not support the 'gpt_neox' architecture yet \(it supports "
                                          r"gemma2, gemma3_text, gemma4_text, gpt_oss, granite, granitemoehybrid, "
                                          r"lfm2, llama, mistral, mixtral, olmo2, olmo3, olmoe, phi3, qwen2, "
                                          r"qwen2_moe, qwen3, qwen3_5_moe_text, qwen3_5_text, qwen3_moe, smollm3\); "
                                          r"export merged safetensors instead\.$"):
        export.export({**lora_run, "model_path": str(other)}, "gguf", tmp_path / "b", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neox", "taken"]
