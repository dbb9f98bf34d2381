"""The command line as scripts use it: real processes, real files, real SQLite, a tiny model."""

import json
import math
import os
import signal
import subprocess
import sys

import pytest

from core import other_apps
from core.export import folder_size
from core.plan_text import size_text
from tests.conftest import DEMO, REPO, json_lines, write_jsonl


@pytest.mark.parametrize("args,words", [
    (["train", "--model", "default"], "the following arguments are required: --data"),
    (["train", "--model", "default", "--data", "nope.jsonl"], "nope.jsonl: no such file"),
    (["train", "--model", "/no/such/folder", "--data", str(DEMO)], "nothing is downloaded"),
    (["train", "--model", "default", "--data", str(DEMO), "--max-steps", "0"], "--max-steps must be above 0"),
    (["train", "--model", "default", "--data", str(DEMO), "--max-steps", "ten"], "invalid int value"),
    (["train", "--model", "default", "--data", str(DEMO), "--stop-early", "-1"], "--stop-early must be 0 (off)"),
    (["plan", "--model", "default", "--data", str(DEMO), "--time-limit", "soon"],
     "--time-limit soon: expected a duration above zero, such as 45m, 2h or 1h30m."),
    (["plan", "--model", "default", "--data", str(DEMO), "--eval-data", str(DEMO), "--eval-fraction", "0.1"],
     "give one of them"),
    (["chat", "--run", "nope", "--prompt", "hi"], "No run 'nope'"),
    (["chat", "--model", "default", "--prompt", "hi", "--temperature", "-1"], "--temperature -1: give 0"),
    (["chat", "--model", "default", "hello", "--prompt", "hi"], "Both 'hello' and --prompt ask a question"),
    (["export", "--run", "nope", "--format", "zip", "--out", "x"], "invalid choice"),
    (["resume", "--run", "last"], "no runs yet"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_are_one_sentence(cli, args, words):
    proc = cli(*args)
    assert proc.returncode != 0
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_profile_json_describes_this_machine(cli):
    prof = json.loads(cli("profile", "--json", check=0).stdout)
    assert prof["cores_logical"] >= 1 and prof["ram_total_bytes"] > 1 << 30
    assert isinstance(prof["gpus"], list) and prof["disk_free_bytes"] > 0
    assert prof["disk_write_bytes_per_s"] > 0 and prof["disk_read_bytes_per_s"] > 0


def test_data_inspect(cli_here, tmp_path, tiny_model_dir):
    report = json.loads(cli_here("data", "inspect", DEMO, "--model", tiny_model_dir, "--json", check=0).stdout)
    assert report["format"] == "messages" and report["rows"] == 202 and report["problems"] == 0
    assert 30 < report["tokens"]["median"] < report["tokens"]["max"] < 100
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"messages": [', {"prompt": "q", "completion": "a"}])
    proc = cli_here("data", "inspect", bad, check=0)
    assert "1 usable row," in proc.stdout and "bad.jsonl:1: broken JSON" in proc.stdout
    assert "Duplicates:" not in proc.stdout
    twice = write_jsonl(tmp_path / "twice.jsonl", [{"prompt": "q", "completion": "a"}] * 3)
    assert "Duplicates: 2 rows repeat an earlier one; training keeps them, and a held-out row's copies leave " \
           "training with it" in cli_here("data", "inspect", twice, check=0).stdout
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert cli_here("data", "inspect", empty).returncode != 0
    stopped = cli_here("data", "inspect", bad, "--bad-rows", "stop")
    assert stopped.returncode != 0 and "bad.jsonl:1: broken JSON" in stopped.stderr


def test_data_inspect_with_a_column_mapping_and_a_row_longer_than_the_context(cli, cli_here, home, tmp_path,
                                                                               tiny_model_dir):
    """A spreadsheet with its own column names, read through --map; the tiny model's context is 256 tokens."""
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("question_text,answer_text\nWhat is the capital of Peru?,Lima.\n"
                     f"Tell me a long story.,{'And then the ship sailed on. ' * 80}\n", encoding="utf-8")
    unmapped = cli_here("data", "inspect", sheet)
    assert unmapped.returncode != 0 and "no known schema" in unmapped.stderr
    report = json.loads(cli_here("data", "inspect", sheet, "--model", tiny_model_dir, "--json",
                            "--map", "prompt=question_text", "--map", "completion=answer_text", check=0).stdout)
    assert (report["format"], report["rows"], report["longer_than_context"]) == ("prompt_completion", 2, 1)
    assert any(p.startswith("sheet.csv:row 3: ") and "longer than the model's context (256)" in p
               for p in report["problem_list"])
    wrong = cli_here("data", "inspect", sheet, "--map", "prompt")
    assert wrong.returncode != 0 and "expected FIELD=COLUMN" in wrong.stderr
    # The run is read the same way: the mapping travels in its config file.
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", sheet, "--map", "prompt=question_text",
                                 "--map", "completion=answer_text", "--max-steps", "1", "--device", "cpu", "--json",
                                 check=0).stdout)
    assert [e["status"] for e in events if e["event"] == "done"] == ["done"]
    run = json.loads((home / "runs" / events[0]["run_id"] / "run.json").read_text())
    assert run["data_mapping"] == {"prompt": "question_text", "completion": "answer_text"}
    assert run["train_on"] == "assistant"  # (supervised: every assistant turn; a pair objective's, the last)


def test_plan_for_another_machine(cli_here, tiny_model_dir):
    proc = cli_here("plan", "--model", tiny_model_dir, "--data", DEMO, "--hardware",
               REPO / "resources" / "hardware" / "gpu-24gb.json", "--json", check=0)
    plan = json.loads(proc.stdout)["plan"]
    assert plan["device"] == "cuda" and plan["precision"] == "bf16" and plan["reasons"] and plan["kernels"] == "auto"
    off = cli_here("plan", "--model", tiny_model_dir, "--data", DEMO, "--hardware",
                   REPO / "resources" / "hardware" / "gpu-24gb.json", "--kernels", "none", "--no-keep-best",
                   "--stop-early", "0", "--json", check=0)
    plan = json.loads(off.stdout)["plan"]
    assert plan["kernels"] == [] and "Our kernels are off, as you asked." in " ".join(plan["reasons"])
    assert (plan["keep_best"], plan["stop_early"]) == (False, 0) and "weights of the lowest validation loss" \
        not in plan["disk"]
    bad = cli_here("plan", "--model", tiny_model_dir, "--data", DEMO, "--kernels", "rmsnorm,fast", check=2)
    assert bad.stderr.strip() == ("error: --kernels rmsnorm,fast: expected auto, none or names from rmsnorm, swiglu, "
                                  "rope, cross_entropy, lora, comma-separated."), bad.stderr


def test_a_model_whose_weights_are_not_here_yet_is_planned_for_and_not_trained(cli_here, tiny_model_dir, tmp_path):
    """See what a model would take before fetching its weights: its config and tokenizer are enough for a plan,
    which says what training it needs besides; `train` refuses, before anything starts."""
    light = tmp_path / "light"
    light.mkdir()
    for f in tiny_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            (light / f.name).write_bytes(f.read_bytes())
    gpu = REPO / "resources" / "hardware" / "gpu-24gb.json"
    shown = cli_here("plan", "--model", light, "--data", DEMO, "--hardware", gpu, check=0).stdout.splitlines()
    assert shown[1] == "Plan only: the model folder lacks weights (*.safetensors); copy the whole model folder to " \
                       "train it." and any(line.startswith("Strategy: ") for line in shown)
    whole = json.loads(cli_here("plan", "--model", tiny_model_dir, "--data", DEMO, "--hardware", gpu, "--json",
                                check=0).stdout)
    light_plan = json.loads(cli_here("plan", "--model", light, "--data", DEMO, "--hardware", gpu, "--json",
                                     check=0).stdout)
    assert light_plan["plan"] == whole["plan"] and whole["model_missing"] == "" and light_plan["model_missing"]
    refused = cli_here("train", "--model", light, "--data", DEMO)
    assert refused.returncode != 0 and "lacks weights" in refused.stderr
    assert json.loads(cli_here("runs", "--json", check=0).stdout) == []


def test_a_gguf_is_planned_for_from_its_header_and_converted_only_to_train(cli_here, home, default_model_dir,
                                                                           tmp_path):
    """`plan` and `data inspect` read a GGUF not converted yet from its header (a 4-bit 8B file converted writes
    16 GB first): the plan is the converted model's, and no model folder is written."""
    from core import model_source

    gguf = tmp_path / "pirate.gguf"
    gguf.symlink_to(model_source.default_gguf())
    gpu = REPO / "resources" / "hardware" / "gpu-24gb.json"
    planned = cli_here("plan", "--model", gguf, "--data", DEMO, "--hardware", gpu, "--json", check=0)
    converted = cli_here("plan", "--model", "default", "--data", DEMO, "--hardware", gpu, "--json", check=0)
    assert json.loads(planned.stdout)["plan"] == json.loads(converted.stdout)["plan"]
    said = cli_here("plan", "--model", gguf, "--data", DEMO, "--hardware", gpu, check=0).stdout.splitlines()
    assert said[:2] == [f"Model: pirate ({gguf})", "The model was read from pirate.gguf's header alone; a run "
                        "converts it into a model folder first (once)."]
    inspected = json.loads(cli_here("data", "inspect", DEMO, "--model", gguf, "--json", check=0).stdout)
    assert inspected["tokens"]["count"] == 202
    folders = [f.name for f in (home / "models").iterdir() if f.name != default_model_dir.name]
    assert len(folders) == 1 and folders[0].startswith(".shape-pirate-")  # hidden from the model list
    assert not list((home / "models" / folders[0]).glob("*.safetensors"))


def test_strategies_lists_each_one_and_its_settings_with_their_help(cli_here):
    """Every registered strategy and every setting, its help wrapped under it (a paragraph on one line of 400
    characters was hard to read); --json has them whole."""
    from core import strategies

    listed = json.loads(cli_here("strategies", "--json", check=0).stdout)
    assert [s["name"] for s in listed] == list(strategies.REGISTRY)
    assert all(o["help"] for s in listed for o in s["options"])
    lines = cli_here("strategies", check=0).stdout.splitlines()
    assert max(map(len, lines)) <= 100
    heads = [line for line in lines if not line.startswith(" ")]
    assert [h.split(":")[0].removesuffix(" (planned, not built yet)") for h in heads] == list(strategies.REGISTRY)
    settings = [line.split(" = ")[0].strip() for line in lines if line.startswith("    ") and line[4] != " "]
    assert settings == [o["name"] for s in listed for o in s["options"]]
    text = " ".join(line.strip() for line in lines)
    assert all(" ".join(o["help"].split()) in text for s in listed for o in s["options"])


def train_json(cli, model, *extra, env=None):
    proc = cli("train", "--model", model, "--data", DEMO, "--json", *extra, check=0, **({"env": env} if env else {}))
    events = json_lines(proc.stdout)
    return events, events[-1]["run_id"]


def test_train_runs_chat_export_on_a_tiny_model(cli, cli_here, home, tiny_model_dir, tmp_path, ollama_here):
    events, run_id = train_json(cli, tiny_model_dir, "--max-steps", "6", "--lr", "5e-3", "--project", "tiny",
                                "--name", "  tiny,   first ", "--kernels", "rmsnorm,rope",
                                env={"TRITON_INTERPRET": "0"})  # (tests/kernels sets 1)
    assert json.loads((home / "runs" / run_id / "run.json").read_text())["kernels"] == ["rmsnorm", "rope"]
    assert next(e for e in events if e["event"] == "start")["kernels"] == []  # asked for, but no GPU here
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 7))
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert events[-1]["status"] == "done"
    runs = json.loads(cli_here("runs", "--json", check=0).stdout)
    assert runs[0]["id"] == run_id and runs[0]["status"] == "done" and runs[0]["project"] == "tiny"
    listed = cli_here("runs", "--project", "tiny", check=0).stdout.splitlines()
    assert listed[0].split() == ["run", "project", "status", "strategy", "steps", "loss", "disk", "model"]
    line = listed[1].split()  # ... 6/6, the loss, what its folder holds (e.g. '323 KB'), the model
    held = size_text(folder_size(home / "runs" / run_id))
    assert line[:3] == [run_id, "tiny", "done"] and " ".join(line[6:8]) == held
    assert listed[1].endswith("  “tiny, first”") and runs[0]["name"] == "tiny, first"  # its blanks folded
    # The name stands for the id wherever a run is asked for (here and in chat below); renaming changes it.
    assert cli_here("plans", "--run", "tiny, first", "--json", check=0).stdout == cli_here(
        "plans", "--run", run_id, "--json", check=0).stdout
    assert cli_here("rename", "last", "tiny", check=0).stdout == f"Run {run_id} is now named 'tiny'.\n"
    chat = cli("chat", "--run", "tiny", "--prompt", "hi", "--max-new-tokens", "5", check=0)
    assert chat.stdout.strip() and chat.stderr == ""  # the reply alone: no library's warning beside it
    assert cli("chat", "--run", "tiny", "hi", "--max-new-tokens", "5", check=0).stdout == chat.stdout  # as --prompt
    out = tmp_path / "adapter"
    exported = cli("export", "--run", run_id, "--format", "adapter", "--out", out, check=0)
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    # its model card, from the history: the run's data by name, its losses, the plan's reasons; peft's template gone
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"Model card: {out / 'README.md'} says" in exported.stdout and f"history of run {run_id} (tiny)" in card
    assert "pirate_chat.jsonl: " in card and "Training loss: " in card and "at step 6." in card
    assert "More Information Needed" not in card and str(tiny_model_dir) not in card
    # `show`: the run as History's detail has it, its export listed where it went
    shown = cli_here("show", "tiny", check=0).stdout
    assert shown.startswith(f"Run {run_id} “tiny” in project tiny: done") and "\nMethod         LoRA: " in shown
    assert "- Training loss: " in shown and "  adapter" in shown and str(out) in shown
    detail = json.loads(cli_here("show", run_id, "--json", check=0).stdout)
    assert [e["path"] for e in detail["exports"]] == [str(out)] and len(detail["train"]) == 6
    assert detail["weights"]["step"] in (6, detail["validation"][-1][0]) and detail["plans"] == 1
    missing = cli_here("show", "no-such-run")
    assert missing.returncode != 0 and "No run 'no-such-run'" in missing.stderr and "Traceback" not in missing.stderr
    again = cli_here("export", "--run", run_id, "--format", "adapter", "--out", out)
    assert again.returncode != 0 and "already exists" in again.stderr
    lm = cli_here("export", "--run", run_id, "--format", "adapter", "--out", tmp_path / "lm", "--lmstudio")
    assert lm.returncode != 0 and "export with --format gguf" in lm.stderr and not (tmp_path / "lm").exists()
    gguf = cli_here("export", "--run", run_id, "--format", "gguf", "--quant", "q3", "--out", tmp_path / "m.gguf")
    assert gguf.returncode != 0 and "invalid choice: 'q3'" in gguf.stderr and not (tmp_path / "m.gguf").exists()
    # --ollama hands a GGUF export to Ollama (tests/core/ollama_program.py plays it), the name checked before any work
    ol = tmp_path / "ol"
    refused = cli_here("export", "--run", run_id, "--format", "adapter", "--out", ol, "--ollama", "pirate")
    assert refused.returncode != 0 and "export with --format gguf" in refused.stderr and not ol.exists()
    given = cli_here("export", "--run", run_id, "--format", "gguf", "--quant", "f16", "--out", ol, "--ollama", "pirate",
                     check=0)
    assert "Ollama has it as pirate:latest: ollama run pirate:latest\n" in given.stdout
    assert other_apps.ollama_model("pirate").gguf.read_bytes() == next(ol.glob("*.f16.gguf")).read_bytes()
    taken = cli_here("export", "--run", run_id, "--format", "gguf", "--out", tmp_path / "ol2", "--ollama", "pirate")
    assert "Ollama already has a model named pirate:latest" in taken.stderr and not (tmp_path / "ol2").exists()
    size = folder_size(home / "runs" / run_id)  # a real run's folder: config, log, checkpoints, result
    deleted = cli_here("delete", run_id, "--yes", check=0)
    assert deleted.stdout == (f"Deleted run {run_id} (done): its folder ({size_text(size)}) and its history; "
                              f"its 2 exports stay ({out}, {ol}).\n")
    assert not (home / "runs" / run_id).exists() and (out / "adapter_model.safetensors").is_file()
    assert json.loads(cli_here("runs", "--json", check=0).stdout) == []


