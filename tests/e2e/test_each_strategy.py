"""Each built strategy trains the real default model through the real CLI (`train --strategy NAME`),
records its settings, saves a result in its own layout, that result answers through `chat`, and a new run goes
on from a qlora run's (`train --from`). Going on is proven exactly in tests/app/test_going_on.py for lora's
adapter and full's whole model; dora and offload go on through lora's code (`Lora.start_from`), lisa through
full's (a whole model as the start), so only qlora's adapter over a 4-bit base is gone on from here."""

import pytest

from core import strategies
from tests.conftest import DEMO, json_lines

BUILT = [name for name, s in strategies.REGISTRY.items() if s.built]
GONE_ON_HERE = ("qlora",)
EXTRA = {"lisa": ["--option", "layers=2", "--option", "interval=1"]}  # switch layers on every step


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "pirate16.jsonl"
    path.write_text("".join(DEMO.read_text(encoding="utf-8").splitlines(keepends=True)[:16]), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", BUILT)
def test_strategy_trains_the_default_model_from_the_command_line(name, cli_here, home, default_model_dir, small_data):
    # The CLI's entry in this process (the trainer is a process of its own either way; tests/app/test_cli.py and
    # tests/e2e/test_default_path.py run the CLI itself as a process): an interpreter start saved per call.
    proc = cli_here("train", "--model", "default", "--data", small_data, "--strategy", name, "--device", "cpu",
                    "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--seq-len", "128", "--json",
                    *EXTRA.get(name, []), check=0)
    events = json_lines(proc.stdout)
    plan = events[0]["plan"]
    assert events[0]["event"] == "plan" and plan["strategy"] == name
    assert plan["options"] == strategies.get(name).options(plan["options"]).__dict__  # every setting, typed
    start = next(e for e in events if e["event"] == "start")
    assert start["strategy"] == name and start["options"] == plan["options"] and start["trainable_params"] > 0
    assert start["kernels"] == []  # 'auto' on a CPU: the plain PyTorch path (tests/kernels runs ours)
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2] and all(0 < e["loss"] < 20 for e in steps)
    assert [e["status"] for e in events if e["event"] == "done"] == ["done"]
    if name == "lisa":
        switches = [e["text"] for e in events if e["event"] == "status" and e["text"].startswith("Training layers")]
        assert len(switches) == 2, switches

    run_id = events[0]["run_id"]
    result = home / "runs" / run_id / "result"
    layout = "adapter_model.safetensors" if strategies.get(name).result == "adapter" else "model.safetensors"
    assert (result / layout).is_file(), sorted(p.name for p in result.iterdir())
    answer = cli_here("chat", "--run", run_id, "--prompt", "Where is the treasure?", "--max-new-tokens", "6", check=0)
    assert answer.stdout.strip()
    # Going on from the result (train --from): the new run's first step, on the same first batch, starts lower.
    # (An adapter's and a whole model's, lora's and full's, are proven exactly in tests/app/test_going_on.py.)
    if name in GONE_ON_HERE:
        more = json_lines(cli_here("train", "--from", run_id, "--data", small_data, "--device", "cpu", "--max-steps",
                                   "1", "--batch-size", "2", "--grad-accum", "1", "--seq-len", "128", "--json",
                                   *EXTRA.get(name, []), check=0).stdout)
        first = next(e for e in more if e["event"] == "step")
        assert more[0]["plan"]["strategy"] == name and first["loss"] < steps[0]["loss"], (first, steps[0])
    if strategies.get(name).result == "model":  # the whole model was saved: export it without a base or merge
        out = home / "exported"
        cli_here("export", "--run", run_id, "--format", "safetensors", "--out", out, check=0)
        assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
        refused = cli_here("export", "--run", run_id, "--format", "adapter", "--out", home / "adapter", check=2)
        assert "there is no adapter" in refused.stderr
