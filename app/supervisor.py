"""The one place that starts, watches and stops the trainer process (STYLE §3).

`TrainerJob` launches `python -m core.trainer RUN.json`, reads its JSON events line by line on a
reader thread, keeps them (so a view opened later can replay them), and turns the way the process
ended into an Outcome in words. Stopping asks politely (SIGTERM, or a STOP file where signals are
poor): the trainer saves a checkpoint and exits with its "stopped" code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from app.paths import REPO

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
    return Outcome("failed", f"{said or 'the trainer crashed'}; see the log at {log}", code)


class TrainerJob:
    def __init__(self, config_path: Path, run_dir: Path, resume: bool = False,
                 on_event: Callable[[dict], None] | None = None,
                 on_finished: Callable[[Outcome], None] | None = None,
                 python: str | None = None):
        self.config_path = Path(config_path)
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.on_event = on_event
        self.on_finished = on_finished
        self.python = python or sys.executable
        self.events: list[dict] = []
        self.outcome: Outcome | None = None
        self.proc: subprocess.Popen | None = None
        self._done = threading.Event()

    @property
    def log_path(self) -> Path:
        return self.run_dir / "trainer.log"

    def start(self) -> "TrainerJob":
        cmd = [self.python, "-m", "core.trainer", str(self.config_path)] + (["--resume"] if self.resume else [])
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
            [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "STOP").unlink(missing_ok=True)  # a stale request from an earlier session
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
                self.on_event(event)
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
        (self.run_dir / "STOP").touch()
        if self.events and self.proc and self.proc.poll() is None and os.name == "posix":
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._done.wait(timeout)
        return self.outcome

    @property
    def running(self) -> bool:
        return self.proc is not None and not self._done.is_set()