def hear_ctrl_c() -> None:
    """In the child: take SIGINT as a terminal's Ctrl-C. A suite started in the background of a shell (`make test &`)
    inherits SIGINT ignored, and Python keeps an ignored SIGINT ignored, so the CLI would never hear it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_with_a_checkpoint_and_resume_continues_the_same_trajectory(home, cli_here, tiny_model_dir):
    common = ["--max-steps", "12", "--lr", "5e-3", "--seed", "7", "--eval-every", "6"]  # (checks cost steps here)
    straight, _ = train_json(cli_here, tiny_model_dir, *common)  # the reference (its trainer is a process too)
    reference = {e["step"]: e["loss"] for e in straight if e["event"] == "step"}

    env = dict(os.environ, TUNEFORGE_HOME=str(home))
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), "train", "--model", str(tiny_model_dir), "--data",
                             str(DEMO), "--json", *common], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=hear_ctrl_c)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "step" and events[-1]["step"] >= 3:
            proc.send_signal(signal.SIGINT)  # what Ctrl-C in a terminal does
            break
    rest, err = proc.communicate(timeout=300)
    events += json_lines(rest)
    assert proc.returncode == 0, err
    assert events[-1]["status"] == "stopped" and "Traceback" not in err
    run_id = events[-1]["run_id"]
    stopped_at = max(e["step"] for e in events if e["event"] == "step")
    assert stopped_at < 12
    assert any(e["event"] == "checkpoint" and e["step"] == stopped_at for e in events)
    assert json.loads(cli_here("runs", "--json", check=0).stdout)[0]["status"] == "stopped"

    resumed = json_lines(cli_here("resume", "--run", run_id, "--json", check=0).stdout)
    steps = {e["step"]: e["loss"] for e in resumed if e["event"] == "step"}
    assert min(steps) == stopped_at + 1 and max(steps) == 12
    for step, loss in steps.items():
        assert loss == pytest.approx(reference[step], rel=1e-4, abs=1e-5), step
    assert resumed[-1]["status"] == "done"
    done = cli_here("resume", "--run", run_id)
    assert done.returncode != 0 and "already finished" in done.stderr


def test_a_reader_that_stops_reading_loses_nothing(home, cli_here, tiny_model_dir):
    """`tuneforge train --json | head -2`: the command goes on quietly to the run's end (no traceback, no trainer
    blocked on a full pipe) and the history has every step the reader never saw; `runs --json | head` likewise."""
    env = dict(os.environ, TUNEFORGE_HOME=str(home))
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), "train", "--model", str(tiny_model_dir), "--data",
                             str(DEMO), "--json", "--max-steps", "4"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()  # what `head -1` does once it has its line
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in err and "BrokenPipe" not in err, err
    runs = json.loads(cli_here("runs", "--json", check=0).stdout)
    assert (runs[0]["id"], runs[0]["status"], runs[0]["steps_done"]) == (first["run_id"], "done", 4)

    lister = subprocess.Popen([sys.executable, str(REPO / "main.py"), "runs"], cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lister.stdout.close()  # gone before the first line
    err = lister.stderr.read()
    assert lister.wait(timeout=120) == 0 and not err, err


def test_a_model_in_the_local_hf_cache_is_found_without_downloading(cli, tiny_model_dir, tmp_path):
    """The hub's cache layout (refs/main → snapshots/<commit>/files), as `huggingface-cli download` leaves it."""
    import shutil

    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--tuneforge--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    proc = cli("data", "inspect", DEMO, "--model", "tuneforge/tiny", "--json", check=0, env={"HF_HUB_CACHE": str(cache)})
    assert json.loads(proc.stdout)["tokens"]["count"] == 202
    missing = cli("data", "inspect", DEMO, "--model", "tuneforge/absent", env={"HF_HUB_CACHE": str(cache)})
    assert missing.returncode != 0 and "nothing is downloaded" in missing.stderr


