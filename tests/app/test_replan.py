"""Running out of memory is not the end of a run: the trainer reports it, the planner re-plans from
what the crash proved, and the run continues by itself. Made real on the CPU with a memory cap (the
trainer holds itself to it with RLIMIT_DATA, so going over is a genuine allocation failure)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core import cpu_share
from tests.conftest import DEMO, REPO, json_lines, write_jsonl

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CPU memory cap uses RLIMIT_DATA")

GIB = 1024**3


def loaded_trainer_bytes(model_dir) -> int:
    """What a trainer process holds before its first step: the libraries plus the tiny model."""
    code = ("import re, sys; import torch, transformers, peft, sqlite_utils, psutil;"
            "from core import checkpoint, history, strategies; from core.data import dataset, tokenize;"
            "from transformers import AutoModelForCausalLM as M, AutoTokenizer as T;"
            f"M.from_pretrained({str(model_dir)!r}); T.from_pretrained({str(model_dir)!r});"
            "print(re.search(r'VmData:\\s+(\\d+)', open('/proc/self/status').read()).group(1))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) * 1024


def long_rows(n=48):
    story = " ".join(f"The ship number {i} sailed past the lighthouse at dawn and the crew sang." for i in range(12))
    return [{"messages": [{"role": "user", "content": f"Tell story {k}."},
                          {"role": "assistant", "content": story}]} for k in range(n)]


def test_out_of_memory_re_plans_and_continues(cli_here, home, tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "long.jsonl", long_rows())
    # Room for about 4 rows of ~200 tokens (logits dominate: 49k vocab × 12 bytes per token), not 16.
    cap = loaded_trainer_bytes(tiny_model_dir) + int(0.75 * GIB)
    proc = cli_here("train", "--model", tiny_model_dir, "--data", data, "--device", "cpu", "--strategy", "lora",
                    "--batch-size", "16", "--grad-accum", "1", "--no-checkpointing", "--max-steps", "2",
                    "--memory-cap", f"{cap / GIB:.3f}", "--json", check=0)
    events = json_lines(proc.stdout)
    kinds = [e["event"] for e in events]
    oom = next(e for e in events if e["event"] == "error")
    assert oom["kind"] == "oom" and oom["step"] == 0 and oom["peak"]["process"] > 0
    replan = next(e for e in events if e["event"] == "replan")
    assert "out of memory" in replan["text"]
    assert kinds.index("error") < kinds.index("replan") < kinds.index("done")
    assert events[-1]["status"] == "done"
    run_id = events[-1]["run_id"]

    plans = json.loads(cli_here("plans", "--run", run_id, "--json", check=0).stdout)
    assert [p["reason"] for p in plans][0] == "first plan" and len(plans) >= 2
    first, last = plans[0]["plan"], plans[-1]["plan"]
    assert first["micro_batch"] == 16
    assert last["micro_batch"] < 16 or last["gradient_checkpointing"]
    assert last["micro_batch"] * last["grad_accum"] == 16  # same examples per step: same trajectory
    assert "out of memory at step 0" in plans[1]["reason"]
    # The run that finished measured its peak after two steps and recorded it against its plan.
    calibration = plans[-1]["calibration"]
    assert calibration["device"] == "cpu" and 0 < calibration["measured"]["process"] <= cap
    if Path("/proc/self/clear_refs").exists():  # Linux: training's peak is measured apart from loading's
        assert calibration["measured"]["loading"] > 0
    assert calibration["factor"] == pytest.approx(calibration["measured"]["process"] / calibration["predicted_bytes"],
                                                  rel=1e-3)
    run = json.loads((home / "runs" / run_id / "run.json").read_text())
    assert run["micro_batch"] == last["micro_batch"] and run["memory_cap_bytes"] == pytest.approx(cap, abs=GIB / 1000)
    text = cli_here("plans", "--run", run_id, check=0).stdout
    assert "Plan 1 (first plan)" in text and "Plan 2 (Re-planned after running out of memory" in text

    # The next plan for this model and strategy here starts from the measured figures.
    again = json_lines(cli_here("plan", "--model", tiny_model_dir, "--data", data, "--device", "cpu",
                                "--strategy", "lora", "--json", check=0).stdout)[0]["plan"]
    if 0.5 <= calibration["factor"] <= 2.0:
        assert again["calibration"]["factor"] == calibration["factor"]
        assert any("Memory estimates scaled" in r and "measured on run" in r for r in again["reasons"])
    # Its pace is kept unless other programs took more than their share of the CPU meanwhile (core/cpu_share.py).
    others = calibration.get("others")  # absent over steps too short to measure it by
    assert others is None or 0 <= others <= 1
    if others is not None and others > cpu_share.OTHERS_MAX:
        assert calibration["time_factor"] is None and "other programs used" in calibration["pace_note"]
        return
    assert calibration["time_factor"] == pytest.approx(
        calibration["seconds_per_step"] / calibration["predicted_seconds_per_step"], rel=1e-2)
    if 0.1 <= calibration["time_factor"] <= 10:
        assert again["calibration"]["time_factor"] == calibration["time_factor"]
        assert any("Time per step scaled" in r for r in again["reasons"])


def test_a_run_forced_past_its_cap_keeps_the_heap_lean_and_fits(cli_here, home, tiny_model_dir, tmp_path):
    """Settings forced over the memory cap by less than the plan's allocator slack: the trainer hands freed blocks
    back to the system at once (glibc), says so, and finishes at the micro-batch asked for, without re-planning."""
    data = write_jsonl(tmp_path / "long.jsonl", long_rows())
    forced = ["--model", tiny_model_dir, "--data", data, "--device", "cpu", "--strategy", "lora", "--batch-size", "4",
              "--grad-accum", "1", "--no-checkpointing"]
    terms = json_lines(cli_here("plan", *forced, "--json", check=0).stdout)[0]["plan"]["memory"]
    cap = sum(terms.values()) - terms["allocator slack"] // 2
    events = json_lines(cli_here("train", *forced, "--max-steps", "2", "--memory-cap", f"{cap / GIB:.3f}", "--json",
                                 check=0).stdout)
    assert not [e for e in events if e["event"] in ("error", "replan")] and events[-1]["status"] == "done"
    assert [e["text"] for e in events if e["event"] == "status" and "RAM is short" in e["text"]] == [
        f"RAM is short of the plan: freed memory goes back to the system at once "
        f"({terms['allocator slack'] / GIB:.1f} GiB less at the peak; steps take longer)"]
    calibration = next(e for e in events if e["event"] == "calibration")
    assert calibration["predicted_bytes"] == sum(terms.values()) - terms["allocator slack"]
    assert calibration["lean_heap"] and calibration["time_factor"] is None
    assert calibration["measured"]["process"] <= calibration["predicted_bytes"] * 1.1


def test_a_kernel_that_fails_on_the_gpu_is_planned_out_and_the_run_goes_on(cli, cli_here, home, tiny_model_dir):
    """Our RMSNorm kernel's launch raises Triton's OutOfResources (injected by tests/app/kernel_fault, as a GPU with
    too little shared memory raises it): the trainer names the kernel, re-plans without it and finishes the run.
    The kernels run on the CPU in Triton's interpreter, as in tests/kernels."""
    env = {"TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO / "tests" / "app" / "kernel_fault"),
           "TUNEFORGE_TEST_BROKEN_KERNEL": "rmsnorm"}
    proc = cli("train", "--model", tiny_model_dir, "--data", DEMO, "--device", "cpu", "--strategy", "lora",
               "--kernels", "rmsnorm,swiglu", "--max-steps", "2", "--json", env=env, check=0)
    events = json_lines(proc.stdout)
    # the first forward (packing's check, before the start event) already fails; the second session starts
    order = [e["event"] for e in events if e["event"] in ("error", "replan", "start")]
    assert order == ["error", "replan", "start"], order
    assert next(e for e in events if e["event"] == "start")["kernels"] == ["swiglu"]
    error = next(e for e in events if e["event"] == "error")
    assert error["kind"] == "kernel" and error["kernels"] == ["rmsnorm"] and error["step"] == 0
    assert error["text"] == ("our rmsnorm kernel failed at step 0 (OutOfResources: out of resource: shared memory, "
                             "Required: 262144, Hardware limit: 101376. Reducing block sizes or `num_stages` may "
                             "help.)")
    replan = next(e for e in events if e["event"] == "replan")
    assert replan["cause"] == "kernel" and replan["text"].startswith("Re-planned at step 0: our rmsnorm kernel failed")
    assert events[-1]["status"] == "done"
    run_id = events[-1]["run_id"]

    run = json.loads((home / "runs" / run_id / "run.json").read_text())
    assert run["kernels"] == run["plan"]["kernels"] == ["swiglu"]
    plans = json.loads(cli_here("plans", "--run", run_id, "--json", check=0).stdout)
    assert [p["plan"]["kernels"] for p in plans] == [["rmsnorm", "swiglu"], ["swiglu"]]
    assert plans[1]["reason"].startswith("Re-planned at step 0: our rmsnorm kernel failed on this GPU")
    log = (home / "runs" / run_id / "trainer.log").read_text()
    assert "OutOfResources" in log and "tuneforge_kernels/rmsnorm.py" in log  # the traceback stays in the run's log


