"""The tokenizing benchmark as a real process on a few hundred rows: it writes the JSON it promises
and checks for itself that the per-row and batched methods agree. Its speed is not tested here."""

import json
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "tokenize_speed.py"


def test_small_run_writes_its_figures_and_agrees(tmp_path, default_model_dir):
    out = tmp_path / "tokenize.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--rows", "500", "--model", str(default_model_dir),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["rows"] == 500 and result["agree"] is True and result["mismatches"] == []
    for method in ("per_row", "batched", "unique_questions"):
        assert result[method]["rows_per_s"] > 0 and result[method]["seconds"] > 0 and result[method]["cpu_s"] > 0
    assert len(result["batched"]["runs_s"]) == 3 and result["unique_questions"]["agree"] is True
    # The default model's template and tokenizer take both shortcuts, and say why.
    shortcuts = result["shortcuts"]
    assert shortcuts["per_row_render_skipped"] and shortcuts["tokenized_by_pieces"]
    assert shortcuts["render"] and shortcuts["tokenize"]
    assert result["ratio"] > 0 and result["goal_rows_per_s"] == 20_000 and isinstance(result["meets_goal"], bool)
    assert result["device"]["cpu"] and result["device"]["cores_logical"] >= 1
    assert "--rows 500" in result["command"] and result["tokens_per_row_mean"] > 10
    assert "rows/s" in proc.stdout and str(out) in proc.stdout


def test_rows_are_varied_and_fixed_by_seed():
    sys.path.insert(0, str(REPO))
    from benchmarks.tokenize_speed import chat_rows, unique_questions

    rows = chat_rows(300)
    assert rows == chat_rows(300)
    assert len({json.dumps(r.messages) for r in rows}) == 300
    assert any(r.messages[0]["role"] == "system" for r in rows) and any(len(r.messages) >= 4 for r in rows)
    questions = [m["content"] for r in unique_questions(rows) for m in r.messages if m["role"] == "user"]
    assert len(set(questions)) == len(questions)