def test_chat_without_a_prompt_is_a_conversation_one_question_per_line(cli_here, default_model_dir, monkeypatch):
    """Piped questions: one answer each, an empty line after it; /new starts over; the model loads once."""
    import io

    from app import answerers
    from core import inference

    questions = ["Hi! I am Ann.", "What is my name?", "/new", "", "What is my name?"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(questions) + "\n"))
    loads = []
    monkeypatch.setattr(inference, "load", lambda *a, _load=inference.load, **k: loads.append(a) or _load(*a, **k))
    try:
        done = cli_here("chat", "--model", "default", "--max-new-tokens", "24", check=0)
    finally:
        answerers.release()
    answers = done.stdout.split("\n\n")
    assert len(answers) == 4 and answers[-1] == "" and len(loads) == 1
    assert done.stderr == "(a new conversation)\n"
    model, tok = inference.load(default_model_dir)
    first = inference.reply(model, tok, "Hi! I am Ann.", max_new_tokens=24)
    history = [{"role": "user", "content": "Hi! I am Ann."}, {"role": "assistant", "content": first}]
    assert answers[:3] == [first, inference.reply(model, tok, "What is my name?", max_new_tokens=24, history=history),
                           inference.reply(model, tok, "What is my name?", max_new_tokens=24)]
    assert answers[1] != answers[2]  # the first "What is my name?" saw the introduction, the one after /new did not


