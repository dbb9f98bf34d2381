"""A run's results: the weights at its last step (`result/`) and, when a later check was worse, the weights
of the validation check with the lowest loss (`best/`), in the same layout (an adapter or a model folder).

Why keep both: a run that trains too long memorizes its rows, and its held-out (validation) loss turns up
while the training loss still falls. The last step is then not the model the person wants; the one with
the lowest validation loss is. The trainer saves that one whenever a check beats every earlier one
(`save_best`), and when the run ends drops it again if the last step was the best anyway (`settle`).

Chat, evaluate and export pick the weights with `pick(run, weights)`: "last", "best", or "auto", which is
the best weights when they were measured lower than the last step's (or when there is no last step's result:
a run still training, or one that crashed), else the last step. Everything that reads a result goes through
`folder(run)`, so one rule decides which files answer.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from core import atomic
from core.errors import BadArgument, KnownError

LAST, BEST, AUTO = "last", "best", "auto"
WEIGHTS = (AUTO, LAST, BEST)
MARK = "tuneforge_best.json"  # inside best/: {"step", "loss"}; after the run also "last_step", "last_loss"


def last_folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / "result"


def best_folder(run_dir: str | Path) -> Path:
    return Path(run_dir) / "best"


def best_of(run_dir: str | Path) -> dict | None:
    """What best/ holds ({"step", "loss"}, and once the run ended "last_step" and "last_loss"), or None."""
    mark = best_folder(run_dir) / MARK
    try:
        found = json.loads(mark.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) and "step" in found and "loss" in found else None


def save_best(session, run_dir: str | Path, step: int, loss: float) -> Path:
    """Write the session's weights as they are now into best/ (replacing the one before, atomically)."""
    with atomic.folder(best_folder(run_dir), replace=True) as tmp:
        session.save_result(tmp)
        atomic.write_json(tmp / MARK, {"step": step, "loss": loss})
    return best_folder(run_dir)


def settle(run_dir: str | Path, last_step: int, last_loss: float | None) -> dict | None:
    """At the end of a run: drop best/ when the last step is as good (or is that step), else note the last
    step's figures beside it. Returns what best/ holds afterwards, or None."""
    found = best_of(run_dir)
    if found is None:
        return None
    if found["step"] == last_step or (last_loss is not None and last_loss <= found["loss"]):
        shutil.rmtree(best_folder(run_dir), ignore_errors=True)
        return None
    found = {**found, "last_step": last_step, "last_loss": last_loss}
    atomic.write_json(best_folder(run_dir) / MARK, found)
    return found


def better_kept(found: dict | None) -> bool:
    """Whether best/ was measured lower than the last step (not just kept because the last went unmeasured)."""
    return bool(found) and found.get("last_loss") is not None and found["loss"] < found["last_loss"]


@dataclass(frozen=True)
class Choice:
    which: str  # LAST or BEST
    path: Path
    step: int | None  # the step the weights are from (None: the last step, not known apart from the run)
    note: str  # one sentence for the person: which weights answer and why


def choose(run: dict, weights: str = AUTO) -> Choice:
    """Which weights of `run` to use: LAST, BEST or AUTO (best when measured lower than the last step)."""
    if weights not in WEIGHTS:
        raise BadArgument(f"Unknown weights '{weights}'; choose one of {', '.join(WEIGHTS)}.")
    run_dir = run.get("run_dir") or ""
    found = best_of(run_dir) if run_dir else None
    if weights == BEST and found is None:
        raise BadArgument(f"Run {run['id']} kept no separate best weights (its last step had the lowest validation "
                          "loss, or it had no validation rows); use --weights last.")
    no_last = found is not None and not last_folder(run_dir).is_dir()  # still training, or it crashed
    if weights == BEST or (weights == AUTO and (better_kept(found) or no_last)):
        last = (f"; {found['last_loss']:.4f} at its last step {found['last_step']}"
                if found.get("last_loss") is not None else "; the run has no last step's result"
                if no_last else "")
        return Choice(BEST, best_folder(run_dir), found["step"],
                      f"the weights of step {found['step']}, where the validation loss was lowest "
                      f"({found['loss']:.4f}{last})")
    return Choice(LAST, last_folder(run_dir), run.get("steps_done"), "the weights of the last step")


def pick(run: dict, weights: str = AUTO) -> dict:
    """`run` with the chosen weights' folder in "result_dir" (what `folder` reads) and the Choice in "picked"."""
    choice = choose(run, weights)
    return {**run, "result_dir": str(choice.path), "picked": choice}


def continued_text(continues: dict) -> str:
    """'the weights of run R at step 60 (its lowest validation loss)': what a run that goes on from another's
    weights (RunConfig.continues) started from."""
    step = f" at step {continues['step']}" if continues.get("step") else ""
    lowest = " (its lowest validation loss)" if continues.get("weights") == BEST else ""
    return f"the weights of run {continues.get('run')}{step}{lowest}"


def folder(run: dict) -> Path:
    """The folder of the weights that answer for `run`: the picked ones, else the last step's."""
    return Path(run["result_dir"]) if run.get("result_dir") else last_folder(run["run_dir"])


def need(run: dict) -> Path:
    """folder(run), refusing a run that has no result yet in one sentence."""
    path = folder(run)
    if not path.is_dir():
        raise KnownError(f"Run {run['id']} has no result yet ({run.get('status')}); let it finish or stop it first.")
    return path
