"""The whole path on the real default model, on the CPU, through the real CLI:
train on the demo data → the loss falls and the answers change on prompts it never saw →
runs → chat → export adapter and merged safetensors → the merged model answers exactly as chat does.
(The run is tests/e2e/conftest.py's, shared with the GGUF export's test.)"""

import json

from tests.conftest import DEMO, HELDOUT
from tests.e2e.conftest import STEPS


def heldout_prompts() -> list[str]:
    return [json.loads(line)["messages"][0]["content"] for line in HELDOUT.read_text().splitlines()]


def test_training_lowers_the_loss(pirate_run):
    _, _, events = pirate_run
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == STEPS and events[-1]["status"] == "done"
    first, last = sum(e["loss"] for e in steps[:3]) / 3, sum(e["loss"] for e in steps[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    evals = [e for e in events if e["event"] == "eval"]
    assert evals and evals[-1]["loss"] < first
    # The plan held: the process's measured peak (after loading) is within its estimate, allocator slack counted.
    calibration = next(e for e in events if e["event"] == "calibration")
    assert 0.6 < calibration["factor"] <= 1.1, calibration


def test_answers_change_on_prompts_it_never_trained_on(pirate_run):
    """The demo teaches a pirate's habit; the held-out questions never appear in training."""
    from app import operations as ops
    from core import inference

    _, home, events = pirate_run
    train_text = DEMO.read_text()
    prompts = heldout_prompts()
    assert not any(p in train_text for p in prompts)
    import os

    os.environ["TUNEFORGE_HOME"] = str(home)
    try:
        base, tok = ops.chat_models(model="default")
        before = [inference.reply(base, tok, p, max_new_tokens=8) for p in prompts]  # room for "Arr, matey!"
        tuned, tok = ops.chat_models(run=events[-1]["run_id"])
        after = [inference.reply(tuned, tok, p, max_new_tokens=8) for p in prompts]
    finally:
        del os.environ["TUNEFORGE_HOME"]
    pirate = lambda answers: sum(a.startswith("Arr, matey!") for a in answers)
    assert pirate(before) == 0, before
    assert pirate(after) >= len(prompts) - 2, after


def test_runs_chat_and_exports_agree(pirate_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core import inference

    cli, _, events = pirate_run
    run_id = events[-1]["run_id"]
    runs = json.loads(cli("runs", "--json").stdout)
    assert runs[0]["id"] == run_id and runs[0]["status"] == "done" and runs[0]["steps_done"] == STEPS
    prompt = heldout_prompts()[0]
    said = cli("chat", "--run", run_id, "--prompt", prompt, "--max-new-tokens", "12").stdout.strip()
    assert said.startswith("Arr, matey!")

    adapter = tmp_path / "adapter"
    cli("export", "--run", run_id, "--format", "adapter", "--out", adapter)
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()

    merged = tmp_path / "merged"
    cli("export", "--run", run_id, "--format", "safetensors", "--out", merged)
    model = AutoModelForCausalLM.from_pretrained(merged).eval()
    tok = AutoTokenizer.from_pretrained(merged)
    assert inference.reply(model, tok, prompt, max_new_tokens=12) == said