def test_chat_at_a_terminal_prompts_and_ends_with_ctrl_d(home, tiny_model_dir):
    """A real terminal (a pseudo-terminal): the hint, a "> " prompt before each question, the answer, and Ctrl-D
    at the prompt ends it cleanly."""
    import pty
    import select
    import time

    from core import repeat_stop

    leader, follower = pty.openpty()
    env = dict(os.environ, TUNEFORGE_HOME=str(home))
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), "chat", "--model", str(tiny_model_dir),
                             "--max-new-tokens", "20"], stdin=follower, stdout=follower, stderr=follower,
                            cwd=REPO, env=env)
    os.close(follower)
    seen = b""

    def prompts(count: int, timeout: float = 120) -> None:
        """Read until the "> " prompt has been shown `count` times."""
        nonlocal seen
        end = time.monotonic() + timeout
        while seen.count(b"> ") < count and time.monotonic() < end:
            if select.select([leader], [], [], 1)[0]:
                seen += os.read(leader, 4096)
        assert seen.count(b"> ") >= count, seen

    try:
        prompts(1)
        os.write(leader, b"Where is the gold?\n")
        prompts(2)  # answered, and asking for the next
        os.write(leader, b"\x04")  # Ctrl-D at the prompt
        assert proc.wait(60) == 0
    finally:
        proc.kill()
        os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert text.startswith("Type a message and press Enter; /new starts a new conversation; Ctrl-D ends.")
    question, answer = text.split("> ")[1].split("\r\n", 1)
    assert question == "Where is the gold?" and repeat_stop.NOTE in answer and "Traceback" not in text


