"""The llama.cpp check as a real process: without a llama-server binary or an export it says so in one sentence
and writes nothing; the result it wrote with a real llama.cpp build (committed) passed every check it made,
the tool calls included."""

import json

from tests.benchmarks.scripts import RESULTS, runner

run = runner("llama_cpp_check.py")


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


def test_the_committed_result_passed_with_tools():
    found = sorted(RESULTS.glob("llama_cpp-*.json"))
    assert found, "no llama.cpp check result is committed"
    for path in found:
        result = json.loads(path.read_text())
        assert result["benchmark"] == "llama_cpp_check" and result["ok"] is True, path
        assert all(c["ok"] for c in result["checks"]) and result["llama_cpp"]
        names = [c["check"] for c in result["checks"]]
        assert "plain answer" in names and "tool call found" in names and "answer from the result" in names
