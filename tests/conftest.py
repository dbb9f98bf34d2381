"""Shared fixtures: a private TUNEFORGE_HOME for every test, the default model converted once per
session, a tiny random Llama for fast tests, a helper that runs the real CLI as a process, and a run that
over-fits, trained once for the tests of kept best weights."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "resources" / "demo" / "pirate_chat.jsonl"
HELDOUT = REPO / "resources" / "demo" / "pirate_heldout.jsonl"

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The models Ollama keeps on the machine running the tests are not the tests' (tests/core/test_other_apps.py builds
# a store of its own): model lists count what the tests made.
os.environ["OLLAMA_MODELS"] = str(REPO / "tests" / "no-ollama-store")
from core import runtime_env  # noqa: E402

runtime_env.prepare()

# `make test` runs the suite in parallel sessions (pytest-xdist). Each gets its share of the cores for torch's
# threads, in this process and the trainers it starts: threads that outnumber the cores wait on one another and
# make a step many times slower, where two sessions of one thread each overlap their imports and their steps.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1)
                                                     // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))


# Parallel sessions take a module at a time (its module-wide fixtures are made once), and the modules that use one
# session fixture's trained run, together (so it is trained once): SHARED_RUNS names them, and collection checks it.
SHARED_RUNS = {
    "pirate_run": ("tests/e2e/test_default_path.py", "tests/e2e/test_export_gguf.py"),
    "overfit_run": ("tests/app/test_best_weights.py", "tests/ui/test_weights_choice.py"),
}
FIRST, LAST = "tests/e2e/", "tests/ui/"  # the longest work starts first, so the sessions end together; the Qt tests
# come last, as in one session: their collector (ui/main_thread_gc.py) keeps automatic collection off from then on


_RUN_OF = {module: run for run, modules in SHARED_RUNS.items() for module in modules}


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _unit(nodeid: str) -> str:
    """What one parallel session takes at once: a test's module, or the modules that share its run."""
    return _RUN_OF.get(_module(nodeid), _module(nodeid))


def _rank(nodeid: str) -> int:
    modules = SHARED_RUNS.get(_unit(nodeid), (_module(nodeid),))
    return 0 if modules[0].startswith(FIRST) else 2 if any(m.startswith(LAST) for m in modules) else 1


@pytest.hookimpl(optionalhook=True)  # (a hook of pytest-xdist, which plain `pytest` may run without)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # units in collection order (see _rank), not by their count of tests

    class ByUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return ByUnit(config, log)


def pytest_collection_modifyitems(items):
    for item in items:
        for run, modules in SHARED_RUNS.items():
            if run in item.fixturenames and _module(item.nodeid) not in modules:
                raise pytest.UsageError(f"{_module(item.nodeid)} uses {run}: add it to SHARED_RUNS in "
                                        "tests/conftest.py, so that parallel sessions train that run once.")
    items.sort(key=lambda item: _rank(item.nodeid))  # (a stable sort: within a rank, the order collected)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory) -> Path:
    """A data folder shared by the session, holding the converted default model."""
    return tmp_path_factory.mktemp("tuneforge-session-home")


@pytest.fixture(scope="session")
def default_model_dir(session_home) -> Path:
    from core import model_source

    return model_source.resolve("default", session_home / "models").path


@pytest.fixture
def home(tmp_path, monkeypatch, request) -> Path:
    """A fresh TUNEFORGE_HOME for this test. The converted default model is linked in lazily (only for
    tests that ask for `default_model_dir`), so the conversion happens once per session."""
    path = tmp_path / "home"
    (path / "models").mkdir(parents=True)
    monkeypatch.setenv("TUNEFORGE_HOME", str(path))
    if "default_model_dir" in request.fixturenames:
        src = request.getfixturevalue("default_model_dir")
        (path / "models" / src.name).symlink_to(src, target_is_directory=True)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model_dir) -> Path:
    """A 2-layer random Llama with the default model's tokenizer and chat template (fast on a CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tool_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """The tiny model that learned one tool-use conversation by heart (tests/tool_model.py)."""
    from tests import tool_model

    return tool_model.train(tiny_model_dir, tmp_path_factory.mktemp("tool-model"))


@pytest.fixture
def cli(home):
    """Run `python main.py ARGS` as a real process in this test's home; returns CompletedProcess."""
    return functools.partial(main_process, home)