def test_rated_answers_train_with_kto_against_the_starting_model_or_supervised_on_the_good_ones_alone(
        cli_here, home, tiny_model_dir, tmp_path):
    rated = write_jsonl(tmp_path / "rated.jsonl", [
        {"prompt": f"What is {i} plus {i}?", "completion": f"{2 * i}, matey!" if i % 2 == 0 else f"{2 * i + 1}.",
         "label": i % 2 == 0} for i in range(30)])
    plan = json.loads(cli_here("plan", "--model", tiny_model_dir, "--data", rated, "--json", check=0).stdout)["plan"]
    assert (plan["objective"], plan["packing"]) == ("kto", False)
    shown = json.loads(cli_here("data", "inspect", rated, "--model", tiny_model_dir, "--json", check=0).stdout)
    assert shown["format"] == "rated" and [r["source"] for r in shown["preview_rows"][:2]] == [
        "rated.jsonl:1, rated good", "rated.jsonl:2, rated bad"]
    assert shown["ratings"] == {"good": 15, "bad": 15}
    said = cli_here("data", "inspect", rated, check=0).stdout.splitlines()
    assert "Rated: 15 good, 15 bad" in said
    wrong = cli_here("plan", "--model", tiny_model_dir, "--data", rated, "--objective", "orpo")
    assert wrong.returncode != 0 and wrong.stderr.strip().endswith("train it with --objective kto.")
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", rated, "--max-steps", "1", "--device",
                                 "cpu", "--json", check=0).stdout)
    assert [e["status"] for e in events if e["event"] == "done"] == ["done"], events[-1]
    said = "".join(e["text"] for e in events if e["event"] == "status")
    assert "Preference tuning (KTO) on 27 rated answers: raise the answers rated good and lower" in said
    run = json.loads((home / "runs" / events[0]["run_id"] / "run.json").read_text())
    step = run["micro_batch"] * run["grad_accum"]  # one step: only the answers it trains on are worked out
    assert f"Worked out the starting model's log-probabilities of {step + 3} rated answers in " in said
    # The adapter starts as a no-op: every answer is where the reference has it, each term 1 - sigmoid(0), weighed
    # to balance the training set's good and bad answers (about as many of each here).
    steps = [e for e in events if e["event"] == "step"]
    assert [e["loss"] for e in steps] == [pytest.approx(0.5, abs=0.05)] and 0 <= steps[0]["prefers"] <= 1
    assert all(e["prefers"] in (0, 0.333, 0.667, 1) for e in events if e["event"] == "eval")  # 3 held out
    kto_run = events[0]["run_id"]
    # A separate validation set of chat rows, not rated: their loss alone is measured (no pairs made of them).
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": f"{i} plus {i}?"},
                                                               {"role": "assistant", "content": f"{2 * i}."}]}
                                                 for i in range(3)])
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", rated, "--eval-data", chat,
                                 "--max-steps", "1", "--device", "cpu", "--json", check=0).stdout)
    checks = [e for e in events if e["event"] == "eval"]
    assert len(checks) == 1 and checks[0]["loss"] > 0 and "prefers" not in checks[0], events[-1]
    # Supervised on rated answers: the good ones alone train.
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", rated, "--objective", "sft",
                                 "--max-steps", "1", "--device", "cpu", "--json", check=0).stdout)
    assert [e["status"] for e in events if e["event"] == "done"] == ["done"], events[-1]
    start = next(e for e in events if e["event"] == "start")
    said = [e["text"] for e in events if e["event"] == "status" and "rated good" in e["text"]]
    assert said == [f"Training on the {start['train_examples']} answers rated good; the ones rated bad are left out "
                    "(KTO learns from both)"] and 12 <= start["train_examples"] <= 15
    # Measured: the answers rated good are the expected ones; the bad ones are measured apart.
    report = json.loads(cli_here("evaluate", "--run", kto_run, "--data", rated, "--ask", "1", "--max-new-tokens", "4",
                                 "--json", check=0).stdout)
    assert report["rows"] == 15 and report["rated_bad"] == 15 and report["answers"][0]["expected"] == "0, matey!"
    assert report["base_bad_loss"] > 0 and " The 15 answers rated bad: loss " in report["summary"]


