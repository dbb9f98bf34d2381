"""The quantizing benchmark as a real process on small shapes: it writes the JSON it promises, checks
for itself that gguf decodes our K-quant bytes as our decoders do, and a --quick run never lands
among the results. Its speed is not tested here."""

import json

from core.gguf_export import quants
from tests.benchmarks.scripts import RESULTS, runner

run = runner("quantize_speed.py")


def test_quick_run_writes_its_figures_and_agrees(tmp_path):
    out = tmp_path / "quantize.json"
    proc = run("--quick", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "quantize_speed" and result["quick"] is True and result["repeats"] == 1
    assert result["agree"] is True and result["disagree"] == []
    assert set(result["shapes"]) == {"512x1024", "576x1536"}
    for shape, figures in result["shapes"].items():
        values = int(shape.split("x")[0]) * int(shape.split("x")[1])
        assert set(figures) == {"q4_k", "q5_k", "q6_k", "q4_0", "q8_0"}
        for name, f in figures.items():
            qtype = quants.get(name)
            assert f["bytes_out"] == values // qtype.block_size * qtype.type_size, (name, f)
            assert f["mb_per_s"] > 0 and f["seconds"] > 0 and 0 < f["rel_rms_error"] < 0.1, (name, f)
        assert figures["q6_k"]["rel_rms_error"] < figures["q5_k"]["rel_rms_error"] < figures["q4_k"]["rel_rms_error"]
    goal = result["goal"]
    assert goal["params"] == 135_000_000 and goal["q4_k_estimate_seconds"] > 0 and isinstance(goal["meets_goal"], bool)
    assert result["device"]["cpu"] and result["device"]["cores_logical"] >= 1 and result["versions"]["gguf"]
    assert "--quick" in result["command"] and "MB/s" in proc.stdout and str(out) in proc.stdout


def test_quick_run_without_out_writes_nothing():
    before = {p.name: p.stat().st_mtime_ns for p in RESULTS.glob("*")}
    proc = run("--quick", "--repeats", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Nothing written" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in RESULTS.glob("*")} == before