@pytest.mark.alone  # (it measures the load of every program on the machine)
def test_a_pace_measured_while_other_programs_keep_the_cpu_busy_is_not_kept(cli_here, home, tiny_model_dir, tmp_path,
                                                                           monkeypatch):
    """Another program on half the cores while the run measures its pace: the peak is recorded, the pace is not, and
    the next plan keeps the speed model's own time per step (core/cpu_share.py)."""
    data = write_jsonl(tmp_path / "long.jsonl", long_rows())
    args = ["--model", tiny_model_dir, "--data", data, "--device", "cpu", "--strategy", "lora", "--batch-size", "16",
            "--grad-accum", "1", "--no-checkpointing"]
    # Busy from the run's first step (its pace counts the steps after it) to its calibration, so the run starts and
    # ends at full speed.
    spin = ("import glob, time\n"
            f"said = lambda word: any(word in open(f).read() for f in glob.glob({str(home / 'runs')!r} + "
            "'/*/events.jsonl'))\n"
            "while not said('\"step\"'): time.sleep(0.02)\n"
            "end = time.time() + 120\n"
            "while time.time() < end and not said('\"calibration\"'):\n"
            "    stop = time.time() + 0.05\n"
            "    while time.time() < stop: pass\n")
    # The trainer on the other half (one thread a core): the same share of the CPU went to others, without torch's
    # threads waiting on a core the other program holds, which makes a step many times slower.
    monkeypatch.setenv("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // 2)))
    spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(max(1, (os.cpu_count() or 1) // 2))]
    try:
        events = json_lines(cli_here("train", *args, "--max-steps", "2", "--json", check=0).stdout)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    calibration = next(e for e in events if e["event"] == "calibration")
    assert calibration["seconds_per_step"] * (os.cpu_count() or 1) >= cpu_share.SHORTEST_S, calibration
    assert calibration["others"] > cpu_share.OTHERS_MAX and calibration["time_factor"] is None
    assert calibration["factor"] > 0, calibration  # the peak is measured all the same
    text = cli_here("plans", "--run", events[-1]["run_id"], check=0).stdout
    assert "its pace is not kept: other programs used" in text
    again = json_lines(cli_here("plan", *args, "--json", check=0).stdout)[0]["plan"]
    assert again["calibration"]["factor"] == calibration["factor"] and again["calibration"]["time_factor"] == 1.0
    assert not any("Time per step scaled" in r for r in again["reasons"])