def test_scored_answers_are_rated_by_a_line_the_run_keeps_for_its_validation_and_evaluation(
        cli_here, home, tiny_model_dir, tmp_path):
    scored = write_jsonl(tmp_path / "stars.jsonl", [
        {"prompt": f"What is {i} plus {i}?", "completion": f"{2 * i}.", "score": i % 5 + 1} for i in range(30)])
    said = cli_here("data", "inspect", scored, check=0).stdout.splitlines()
    assert ("Rated: 12 good, 18 bad, by their scores from 1 to 5: above 3 good, the rest bad (the middle of the "
            "scores)") in said
    plan = json.loads(cli_here("plan", "--model", tiny_model_dir, "--data", scored, "--good-above", "1", "--json",
                               check=0).stdout)["plan"]
    objective = next(r for r in plan["reasons"] if r.startswith("Objective:"))
    assert plan["objective"] == "kto" and objective.endswith(
        "Rated by their scores from 1 to 5: above 1 good, the rest bad (the line given).")
    assert "answers rated good and " in objective  # KTO's balance, counted with that line: 24 good, 6 bad
    labelled = write_jsonl(tmp_path / "labelled.jsonl", [{"prompt": "hi", "completion": "yo", "label": True}])
    wrong = cli_here("data", "inspect", labelled, "--good-above", "3")
    assert wrong.returncode != 0 and wrong.stderr.strip().endswith(
        "a line for good answers (3) rates scored answers, and this data has no 'score' column; leave the line out "
        "or map a column to 'score'.")
    # Validation on a file of low scores only: rated by the run's line (3), not by that file's own middle (1.5).
    low = write_jsonl(tmp_path / "low.jsonl", [
        {"prompt": f"What is {i} plus {i}?", "completion": f"{2 * i}.", "score": 1 + i % 2} for i in range(4)])
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", scored, "--eval-data", low,
                                 "--max-steps", "1", "--device", "cpu", "--json", check=0).stdout)
    assert [e["status"] for e in events if e["event"] == "done"] == ["done"], events[-1]
    assert ("Rated by their scores from 1 to 5: above 3 good, the rest bad (the middle of the scores)"
            in [e["text"] for e in events if e["event"] == "status"])
    run_id = events[0]["run_id"]
    assert json.loads((home / "runs" / run_id / "run.json").read_text())["good_above"] == 3.0
    kept = json.loads(cli_here("evaluate", "--run", run_id, "--data", low, "--ask", "0", "--json", check=0).stdout)
    assert kept["rated_bad"] == 4  # the run's line
    moved = json.loads(cli_here("evaluate", "--run", run_id, "--data", low, "--ask", "0", "--good-above", "1.5",
                                "--json", check=0).stdout)
    assert (moved["rows"], moved["rated_bad"]) == (2, 2)


