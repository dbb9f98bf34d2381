"""core.runtime_env: its settings are in place before the libraries that read them once are imported; exit_now: a
process ends at once with its code, and still does what a normal exit does."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from core import runtime_env

REPO = Path(__file__).resolve().parents[2]
BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a person's shell runs us


def run(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    script = textwrap.dedent(f"""
        import atexit, sys, tempfile, threading, time
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from core import runtime_env
        out = Path({str(tmp_path)!r})
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=BUFFERED)


def test_the_code_the_streams_and_the_atexit_handlers_survive(tmp_path):
    done = run(tmp_path, """
        atexit.register(lambda: (out / "atexit-ran").write_text("yes"))
        kept = tempfile.TemporaryDirectory(dir=out)  # never cleaned up by hand: its finalizer runs at exit
        (out / "temp-was").write_text(kept.name)
        sys.stdout.write("no newline yet")  # still in the buffer
        sys.stderr.write("said on stderr")
        runtime_env.exit_now(3)
        print("never")
    """)
    assert done.returncode == 3 and done.stdout == "no newline yet" and done.stderr == "said on stderr"
    assert (tmp_path / "atexit-ran").read_text() == "yes"
    assert not Path((tmp_path / "temp-was").read_text()).exists()


def test_a_thread_still_working_is_waited_for(tmp_path):
    done = run(tmp_path, """
        def late():
            time.sleep(0.5)
            (out / "thread-finished").write_text("yes")

        threading.Thread(target=late).start()
        runtime_env.exit_now(0)
    """)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "thread-finished").read_text() == "yes"


def test_a_reader_that_went_away_is_not_an_error(tmp_path):
    """`tuneforge runs | head -1`: what is still buffered cannot be written; the exit stays quiet and clean."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from core import runtime_env
        sys.stdout.write("x" * 1000)  # buffered: the pipe is not a terminal
        print("written", file=sys.stderr, flush=True)
        time.sleep(1)  # the reader closes its end meanwhile
        runtime_env.exit_now(0)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=BUFFERED)
    assert child.stderr.readline() == b"written\n"
    child.stdout.close()
    assert child.wait(30) == 0 and child.stderr.read() == b""


def test_under_a_profiler_the_exit_is_the_usual_one_so_the_profile_is_written(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\nfrom core import runtime_env\n"
                      "runtime_env.exit_now(0)\n")
    done = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(tmp_path / "prof"), str(script)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and (tmp_path / "prof").stat().st_size > 0


def test_the_settings_are_in_place_before_the_command_line_imports_its_libraries():
    """tqdm reads TQDM_DISABLE once, as torch imports it: set later, a GGUF export's check printed transformers'
    conversion bar through our progress line."""
    script = f"import sys; sys.path.insert(0, {str(REPO)!r}); import main, app.cli, tqdm; print(tqdm.tqdm([]).disable)"
    clean = {k: v for k, v in os.environ.items() if k not in runtime_env.ENV}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=clean,
                          cwd=REPO)
    assert done.stdout.strip() == "True", done.stderr
