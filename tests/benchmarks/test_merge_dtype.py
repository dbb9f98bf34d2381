"""The merged-dtype benchmark as a real process on one short run: it trains through the CLI, merges into both
16-bit bases, writes the JSON it promises, and its `auto` column is the export's own decision. Its figures are not
tested here (benchmarks/results/merge_dtype.json holds them)."""

import json

from core import merge_stream
from tests.benchmarks.scripts import runner

run = runner("merge_dtype.py")


def test_a_short_run_is_merged_both_ways_and_auto_decides_as_the_export_does(tmp_path):
    out = tmp_path / "merge.json"
    proc = run("--steps", "2", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["benchmark"] == "merge_dtype" and result["keep_bar"] == merge_stream.KEEP_BAR
    (only,) = result["runs"]
    assert only["steps"] == 2 and set(only["bases"]) == {"float16", "bfloat16"}
    for dtype, f in only["bases"].items():
        losses = f["held_out_loss"]
        assert set(losses) == {"base", "float32", dtype} and losses["float32"] < losses["base"]  # it learned
        assert 0 < f["kept_share_all_rows"] < 1.2 and abs(f["kept_share_sampled"] - f["kept_share_all_rows"]) < 0.1
        assert f["auto_writes"] == (dtype if f["kept_share_sampled"] >= merge_stream.KEEP_BAR else "float32")
    # bfloat16's grid is 8 times coarser than float16's: less of a short run's change survives it
    assert only["bases"]["bfloat16"]["kept_share_all_rows"] < only["bases"]["float16"]["kept_share_all_rows"]
    assert "auto writes" in proc.stdout and str(out) in proc.stdout
