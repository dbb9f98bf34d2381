"""The trainer process seen from its supervisor: outcomes in words, nothing lost when it dies."""

import json
import signal
import sys
import time

import pytest

from app import operations as ops
from app.supervisor import outcome_of
from core import planner, runtime_env
from tests.conftest import DEMO, REPO


@pytest.mark.parametrize("code,last,status,words", [
    (0, {"text": "finished 5 steps"}, "done", "finished 5 steps"),
    (3, None, "stopped", "stopped by you"),
    (5, {"text": "ran out of GPU memory at step 120"}, "failed", "at step 120"),
    (1, None, "failed", "see the log"),
    (1, {"text": "crashed (OSError: disk full); see the log"}, "failed", "crashed (OSError: disk full); see the log at"),
    (-signal.SIGKILL, None, "killed", "killed by SIGKILL"),
])
def test_exit_codes_become_sentences(tmp_path, code, last, status, words):
    outcome = outcome_of(code, last, tmp_path / "trainer.log")
    assert outcome.status == status and words in outcome.text and outcome.text.count("see the log") <= 1


def make_run(tiny_model_dir, **overrides):
    bundle = ops.make_plan(str(tiny_model_dir), str(DEMO), planner.Wishes(max_steps=overrides.pop("max_steps", 4)))
    return ops.create_run(bundle, project="sup", **overrides)


def packaged(tmp_path, monkeypatch):
    """This process as the packaged app sees itself: frozen, its executable running main.py with any arguments
    (what PyInstaller's executable does), so the trainer must be started through `--run-module`."""
    exe = tmp_path / "tuneforge"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{REPO / "main.py"}" "$@"\n')
    exe.chmod(0o755)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(exe))


