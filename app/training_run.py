"""A training run as the person sees it: one or more trainer processes, re-planned after running out
of memory, that end once with one outcome.

When the trainer exits with "out of memory", `TrainingRun` asks for a new plan (the planner scales
its estimates by what the crash proved and steps down its ladder: smaller micro-batch, then
checkpointing, then QLoRA, then offload), records it in the history with its reason, and starts the
trainer again from the last checkpoint, by itself. The CLI and the UI use it the same way they
would use a TrainerJob: events stream through `on_event` (a re-plan is an event too), and
`on_finished` fires once, at the very end.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from app.supervisor import Outcome, TrainerJob
from core.errors import KnownError

MAX_REPLANS = 4  # the ladder has four rungs below the first plan; more would mean the model is badly off


class TrainingRun:
    def __init__(self, config_path: Path, run_dir: Path, replan: Callable[[dict], str], resume: bool = False,
                 on_event: Callable[[dict], None] | None = None,
                 on_finished: Callable[[Outcome], None] | None = None):
        """`replan(error_event)` writes a new plan into the run's config and returns its reason, or raises
        KnownError when there is nothing left to try."""
        self.config_path, self.run_dir = Path(config_path), Path(run_dir)
        self.replan = replan
        self.on_event, self.on_finished = on_event, on_finished
        self.events: list[dict] = []
        self.outcome: Outcome | None = None
        self.replans = 0
        self._stopping = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.job = self._start(resume)

    def _start(self, resume: bool) -> TrainerJob:
        return TrainerJob(self.config_path, self.run_dir, resume=resume, on_event=self._event,
                          on_finished=self._finished).start()

    def _event(self, event: dict) -> None:
        self.events.append(event)
        if self.on_event:
            self.on_event(event)

    def _finished(self, outcome: Outcome) -> None:  # on the job's reader thread
        error = next((e for e in reversed(self.job.events) if e.get("event") == "error"), {})
        if error.get("kind") == "oom" and not self._stopping and self.replans < MAX_REPLANS:
            try:
                reason = self.replan(error)
            except KnownError as e:
                said = str(e)
                outcome = Outcome("failed", f"{outcome.text}; {said[:1].lower()}{said[1:]}", outcome.exit_code)
            else:
                self.replans += 1
                self._event({"event": "replan", "text": reason, "after_step": error.get("step", 0)})
                with self._lock:
                    if not self._stopping:
                        self.job = self._start(resume=True)
                        return
        self.outcome = outcome
        self._done.set()
        if self.on_finished:
            self.on_finished(outcome)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self.job.stop()

    def pause(self, paused: bool = True) -> None:
        self.job.pause(paused)  # a file in the run folder: a trainer started after a re-plan sees it too

    def ask(self, prompt: str) -> str:
        return self.job.ask(prompt)

    def kill(self) -> None:
        with self._lock:
            self._stopping = True
            self.job.kill()

    def wait(self, timeout: float | None = None) -> Outcome | None:
        self._done.wait(timeout)
        return self.outcome

    @property
    def log_path(self) -> Path:
        return self.job.log_path

    @property
    def running(self) -> bool:
        return not self._done.is_set()
