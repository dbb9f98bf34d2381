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
    from core.gguf_export import architectures

    result = json.loads((RESULTS / "llama_cpp_architectures.json").read_text())
    assert result["ok"] is True and result["llama_cpp"]
    assert {c["architecture"] for c in result["checks"]} == set(architectures.REGISTRY)
    for c in result["checks"]:
        assert c["same_top_tokens"] and c["max_logprob_difference"] <= c["tolerance"] <= 2e-3, c
