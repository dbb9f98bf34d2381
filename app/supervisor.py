"""The one place that starts, watches and stops the trainer process (STYLE §3).

`TrainerJob` launches `python -m core.trainer RUN.json`, reads its JSON events line by line on a
reader thread, keeps them (so a view opened later can replay them), and turns the way the process
ended into an Outcome in words. Stopping asks politely (SIGTERM, or a STOP file where signals are
poor): the trainer saves a checkpoint and exits with its "stopped" code. Pausing and asking the paused
model go through files in the run's folder too (core/run_control.py).

`AttachedJob` follows a trainer this process did not start (the app was closed with the run kept in
the background, then opened again): it replays and tails the run's events.jsonl and watches the pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from app.paths import REPO
from core import run_control, runtime_env

EXIT_TEXT = {0: ("done", "finished"), 3: ("stopped", "stopped by you; a checkpoint was saved"),
             5: ("failed", "ran out of memory"), 2: ("failed", "could not start")}


@dataclass
class Outcome:
    status: str  # done | stopped | failed | killed
    text: str  # one sentence for the person
    exit_code: int | None

    @property
    def ok(self) -> bool:
        return self.status in ("done", "stopped")


def outcome_of(code: int, last_event: dict | None, log: Path) -> Outcome:
    """Exit code + the trainer's last words → one sentence."""
    said = (last_event or {}).get("text")
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return Outcome("killed", f"the trainer was killed by {name}; resume the run to continue from its last checkpoint", code)
    if code in EXIT_TEXT:
        status, text = EXIT_TEXT[code]
        return Outcome(status, said or text, code)
    said = (said or "the trainer crashed").removesuffix("; see the log")  # the trainer's own words say it too
    return Outcome("failed", f"{said}; see the log at {log}", code)