@pytest.mark.parametrize("install", ["checkout", "packaged"])
def test_a_finished_run_is_recorded_by_the_trainer_itself(home, tiny_model_dir, tmp_path, monkeypatch, install):
    if install == "packaged":
        packaged(tmp_path, monkeypatch)
        assert runtime_env.module_command("core.trainer", "x.json")[1:] == ["--run-module", "core.trainer", "x.json"]
    cfg = make_run(tiny_model_dir, max_steps=3)
    seen = []
    job = ops.start_run(cfg.run_id, on_event=seen.append)
    outcome = job.wait(300)
    assert outcome.status == "done", (outcome, (home / "runs" / cfg.run_id / "trainer.log").read_text()[-2000:])
    assert [e["step"] for e in seen if e["event"] == "step"] == [1, 2, 3]
    at = {e["step"]: e["elapsed_s"] for e in seen if e["event"] == "step"}
    pace = next(e for e in seen if e["event"] == "calibration")["seconds_per_step"]
    assert 0 < pace < at[2] - at[1]  # the second step's alone: the first one's warm-up and the check after it left out
    run = ops.get_run(cfg.run_id)
    assert run["status"] == "done" and run["steps_done"] == 3 and run["final_loss"] > 0
    replay = [json.loads(x) for x in (home / "runs" / cfg.run_id / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in replay] == [e["event"] for e in seen]  # a later view can replay the run


def test_a_killed_trainer_loses_nothing_but_the_current_steps(home, tiny_model_dir):
    cfg = make_run(tiny_model_dir, max_steps=400, checkpoint_every=10)
    job = ops.start_run(cfg.run_id)
    ops_run_dir = home / "runs" / cfg.run_id
    deadline = time.time() + 240
    while not list((ops_run_dir / "checkpoints").glob("step-*")) and time.time() < deadline:
        time.sleep(0.2)
    # wait for the first checkpoint, then pull the plug without warning
    job.kill()
    outcome = job.wait(60)
    assert outcome.status == "killed"
    run = ops.get_run(cfg.run_id)
    assert run["status"] == "interrupted"  # marked running, but its process is gone
    resumed = ops.start_run(cfg.run_id, resume=True)
    time.sleep(0.1)
    resumed.stop()
    assert resumed.wait(300).status == "stopped"
    steps = [e["step"] for e in resumed.events if e["event"] == "step"]
    assert not steps or steps[0] >= 11  # continued after the checkpoint at step 10, not from zero
    assert any(e["event"] == "status" and "Resumed from the checkpoint at step 10" in e["text"] for e in resumed.events)


def test_a_run_too_slow_for_its_time_limit_cuts_itself_and_its_schedule(home, tiny_model_dir):
    """The trainer's own cut to the person's time limit (the plan's, by its estimate, is tested in
    tests/core/test_plan_length.py): here 100,000 steps would take far longer than the limit. After three steps
    the run knows its pace, ends sooner, and its learning rate ends on a tenth of the peak there; should it
    still run late (a loaded machine), it stops at the limit itself."""
    cfg = make_run(tiny_model_dir, max_steps=100_000, time_limit_s=3.0)
    job = ops.start_run(cfg.run_id)
    outcome = job.wait(300)
    run = ops.get_run(cfg.run_id)
    assert outcome.status == "done" and run["status"] == "done", outcome
    steps = [e for e in job.events if e["event"] == "step"]
    cut = [e["text"] for e in job.events if e["event"] == "status" and "would pass the time limit" in e["text"]]
    if run["steps_done"] < 3:  # a loaded machine: the limit came before the pace was known
        assert outcome.text.startswith("stopped at its time limit (3.0 s)") and not cut
        return
    assert cut and cut[0].startswith("At its pace, 100,000 steps would pass the time limit (3.0 s): the run ends at")
    assert run["total_steps"] < 100_000 and run["trained_s"] <= 3.0
    if outcome.text.startswith("finished"):
        assert steps[-1]["total_steps"] == run["total_steps"]
        assert outcome.text == (f"finished {run['steps_done']} steps, cut from 100,000 to end within its time limit "
                                "(3.0 s)") and run["steps_done"] == run["total_steps"]
        assert steps[-1]["lr"] == pytest.approx(cfg.lr / 10)
    else:  # the cut was not enough: the step that made it (or a later one) ran slower than the pace (a loaded machine)
        assert outcome.text == (f"stopped at its time limit (3.0 s) after {run['steps_done']} of "
                                f"{run['total_steps']} steps")
    assert (home / "runs" / cfg.run_id / "result" / "adapter_model.safetensors").is_file()
    assert steps[-1]["eta_s"] <= 3.0  # the ETA counts the limit, not the 100,000 steps
    assert [e["event"] for e in job.events if e["event"] in ("eval", "checkpoint", "done")][-3:] == \
        ["eval", "checkpoint", "done"]  # validated and saved at the end


def test_a_run_stops_at_its_time_limit_when_a_step_passes_it(home, tiny_model_dir):
    cfg = make_run(tiny_model_dir, max_steps=100_000, time_limit_s=0.01)  # any step takes longer
    outcome = ops.start_run(cfg.run_id).wait(300)
    assert (outcome.status, outcome.text) == ("done", "stopped at its time limit (under 0.1 s) after 1 of "
                                                 "100,000 steps")
    assert (home / "runs" / cfg.run_id / "result" / "adapter_model.safetensors").is_file()


def test_a_bad_config_fails_with_a_sentence(home, tiny_model_dir, capsys):
    cfg = make_run(tiny_model_dir)
    path = home / "runs" / cfg.run_id / "run.json"
    data = json.loads(path.read_text())
    data["data_path"] = str(home / "gone.jsonl")
    path.write_text(json.dumps(data))
    seen = []

    def broken_viewer(event):  # a window's handler with a bug: the supervisor still reads every event to the end
        seen.append(event)
        raise ValueError("a bug in the viewer")

    job = ops.start_run(cfg.run_id, on_event=broken_viewer)
    outcome = job.wait(120)
    assert outcome.status == "failed" and outcome.exit_code == 2 and "gone.jsonl: no such file" in outcome.text
    assert ops.get_run(cfg.run_id)["status"] == "failed"
    assert job.viewer_failed and len(seen) == len(job.events) > 1 and seen[-1]["event"] == "error"
    assert "Showing the run's progress failed (ValueError: a bug in the viewer); the run goes on." in \
        capsys.readouterr().err


def wait_for(events, predicate, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = [e for e in list(events) if predicate(e)]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no such event within {seconds} s; last: {events[-3:]}")


def test_pause_try_continue_and_stop_from_a_window_opened_later(home, tiny_model_dir):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    cfg = make_run(tiny_model_dir, max_steps=2000, tools=tools)  # as a run on data that offered tools
    job = ops.start_run(cfg.run_id)
    try:
        wait_for(job.events, lambda e: e["event"] == "step")
        follower = ops.attach_run(cfg.run_id)  # what the app does when reopened while a run trains
        wait_for(follower.events, lambda e: e["event"] == "step")  # the run so far is replayed
        assert follower.events[0]["event"] == job.events[0]["event"]

        follower.pause()
        paused = wait_for(job.events, lambda e: e["event"] == "paused")
        ask_id = follower.ask("Say hello.")
        answer = wait_for(follower.events, lambda e: e["event"] == "answer" and e["id"] == ask_id)
        assert "error" not in answer and isinstance(answer["text"], str) and answer["prompt"] == "Say hello."
        assert answer["tools"] == ["add"]  # the paused model is asked with the run's tools, as Try it asks
        turns = [{"role": "user", "content": "Say hello."}, {"role": "assistant", "content": answer["text"]}]
        again = follower.ask("And again?", turns)  # a follow-up, with the conversation so far
        second = wait_for(follower.events, lambda e: e["event"] == "answer" and e["id"] == again)
        assert (answer["seen_turns"], second["seen_turns"], second["prompt"]) == (0, 2, "And again?")
        assert paused["tools"] == tools  # the paused page offers them too, to find the model's calls
        from tests.tool_model import CALLED

        after = follower.ask(None, CALLED)  # goes on from the result given to the model's call
        third = wait_for(follower.events, lambda e: e["event"] == "answer" and e["id"] == after)
        assert "error" not in third and third["prompt"] is None and third["seen_turns"] == 3
        nothing = follower.ask(None, CALLED[:2])  # no result to go on from: an answer that says so, not silence
        fourth = wait_for(follower.events, lambda e: e["event"] == "answer" and e["id"] == nothing)
        assert fourth["error"] == "ValueError: there is no tool result to go on from; ask a question"
        steps = [e["step"] for e in job.events if e["event"] == "step"]
        assert steps[-1] == paused["step"]  # no step trains while paused

        follower.pause(False)
        wait_for(job.events, lambda e: e["event"] == "step" and e["step"] > paused["step"])
        follower.stop()
        assert follower.wait(60).status == "stopped"
        assert job.wait(60).status == "stopped"
        kinds = [e["kind"] for e in ops.open_history().events(cfg.run_id)]
        assert "paused" in kinds and "resumed" in kinds
        resumed = next(e for e in job.events if e["event"] == "resumed")
        run = ops.get_run(cfg.run_id)  # the time it trained leaves the pause out
        assert 0 < run["trained_s"] <= run["ended_at"] - run["started_at"] - (resumed["at"] - paused["at"]) + 0.1
    finally:
        job.kill()
