"""The GGUF import benchmark as a real process on a tiny random model: both conversions run, the JSON
holds what it promises, ours stores half the bytes (float16 for quantized tensors, where transformers'
way stores float32) and keeps to what its design holds in memory. Its speed is not tested here. The random
model has a small byte-level tokenizer of our demo text (`--tokenizer`): with the default model's 49,152 tokens,
reading the vocabulary took most of the run's half minute."""

import json

from tests.benchmarks.scripts import runner
from tests.core.gguf_export import tiny

run = runner("gguf_import_speed.py")


def test_quick_run_converts_both_ways_and_writes_its_figures(tmp_path, home):
    out = tmp_path / "gguf_import.json"
    tokenizer = tiny.byte_level(tmp_path / "tokenizer")
    proc = run("--quick", "--tokenizer", tokenizer, "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "gguf_import" and result["quick"] is True and "--quick" in result["command"]
    [f] = result["files"]
    assert f["model"] == "random Llama tiny" and f["file"] == "random-tiny.q8_0.gguf" and f["params"] > 1e6
    assert f["vocab_size"] == 384 and "--tokenizer" in result["command"]
    ours, theirs = f["ours"], f["transformers"]
    for way in (ours, theirs):
        assert way["seconds"] > 0 and way["peak_rss"] >= way["rss_before"] > 0 and way["folder_bytes"] > 0
    # same weights, float16 instead of float32 (norms stay float32 both ways)
    assert 0.5 < ours["folder_bytes"] / theirs["folder_bytes"] < 0.52
    # the weights loop by design, plus transformers' config and tokenizer parse (~0.3 GB on a 49k vocabulary,
    # the allowance the default model's needs)
    assert ours["added_rss"] <= f["ours_expected_bytes"] + (512 << 20)
    assert f["ratio"]["seconds"] == ours["seconds"] / theirs["seconds"]
    assert "ours / transformers" in proc.stdout and str(out) in proc.stdout