def test_preference_pairs_train_with_orpo_unless_asked_otherwise_and_with_dpo_against_the_starting_model(
        cli, cli_here, home, tiny_model_dir, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": f"What is {i} plus {i}?", "chosen": f"{2 * i}, matey!", "rejected": f"{2 * i + 1}."}
        for i in range(30)])
    plan = json.loads(cli_here("plan", "--model", tiny_model_dir, "--data", pairs, "--json", check=0).stdout)["plan"]
    assert (plan["objective"], plan["packing"]) == ("orpo", False)
    shown = json.loads(cli_here("data", "inspect", pairs, "--model", tiny_model_dir, "--json", check=0).stdout)
    assert [r["source"] for r in shown["preview_rows"][:3]] == ["pairs.jsonl:1", "pairs.jsonl:1, its rejected answer",
                                                                "pairs.jsonl:2"]
    assert "«0, matey!" in shown["preview_rows"][0]["text"] and "«1." in shown["preview_rows"][1]["text"]
    # A conversation's earlier answers are its prompt: only the last one is marked trained (train_on "last")
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ahoy."},
             {"role": "user", "content": "Where?"}]
    talk = write_jsonl(tmp_path / "talk.jsonl", [{"chosen": turns + [{"role": "assistant", "content": "Yonder!"}],
                                                  "rejected": turns + [{"role": "assistant", "content": "No."}]}])
    shown = json.loads(cli_here("data", "inspect", talk, "--model", tiny_model_dir, "--json", check=0).stdout)
    chosen, rejected = (r["text"] for r in shown["preview_rows"][:2])
    assert "«Yonder!" in chosen and "«No." in rejected and "«Ahoy" not in chosen + rejected
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": turns + [{"role": "assistant", "content": "Yonder!"}]}])
    for asked in ([], ["--train-on", "last"]):  # supervised: every answer, unless asked otherwise
        text = json.loads(cli_here("data", "inspect", chat, "--model", tiny_model_dir, "--json", *asked,
                                   check=0).stdout)["preview_rows"][0]["text"]
        assert "«Yonder!" in text and ("«Ahoy" in text) == (not asked), text
    plan = json.loads(cli_here("plan", "--model", tiny_model_dir, "--data", pairs, "--objective", "sft", "--json",
                               check=0).stdout)["plan"]
    assert (plan["objective"], plan["packing"]) == ("sft", True)
    plan = json.loads(cli_here("plan", "--model", tiny_model_dir, "--data", pairs, "--objective", "sft", "--train-on",
                               "last", "--json", check=0).stdout)["plan"]
    assert plan["train_on"] == "last"
    refused = cli_here("plan", "--model", tiny_model_dir, "--data", pairs, "--train-on", "all", check=2)
    assert refused.stderr.strip().endswith("--train-on all applies to supervised runs, so leave it out.")
    wrong = cli_here("plan", "--model", tiny_model_dir, "--data", DEMO, "--objective", "orpo")
    assert wrong.returncode != 0 and wrong.stderr.strip().endswith("train it with --objective sft.")
    refused = cli_here("train", "--model", tiny_model_dir, "--data", DEMO, "--beta", "0.5", check=2)
    assert refused.stderr.strip().endswith("this run is supervised: give preference pairs (prompt, chosen, rejected) "
                                           "or rated answers, or leave the strength out.")
    assert not (home / "runs").exists()
    too_much = cli_here("train", "--model", tiny_model_dir, "--data", pairs, "--orpo-beta", "20", check=2)
    assert too_much.stderr.strip().endswith("A strength (beta) of 20 is out of range for ORPO: use one from 0 to 10 "
                                            "(0.1 is the paper's)."), too_much.stderr
    assert not (home / "runs").exists()
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", pairs, "--max-steps", "2", "--device",
                                 "cpu", "--beta", "0.5", "--json", check=0).stdout)
    assert [e["status"] for e in events if e["event"] == "done"] == ["done"], events[-1]
    assert [e["text"] for e in events if e["event"] == "status" and "ORPO" in e["text"]] == [
        "Preference tuning (ORPO) on 27 pairs: learn the chosen answers and to prefer them over the rejected ones "
        "(no reference model)"]
    steps = [e for e in events if e["event"] == "step"]
    assert len(steps) == 2 and all(0 <= e["prefers"] <= 1 for e in steps)
    checks = [e for e in events if e["event"] == "eval"]  # on the 3 held-out pairs: thirds
    assert checks and all(e["prefers"] in (0, 0.333, 0.667, 1) for e in checks)
    run = json.loads((home / "runs" / events[0]["run_id"] / "run.json").read_text())
    assert (run["objective"], run["packing"], run["beta"]) == ("orpo", False, 0.5)
    assert run["train_on"] == "last"  # a pair is about its last answer (tests/core/test_tokenize.py)
    # History keeps the shares beside the losses (its run detail shows them: tests/ui/test_history.py)
    from app import history_service

    detail = history_service.run_detail(events[0]["run_id"])
    assert detail.preferred == [(e["step"], pytest.approx(e["prefers"], abs=1e-3)) for e in steps]
    assert detail.eval_preferred == [(e["step"], pytest.approx(e["prefers"], abs=1e-3)) for e in checks]
    # DPO, with a separate validation set of chat rows, not pairs: their loss alone is measured. The reference is
    # the starting model's log-probabilities, worked out before step 1 and kept in the run's folder; the adapter
    # starts as a no-op, so the model is its own reference and the first step's loss is log 2.
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": f"{i} plus {i}?"},
                                                               {"role": "assistant", "content": f"{2 * i}."}]}
                                                 for i in range(3)])
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", pairs, "--eval-data", chat,
                                 "--objective", "dpo", "--max-steps", "1", "--device", "cpu", "--json", check=0).stdout)
    checks = [e for e in events if e["event"] == "eval"]
    assert len(checks) == 1 and checks[0]["loss"] > 0 and "prefers" not in checks[0], events[-1]
    said = [e["text"] for e in events if e["event"] == "status"]
    run = json.loads((home / "runs" / events[0]["run_id"] / "run.json").read_text())
    step = run["micro_batch"] * run["grad_accum"]  # one step: only the pairs it trains on are worked out
    assert step < 30 and f"Worked out the starting model's log-probabilities of {step} pairs in " in "".join(said)
    assert [e["loss"] for e in events if e["event"] == "step"] == [pytest.approx(math.log(2), abs=1e-4)]
    assert (home / "runs" / events[0]["run_id"] / "reference.safetensors").is_file()
    listed = cli_here("runs", check=0).stdout.splitlines()  # both runs preference-tuned, as History says too
    assert listed[0].split()[:4] == ["run", "project", "status", "strategy"], listed
    assert len(listed) == 3 and " done         lora (DPO) " in listed[1] and " lora (ORPO) " in listed[2], listed
    # KTO on the pairs, asked for: each pair split into its chosen answer, rated good, and its rejected one, bad.
    plan = json.loads(cli_here("plan", "--model", tiny_model_dir, "--data", pairs, "--objective", "kto", "--json",
                               check=0).stdout)["plan"]
    objective = next(r for r in plan["reasons"] if r.startswith("Objective:"))
    assert plan["objective"] == "kto" and "The 30 answers rated good and 30 rated bad weigh the same" in objective
    assert objective.endswith("Each preference pair is split in two: its chosen answer rated good, its rejected one "
                              "rated bad.")
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", pairs, "--objective", "kto",
                                 "--max-steps", "1", "--device", "cpu", "--json", check=0).stdout)
    assert [e["status"] for e in events if e["event"] == "done"] == ["done"], events[-1]
    said = [e["text"] for e in events if e["event"] == "status"]
    assert ("Each of the 27 preference pairs split in two for KTO: its chosen answer rated good, its rejected one "
            "rated bad") in said  # (3 pairs held out, split too)
    assert any(t.startswith("Preference tuning (KTO) on 54 rated answers") for t in said), said
    assert [e["loss"] for e in events if e["event"] == "step"] == [pytest.approx(0.5, abs=0.05)]
    run = json.loads((home / "runs" / events[0]["run_id"] / "run.json").read_text())
    step = run["micro_batch"] * run["grad_accum"]  # and the 3 held-out pairs are 6 rated answers
    assert f"Worked out the starting model's log-probabilities of {step + 6} rated answers in " in "".join(said)


