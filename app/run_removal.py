"""Deleting runs: the run's folder (checkpoints, the trained result, logs) and its history go; its exports stay.
Or only a finished run's checkpoints (`checkpoints=True`): what resuming would start from, which a run that
is done never needs again (a full fine-tune's checkpoint, weights and optimizer state, can take tens of GB); its
result, best weights, figures and exports stay. A run that is not done keeps its checkpoints: they are how it resumes.

Shared by `tuneforge delete` and the History page. `removal` says what deleting would do without touching
anything (the command line's answer without --yes, the app's confirmation); `delete_run` does it.

Nothing is left half-deleted: the folder is first renamed aside (one atomic step, so a run is never left with
half its checkpoints), then the history forgets the run in one transaction (undone, and the folder put back,
if that fails), and only then are the files removed. Should that last step be cut short (the machine turned
off, a file held open on Windows), what remains is a `.deleting-<run>` folder that the next deletion clears.
A run that is training now is refused: stop it first.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from app import operations as ops
from app import paths
from core import checkpoint, history
from core.export import folder_size
from core.errors import KnownError
from core.plan_text import size_text
from core.progress import Progress

ASIDE = ".deleting-"  # the prefix of a folder renamed aside to be removed
UNFINISHED = {history.STOPPED, history.FAILED, history.RUNNING, "interrupted"}  # may still start from its weights


@dataclass
class Removal:
    """What deleting one run does."""

    run_id: str
    status: str
    folder: str = ""  # the run's folder, "" when there is none left to delete
    bytes: int = 0  # what deleting frees on disk
    exports: list[str] = field(default_factory=list)  # exported files, which stay where they are
    stranded: list[str] = field(default_factory=list)  # unfinished runs that go on from its weights (train --from)
    checkpoints: bool = False  # only the checkpoints go (and their rows in the history)

    def text(self) -> str:
        """'run 20261204-… (done): its folder (1.2 GB) and its history; its 1 export stays (/path)'."""
        if self.checkpoints:
            return (f"run {self.run_id} ({self.status}): " + (
                f"its checkpoints ({size_text(self.bytes) or 'empty'}); its trained weights, history and exports stay"
                if self.folder else "no checkpoints left; nothing to free"))
        goes = f"its folder ({size_text(self.bytes) or 'empty'}) and its history" if self.folder else "its history"
        n = len(self.exports)
        kept = f"; its {n} export{'s stay' if n != 1 else ' stays'} ({', '.join(self.exports)})" if n else ""
        stranded = (f"; {', '.join(self.stranded)} {'goes' if len(self.stranded) == 1 else 'go'} on from its weights "
                    "and could not be resumed without them" if self.stranded and self.folder else "")
        return f"run {self.run_id} ({self.status}): {goes}{kept}{stranded}"


def removal(run_id: str, checkpoints: bool = False) -> Removal:
    """What deleting the run (an id, a unique prefix of one, or 'last'), or only its checkpoints, would do;
    nothing is touched. Raises KnownError for a run that is training now, or one not in the history, and for
    the checkpoints of a run that is not done."""
    if checkpoints:
        return _checkpoints_removal(run_id)
    with ops.open_history() as db:
        run = ops.with_liveness(db.run(run_id))
        exports = [e["path"] for e in db.exports(run["id"]) if Path(e["path"]).exists()]
        stranded = [f"run {r['id']} ({r['status']})" for r in db.runs() if needs_weights(db, r, run["id"])]
    if run["status"] == history.RUNNING:
        raise KnownError(f"Run {run['id']} is training now; stop it first (Stop on its page in the app, or Ctrl+C "
                         "where `tuneforge train` follows it), then delete it.")
    folder = _own_folder(run)
    return Removal(run["id"], run["status"], str(folder) if folder else "", folder_size(folder) if folder else 0,
                   sorted(e for e in exports if not folder or not _inside(Path(e), folder)), stranded)


def needs_weights(db, run: dict, source: str) -> bool:
    """Whether `run` would need `source`'s weights to start again: it goes on from them (train --from), is not
    finished, and has no checkpoint that holds all it trains (an adapter run's checkpoint does; a whole-model run
    may keep frozen parts of them)."""
    from core import strategies

    if ((run.get("config") or {}).get("continues") or {}).get("run") != source or run["status"] not in UNFINISHED:
        return False
    return strategies.get(run["strategy"], need_built=False).result == "model" or not db.checkpoints(run["id"])


def _checkpoints_removal(run_id: str) -> Removal:
    with ops.open_history() as db:
        run = ops.with_liveness(db.run(run_id))
    if run["status"] != history.DONE:
        raise KnownError(f"Run {run['id']} is {run['status']}: its checkpoints are what it resumes from, so they "
                         "stay; resume it to its end first, or delete the whole run.")
    own = _own_folder(run)
    folder = own / checkpoint.DIR if own else None
    folder = folder if folder and folder.is_dir() and not folder.is_symlink() else None
    return Removal(run["id"], run["status"], str(folder) if folder else "", folder_size(folder) if folder else 0,
                   checkpoints=True)


def delete_run(run_id: str, progress: Progress | None = None, checkpoints: bool = False) -> Removal:
    """Delete the run, or only its checkpoints (see the module's docstring for the order); returns what was
    deleted."""
    what = removal(run_id, checkpoints)
    folder = Path(what.folder) if what.folder else None
    _clear_aside({paths.runs_dir(), *([folder.parent] if folder else [])})
    aside = folder.with_name(ASIDE + folder.name) if folder else None
    if folder:
        try:
            folder.rename(aside)
        except OSError as e:
            raise KnownError(f"{folder}: the run's folder cannot be moved to be deleted ({e.strerror}); close "
                             "what has a file of it open, then try again.") from e
    try:
        with ops.open_history() as db:
            if checkpoints:
                db.forget_checkpoints(what.run_id)
            else:
                db.delete_run(what.run_id)
    except BaseException:
        if aside:
            aside.rename(folder)
        raise
    if aside:
        shutil.rmtree(aside, ignore_errors=True)  # what cannot go now goes with the next deletion
    return what


def _own_folder(run: dict) -> Path | None:
    """The run's folder, when it is one Tuneforge made for this run: a real folder named after the run. A recorded
    path that is not (edited by hand) is never deleted."""
    recorded = run.get("run_dir")
    if not recorded:
        return None
    folder = Path(recorded)
    if folder.name != run["id"] or not folder.is_dir() or folder.is_symlink():
        return None
    return folder


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _clear_aside(folders: set[Path]) -> None:
    """Remove what an earlier deletion renamed aside in these folders but could not finish removing."""
    for folder in folders:
        for left in folder.glob(ASIDE + "*") if folder.is_dir() else ():
            shutil.rmtree(left, ignore_errors=True)


def removals(run_ids: list[str], progress: Progress | None = None, checkpoints: bool = False) -> list[Removal]:
    """What deleting these runs (or their checkpoints) would do, each once; every one is checked before any is
    deleted."""
    found: dict[str, Removal] = {}
    for name in run_ids:
        what = removal(name, checkpoints)
        found.setdefault(what.run_id, what)
    return list(found.values())


def delete_runs(run_ids: list[str], progress: Progress | None = None, checkpoints: bool = False) -> list[Removal]:
    """Delete these runs or their checkpoints (exact ids, as `removals` gives them), one after the other."""
    return [delete_run(run_id, checkpoints=checkpoints) for run_id in run_ids]