class TrainerJob:
    def __init__(self, config_path: Path, run_dir: Path, resume: bool = False,
                 on_event: Callable[[dict], None] | None = None,
                 on_finished: Callable[[Outcome], None] | None = None):
        self.config_path = Path(config_path)
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.on_event = on_event
        self.on_finished = on_finished
        self.events: list[dict] = []
        self.outcome: Outcome | None = None
        self.proc: subprocess.Popen | None = None
        self._done = threading.Event()
        self.viewer_failed = False  # `on_event` raised once: said, and the events are still read and kept

    @property
    def log_path(self) -> Path:
        return self.run_dir / "trainer.log"

    def start(self) -> "TrainerJob":
        cmd = runtime_env.module_command("core.trainer", str(self.config_path), *(["--resume"] if self.resume else []))
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
            [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        run_control.clear(self.run_dir)  # stale requests from an earlier session of the run
        gpu = _planned_gpu(self.config_path)
        if gpu is not None:  # the trainer sees only the GPU its plan was made for, as "cuda:0"
            env.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=str(gpu))  # NVML's numbering
        log = open(self.log_path, "ab")
        # A new session: Ctrl-C in a terminal reaches us, not the trainer, and we ask it to stop properly.
        kwargs = {"start_new_session": True} if os.name == "posix" else {
            "creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                     cwd=str(REPO), env=env, **kwargs)
        log.close()
        threading.Thread(target=self._read, name="trainer-events", daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc and self.proc.stdout
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except json.JSONDecodeError:
                continue  # not an event; the trainer keeps stdout for events, so this is rare noise
            self.events.append(event)
            if self.on_event:
                try:
                    self.on_event(event)
                except Exception as e:  # noqa: BLE001  a failing viewer must not stop the reading: an unread
                    # pipe fills and blocks the trainer, and the outcome would never come
                    if not self.viewer_failed:
                        print(f"Showing the run's progress failed ({type(e).__name__}: {e}); the run goes on.",
                              file=sys.stderr)
                    self.viewer_failed = True
        code = self.proc.wait()
        last = next((e for e in reversed(self.events) if e.get("event") in ("done", "error")), None)
        self.outcome = outcome_of(code, last, self.log_path)
        self._done.set()
        if self.on_finished:
            self.on_finished(self.outcome)

    def stop(self) -> None:
        """Ask the trainer to stop after the current step, with a checkpoint.

        The STOP file always works; the signal wakes it sooner, but only once it has spoken (until
        then its handlers may not be in place and SIGTERM would kill it outright)."""
        run_control.request_stop(self.run_dir)
        if self.events and self.proc and self.proc.poll() is None and os.name == "posix":
            self.proc.send_signal(signal.SIGTERM)

    def pause(self, paused: bool = True) -> None:
        """Pause between steps with the model kept loaded (a "paused" event says when), or continue."""
        run_control.request_pause(self.run_dir, paused)

    def ask(self, prompt: str | None, history: list[dict] | None = None, max_new_tokens: int | None = None) -> str:
        """Ask the paused model, after the conversation's turns so far (`prompt` None: to go on after the tool
        results they end with), in `max_new_tokens` at most (None: the run's default); its answer arrives as an
        "answer" event carrying the returned id."""
        return run_control.ask(self.run_dir, prompt, max_new_tokens, history=history)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._done.wait(timeout)
        return self.outcome

    @property
    def running(self) -> bool:
        return self.proc is not None and not self._done.is_set()


class AttachedJob:
    """A trainer started by an earlier session of the app, followed through its run folder.

    Its events are replayed from events.jsonl and then tailed; it has ended when its process is gone.
    The exit code is not ours to read, so the outcome comes from its last event (or, without one, it
    was killed). Stop, pause and ask work as for a TrainerJob: they are files the trainer reads."""

    POLL_S = 0.25

    def __init__(self, run_dir: Path, pid: int, on_event: Callable[[dict], None] | None = None,
                 on_finished: Callable[[Outcome], None] | None = None):
        self.run_dir, self.pid = Path(run_dir), int(pid)
        self.on_event, self.on_finished = on_event, on_finished
        self.events: list[dict] = []
        self.outcome: Outcome | None = None
        self._done = threading.Event()
        self._detached = False
        threading.Thread(target=self._follow, name="trainer-follow", daemon=True).start()

    @property
    def log_path(self) -> Path:
        return self.run_dir / "trainer.log"

    def _follow(self) -> None:
        path, position, partial = self.run_dir / "events.jsonl", 0, b""
        while not self._detached:
            gone = not alive(self.pid)  # checked before reading, so nothing written before the end is missed
            try:
                with open(path, "rb") as f:
                    f.seek(position)
                    chunk = f.read()
            except FileNotFoundError:
                chunk = b""
            position += len(chunk)
            *lines, partial = (partial + chunk).split(b"\n")
            for raw in lines:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                self.events.append(event)
                if self.on_event:
                    self.on_event(event)
            if gone:
                break
            time.sleep(self.POLL_S)
        if self._detached:
            return
        last = next((e for e in reversed(self.events) if e.get("event") in ("done", "error")), None)
        if last is None:
            self.outcome = Outcome("killed", "the trainer ended without a word; resume the run to continue from its "
                                   "last checkpoint", None)
        elif last["event"] == "done":
            status = last.get("status") or "done"
            self.outcome = Outcome(status, last.get("text") or status, 0 if status == "done" else 3)
        else:
            self.outcome = Outcome("failed", last.get("text") or "the trainer failed", None)
        self._done.set()
        if self.on_finished:
            self.on_finished(self.outcome)

    def stop(self) -> None:
        run_control.request_stop(self.run_dir)
        if os.name == "posix" and alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)

    def pause(self, paused: bool = True) -> None:
        run_control.request_pause(self.run_dir, paused)

    def ask(self, prompt: str | None, history: list[dict] | None = None, max_new_tokens: int | None = None) -> str:
        return run_control.ask(self.run_dir, prompt, max_new_tokens, history=history)

    def detach(self) -> None:
        """Stop following (the window closes again); the trainer goes on."""
        self._detached = True

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._done.wait(timeout)
        return self.outcome

    @property
    def running(self) -> bool:
        return not self._done.is_set() and not self._detached


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (a trainer that ended but was not yet waited for)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _planned_gpu(config_path: Path) -> int | None:
    try:
        plan = json.loads(Path(config_path).read_text(encoding="utf-8")).get("plan") or {}
    except (OSError, ValueError):
        return None  # the trainer reads the file itself and says what is wrong with it
    index = plan.get("gpu_index")
    return index if isinstance(index, int) and plan.get("device") == "cuda" else None
