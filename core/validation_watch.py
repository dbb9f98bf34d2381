"""Watching the validation loss during a run: keep the weights of its lowest point, and stop early when
it has not come down for a while.

Every validation check goes through `Watch.check`. A check that beats all earlier ones writes the weights
to best/ (core.results.save_best), except at the run's last step, whose weights the result holds anyway.
`tired` says when `patience` checks in a row have not beaten it: the person asked to stop early, and the
model is memorizing its rows rather than learning what carries over to new ones.

The watch's figures go into each checkpoint (`state`), so a resumed run goes on counting where it was.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path

from core import results

STATE_KEY = "validation_watch"


@dataclass
class Watch:
    run_dir: Path
    keep: bool  # write best/ when a check beats the ones before
    patience: int  # checks in a row without a new lowest loss before stopping; 0 never stops
    best_loss: float = math.inf
    best_step: int | None = None
    since: int = 0  # checks since the lowest one

    @classmethod
    def start(cls, cfg, checkpoint_state: dict | None, resumed_step: int) -> Watch:
        """A watch for `cfg`'s run: fresh, or as the checkpoint it resumes from left it. A best/ written after
        that checkpoint belongs to steps that will be trained again, and one from an earlier start of the
        run to nothing at all: both go."""
        watch = cls(Path(cfg.run_dir), cfg.keep_best, cfg.stop_early)
        saved = (checkpoint_state or {}).get(STATE_KEY)
        if saved:
            watch.best_loss, watch.best_step, watch.since = saved["best_loss"], saved["best_step"], saved["since"]
        found = results.best_of(cfg.run_dir)
        if found is not None and (checkpoint_state is None or found["step"] > resumed_step):
            shutil.rmtree(results.best_folder(cfg.run_dir), ignore_errors=True)
        return watch

    def check(self, session, step: int, loss: float, last: bool = False) -> bool:
        """Count one validation check; True when it is the lowest so far."""
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.since = loss, step, 0
            if self.keep and not last:
                results.save_best(session, self.run_dir, step, loss)
            return True
        self.since += 1
        return False

    @property
    def tired(self) -> bool:
        return bool(self.patience) and self.since >= self.patience

    def state(self) -> dict:
        return {STATE_KEY: {"best_loss": self.best_loss, "best_step": self.best_step, "since": self.since}}

    def why_stopped(self, step: int) -> str:
        return (f"stopped early at step {step}: {self.since} validation checks in a row did not beat the lowest "
                f"loss, {self.best_loss:.4f} at step {self.best_step}")


def summary(found: dict | None) -> str | None:
    """One sentence on the kept best weights (core.results.settle's answer), or None when none are kept."""
    if found is None:
        return None
    if not results.better_kept(found):
        return (f"The weights of step {found['step']}, where the validation loss was lowest so far "
                f"({found['loss']:.4f}), are kept beside the last step's (which was not measured).")
    return (f"The validation loss was lowest at step {found['step']} ({found['loss']:.4f}; {found['last_loss']:.4f} "
            f"at step {found['last_step']}): the model began memorizing its rows, so the weights of step "
            f"{found['step']} are kept and used by chat, evaluate and export unless you ask for the last step's.")