def main_process(home: Path, *args, timeout=600, check=None, env=None) -> subprocess.CompletedProcess:
    """`python main.py ARGS` as a real process in `home` (its TUNEFORGE_HOME); with `check`, its exit code too."""
    full_env = dict(os.environ, TUNEFORGE_HOME=str(home), PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable, str(REPO / "main.py"), *map(str, args)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


@pytest.fixture
def cli_here(home, capsys):
    """`python main.py ARGS` called in this process, in this test's home: the same entry, parser and output as
    `cli` without starting an interpreter (torch, transformers and peft take seconds to import). `train` too (its
    trainer is a process of its own either way), but not where a test sends the CLI a signal; returns the same
    CompletedProcess."""
    from app.cli import main

    def run(*args, check=None):
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse's refusals exit, as they do in a process
            code = e.code
        out = capsys.readouterr()
        proc = subprocess.CompletedProcess(list(args), code, out.out, out.err)
        if check is not None:
            assert code == check, f"exit {code}\nstdout:\n{out.out}\nstderr:\n{out.err}"
        return proc

    return run


@pytest.fixture
def ollama_here(tmp_path, monkeypatch):
    """Ollama installed for this test (tests/core/ollama_program.py, first on PATH), its store empty: the store's
    folder is returned."""
    from tests.core import ollama_program

    program = ollama_program.install(tmp_path / "ollama-bin")
    monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    store = tmp_path / "ollama-store"
    store.mkdir()
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    return store


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


OVERFIT_WORDS = "red blue green gold iron salt wind rain moon star fish bird tree rock sand wave".split()


def write_twins(path: Path) -> Path:
    """Data a tiny model over-fits within 100 steps: each of 12 prompts twice, with two different random answers,
    so held-out rows have twins in training with other answers. Trained fully at lr 1e-2 with a quarter held out,
    the validation loss first falls (the answers' words) and then rises (the twins memorized)."""
    import random

    rng = random.Random(1)
    rows = [{"prompt": f"code {i}", "completion": " ".join(rng.choice(OVERFIT_WORDS) for _ in range(6))}
            for i in range(12) for _ in range(2)]
    rng.shuffle(rows)
    return write_jsonl(path, rows)


@dataclass
class OverfitRun:
    home: Path  # its own TUNEFORGE_HOME
    run_id: str
    events: list[dict]  # what `train --json` printed
    data: Path  # the twins it trained on


@pytest.fixture(scope="session")
def overfit_run(tmp_path_factory, tiny_model_dir) -> OverfitRun:
    """A run that really over-fits and stops early: a full fine-tune of the tiny model on `write_twins` data, 100
    steps at most, a check every 10, `--stop-early 2`, through the real CLI. Shared by tests/app/test_best_weights.py
    (what the command line does with its kept weights) and tests/ui/test_weights_choice.py (the export page's
    choice): training it takes about 20 s. Its tests point TUNEFORGE_HOME at `home` and add no runs there."""
    home = tmp_path_factory.mktemp("overfit-home")
    (home / "models").mkdir()
    data = write_twins(home / "twins.jsonl")
    events = json_lines(main_process(home, "train", "--model", tiny_model_dir, "--data", data, "--strategy", "full",
                                     "--lr", "1e-2", "--eval-fraction", "0.25", "--eval-every", "10", "--max-steps",
                                     "100", "--stop-early", "2", "--json", check=0).stdout)
    return OverfitRun(home, events[-1]["run_id"], events, data)
