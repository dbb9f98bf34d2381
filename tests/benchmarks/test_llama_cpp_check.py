"""The llama.cpp checks as real processes: without a llama-server binary (or an export) they say so in one
sentence and write nothing; the results they wrote with a real llama.cpp build (committed) passed every check,
the tool calls included, and cover every architecture we export."""

import json

from tests.benchmarks.scripts import RESULTS, runner

run = runner("llama_cpp_check.py")
run_architectures = runner("llama_cpp_architectures.py")


def test_it_needs_a_server_and_an_export(tmp_path):
    out = tmp_path / "result.json"
    proc = run("--server", tmp_path / "llama-server", "--export", tmp_path, "--out", out)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "llama-server: no such file; give the llama-server binary of a llama.cpp build.")
    (tmp_path / "llama-server").write_text("")
    proc = run("--server", tmp_path / "llama-server", "--export", tmp_path, "--out", out)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "no export.json; give a folder that `tuneforge export --format gguf` wrote.")
    assert not out.exists()


def test_the_committed_results_passed_with_tools_and_thinking():
    found = {path.name: json.loads(path.read_text()) for path in sorted(RESULTS.glob("llama_cpp-*.json"))}
    assert found, "no llama.cpp check result is committed"
    for name, result in found.items():
        assert result["benchmark"] == "llama_cpp_check" and result["ok"] is True, name
        assert all(c["ok"] for c in result["checks"]) and result["llama_cpp"]
    names = {c["check"] for result in found.values() for c in result["checks"]}
    assert {"tool call found", "answer from the result", "tool call found, the LoRA file on the base GGUF",
            "thinks first", "plain answer"} <= names


def test_the_architectures_check_needs_a_server_and_known_names(tmp_path):
    out = tmp_path / "result.json"
    proc = run_architectures("--server", tmp_path / "llama-server", "--out", out)
    assert proc.returncode == 2 and proc.stderr.strip().endswith("no such file; give the llama-server binary of a "
                                                                 "llama.cpp build.")
    assert not out.exists()


def test_the_committed_architectures_result_covers_every_architecture():
    from tests.core.gguf_export.test_architectures import ROWS

    result = json.loads((RESULTS / "llama_cpp_architectures.json").read_text())
    assert result["ok"] is True and result["llama_cpp"]
    assert {c["architecture"] for c in result["checks"]} == set(ROWS)  # every model type, and variants of some
    for c in result["checks"]:
        assert c["same_top_tokens"] and c["max_logprob_difference"] <= c["tolerance"] <= 4e-3, c  # (GELU_TOLERANCE)


run_import = runner("llama_cpp_import.py")


def test_the_import_check_needs_a_llama_cpp_tree(tmp_path):
    out = tmp_path / "result.json"
    proc = run_import("--llama-cpp", tmp_path, "--out", out)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        "has no convert_hf_to_gguf.py; give the folder of a llama.cpp source tree.")
    assert not out.exists()


def test_the_committed_import_result_covers_every_architecture_and_the_rope_kept_as_tensors():
    """Files llama.cpp's own converter wrote come back as the model they were made from (logits exactly, in
    float32): every architecture we export whose converter took our tiny tokenizer, and the rope settings it
    keeps as tensors."""
    from core.gguf_export import architectures

    result = json.loads((RESULTS / "llama_cpp_import.json").read_text())
    assert result["ok"] is True and result["llama_cpp"]
    converted = [c for c in result["checks"] if c["converted"]]
    # qwen2 and Qwen 3.5's mixture of experts: the converter does not know our tiny tokenizer (see the result's why)
    assert {c["architecture"] for c in converted} == set(architectures.REGISTRY) - {"qwen2", "qwen3_5_moe_text"}
    assert all(c["ok"] and c["max_logit_difference"] <= result["tolerance"] for c in converted)
    assert {"ours", "transformers' GGUF mapping"} == {c["config_read_by"] for c in converted}
    assert {"rope_freqs.weight", "rope_factors_long.weight"} <= {t for c in converted for t in c["kept_as_tensors"]}
    assert max(c["parts"] for c in converted) == 3  # and a model split into parts by the converter
