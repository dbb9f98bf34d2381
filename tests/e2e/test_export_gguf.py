"""GGUF export through the real command line: the shared training run on the default model, then
`export --format gguf` with the default type (q4_k_m): exit 0, the files, the check's summary printed;
and a wrong --quant is one sentence, without a traceback, leaving nothing behind."""

import json

import pytest

from core import lineage
from core.gguf_export import reader


@pytest.fixture(scope="module")
def trained(pirate_run):
    """The shared LoRA run on the default model (tests/e2e/conftest.py): what an export needs."""
    cli, home, events = pirate_run
    assert events[-1]["status"] == "done"
    return cli, home, events[-1]["run_id"]


def test_export_gguf_from_the_command_line(trained):
    cli, home, run_id = trained
    out = home / "exported"
    proc = cli("export", "--run", run_id, "--format", "gguf", "--out", out, check=0)
    assert "Traceback" not in proc.stderr
    stem = f"smollm2-135m-instruct-{run_id}".lower()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["Modelfile", "README.md", "export.json", f"{stem}.q4_k_m.gguf", f"{stem}.lora.gguf"])
    # its model card names the bundled model as the Hub knows it, with the licence its GGUF states
    card = lineage.front_matter(out / "README.md")
    assert card["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and card["license"] == "apache-2.0"
    assert card["base_model_relation"] == "finetune" and "gguf" in card["tags"] and card["language"] == ["en"]
    text = (out / "README.md").read_text(encoding="utf-8")  # and which weights the run trained on, honestly
    assert "trained on the weights of SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1), de-quantized" in text
    report = json.loads((out / "export.json").read_text())
    assert report["quant"] == "q4_k_m" and report["verification"]["ok"], report["verification"]
    figures = report["verification"]["figures"]
    assert figures["sure_agreement"] >= figures["bar"] == 0.65 and figures["sure_positions"] > 20
    # llama.cpp's Q4_K_M mix on SmolLM2's shapes: 576-value rows fall back (Q4_K → Q5_0, the tied head
    # Q6_K → Q8_0); the 1536-value ffn_down rows fit, Q6_K on the "more bits" layers.
    assert report["tensor_types"] == {"f32": 61, "q8_0": 15, "q5_0": 166, "q4_k": 16, "q6_k": 14}
    fell = report["fallbacks"]  # and the person is told so (the tied head asked for Q8_0 itself)
    assert (fell["count"], fell["matrices"], fell["by_type"]) == (180, 211, {"q4_k→q5_0": 166, "q6_k→q8_0": 14})
    assert fell["summary"] in proc.stdout and "rows (576 values) are not whole 256-value blocks" in fell["summary"]
    assert report["bytes"] < 110e6
    metadata = reader.read(out / f"{stem}.q4_k_m.gguf").metadata
    assert metadata["general.file_type"] == 15 and metadata["tokenizer.ggml.eos_token_id"] == 2  # <|im_end|>
    assert report["verification"]["summary"] in proc.stdout
    assert proc.stdout.startswith(f"Exported gguf to {out}\nVerified: 272 tensors, vocab 49152, ")
    assert f"ollama create NAME -f {out / 'Modelfile'}" in proc.stdout
    assert f"FROM ./{stem}.q4_k_m.gguf" in (out / "Modelfile").read_text()


@pytest.mark.parametrize("args,words", [
    (["--quant", "q3_k_xl"], "argument --quant: invalid choice: 'q3_k_xl' (choose from 'f32', 'f16', 'bf16',"),
    (["--quant", "Q8_0", "--qlora-base", "nf4"], "--qlora-base nf4 applies to QLoRA runs"),
])
def test_bad_gguf_requests_are_one_sentence(trained, args, words):
    cli, home, run_id = trained
    proc = cli("export", "--run", run_id, "--format", "gguf", "--out", home / "refused", *args, check=None)
    assert proc.returncode != 0 and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (home / "refused").exists()


def test_quant_applies_to_gguf_only(trained):
    cli, home, run_id = trained
    proc = cli("export", "--run", run_id, "--format", "safetensors", "--quant", "q8_0", "--out", home / "st", check=None)
    assert proc.returncode != 0 and "applies to GGUF only" in proc.stderr and "Traceback" not in proc.stderr