@pytest.mark.parametrize("objective,share,unit", [("orpo", "chosen preferred", "pairs"),
                                                   ("kto", "rated right", "answers")])
def test_the_terminal_line_of_a_step_says_how_often_the_chosen_answer_is_preferred(objective, share, unit):
    import io

    from app.progress_bar import TerminalProgress

    out = io.StringIO()  # not a terminal: a line each
    progress = TerminalProgress(out)
    progress.event({"event": "start", "objective": objective})
    progress.event({"event": "step", "step": 1, "total_steps": 4, "loss": 2.5, "tokens_per_s": 120, "eta_s": 30})
    progress.event({"event": "step", "step": 2, "total_steps": 4, "loss": 2.4, "tokens_per_s": 120, "eta_s": 20,
                    "prefers": 0.75})
    progress.event({"event": "eval", "step": 2, "loss": 2.3, "lowest": True, "prefers": 0.5})
    first, second, check = out.getvalue().splitlines()
    assert share not in first and f"loss 2.4000  {share} 75%  120 tok/s" in second
    assert check.endswith(f"validation loss at step 2: 2.3000 (the lowest so far); {share}: 50% of the "
                          f"validation {unit}")


def test_a_run_at_a_terminal_ends_with_what_to_do_next_and_its_id_last(cli, tiny_model_dir):
    proc = cli("train", "--model", tiny_model_dir, "--data", DEMO, "--max-steps", "1", check=0)
    *_, ended, nxt, last = proc.stdout.strip().splitlines()
    assert ended == f"Run {last}: finished 1 step." and "Traceback" not in proc.stderr
    assert nxt == (f'Next: tuneforge chat --run {last} "a question"  ·  tuneforge export --run {last} --format gguf '
                   f"--out DIR  ·  tuneforge show {last}")
