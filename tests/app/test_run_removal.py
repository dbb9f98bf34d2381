"""Deleting runs (app/run_removal.py, `tuneforge delete`) on a real SQLite history and real folders."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from app import run_removal
from core import history
from core.errors import KnownError, RunNotFound
from tests.app.history_runs import FIRST, SECOND, make_two_runs

MB = 1_000_000


def counts(home, run_id: str) -> dict[str, int]:
    """How many rows each table holds for the run."""
    with sqlite3.connect(home / "history.sqlite") as db:
        found = {t: db.execute(f"select count(*) from {t} where run_id = ?", [run_id]).fetchone()[0]
                 for t in history.RUN_TABLES}
        found["runs"] = db.execute("select count(*) from runs where id = ?", [run_id]).fetchone()[0]
    return found


@pytest.fixture
def runs(home):
    """The two runs, the first with a 3 MB checkpoint and an export outside its folder, the second's folder empty."""
    make_two_runs(home)
    (home / "runs" / SECOND).mkdir()
    checkpoint = home / "runs" / FIRST / "checkpoint-6"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter.safetensors").write_bytes(b"\0" * (3 * MB))
    export = home / "exports" / "pirate.gguf"
    export.parent.mkdir()
    export.write_bytes(b"GGUF")
    with history.History(home / "history.sqlite") as db:
        db.add_export(FIRST, "gguf", str(export), 4, "q8_0")
    return export


def test_removal_says_what_goes_and_what_stays_and_touches_nothing(home, runs):
    before = counts(home, FIRST)
    what = run_removal.removal(FIRST[:12])  # a unique start of the id is enough
    assert (what.run_id, what.status, what.folder) == (FIRST, "done", str(home / "runs" / FIRST))
    assert 3 * MB <= what.bytes < 3 * MB + 10_000 and what.exports == [str(runs)]
    assert what.text() == f"run {FIRST} (done): its folder (3 MB) and its history; its 1 export stays ({runs})"
    assert counts(home, FIRST) == before and (before["metrics"], before["exports"], before["runs"]) == (8, 1, 1)
    assert (home / "runs" / FIRST / "checkpoint-6" / "adapter.safetensors").is_file()


def test_deleting_removes_the_folder_and_every_record_and_keeps_the_rest(home, runs):
    other = counts(home, SECOND)
    done = run_removal.delete_run(FIRST)
    assert done.run_id == FIRST
    assert not (home / "runs" / FIRST).exists() and not list((home / "runs").glob(".deleting-*"))
    assert counts(home, FIRST) == dict.fromkeys([*history.RUN_TABLES, "runs"], 0)
    assert counts(home, SECOND) == other and (home / "runs" / SECOND).is_dir()
    assert runs.read_bytes() == b"GGUF"  # the export stays
    with history.History(home / "history.sqlite") as db:
        assert [r["id"] for r in db.runs()] == [SECOND]
        with pytest.raises(RunNotFound):
            db.run(FIRST)
    with pytest.raises(RunNotFound, match="No run"):
        run_removal.delete_run(FIRST)


def test_a_run_training_now_is_refused(home, runs):
    with history.History(home / "history.sqlite") as db:
        db.update_run(FIRST, status=history.RUNNING, pid=os.getpid())  # this process is alive: it "trains"
    with pytest.raises(KnownError, match=f"Run {FIRST} is training now; stop it first"):
        run_removal.delete_run(FIRST)
    assert (home / "runs" / FIRST / "checkpoint-6").is_dir() and counts(home, FIRST)["runs"] == 1


def test_when_the_history_cannot_forget_the_run_its_folder_is_put_back(home, runs):
    with sqlite3.connect(home / "history.sqlite") as db:  # SQLite itself refuses the deletion
        db.execute("create trigger held before delete on runs begin select raise(abort, 'held'); end")
    before = counts(home, FIRST)
    with pytest.raises(sqlite3.IntegrityError, match="held"):
        run_removal.delete_run(FIRST)
    assert (home / "runs" / FIRST / "checkpoint-6" / "adapter.safetensors").stat().st_size == 3 * MB
    assert counts(home, FIRST) == before  # the metrics and the rest, deleted first, came back with the rollback
    assert not list((home / "runs").glob(".deleting-*"))


def test_a_deletion_cut_short_is_finished_by_the_next_and_a_foreign_folder_is_never_deleted(home, runs):
    left = home / "runs" / ".deleting-20250101-000000-dead"  # a deletion cut short after the history forgot it
    (left / "checkpoint-1").mkdir(parents=True)
    elsewhere = home / "my-notes"  # a run whose recorded folder is not one made for it
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("mine")
    with history.History(home / "history.sqlite") as db:
        db.update_run(SECOND, run_dir=str(elsewhere))
    what = run_removal.delete_run(SECOND)
    assert what.folder == "" and what.text() == f"run {SECOND} (done): its history"
    assert (elsewhere / "keep.txt").read_text() == "mine" and not left.exists()
    assert counts(home, SECOND)["runs"] == 0


def test_the_command_line_says_what_would_go_then_deletes_with_yes(home, runs, cli_here):
    said = cli_here("delete", FIRST, "last", check=2)  # 'last' is SECOND, the newest
    assert said.stdout.splitlines() == [f"Would delete run {FIRST} (done): its folder (3 MB) and its history; "
                                        f"its 1 export stays ({runs}).",
                                        f"Would delete run {SECOND} (done): its folder (empty) and its history."]
    assert said.stderr.strip() == "error: Nothing was deleted; add --yes to delete them."
    assert (home / "runs" / FIRST).is_dir() and counts(home, FIRST)["runs"] == 1

    done = cli_here("delete", FIRST, FIRST, "--yes", check=0)  # named twice, deleted once
    assert done.stdout.splitlines() == [f"Deleted run {FIRST} (done): its folder (3 MB) and its history; "
                                        f"its 1 export stays ({runs})."]
    assert [r["id"] for r in json.loads(cli_here("runs", "--json", check=0).stdout)] == [SECOND]
    missing = cli_here("delete", FIRST, SECOND, "--yes", check=2)  # one unknown: none is deleted
    assert missing.stderr.strip() == f"error: No run '{FIRST}' in the history; `tuneforge runs` lists them."
    assert counts(home, SECOND)["runs"] == 1


def test_a_finished_runs_checkpoints_go_alone_and_an_unfinished_run_keeps_them(home, runs, cli_here):
    first = home / "runs" / FIRST
    (first / "checkpoints" / "step-000006").mkdir(parents=True)
    (first / "checkpoints" / "step-000006" / "optimizer.safetensors").write_bytes(b"\0" * (2 * MB))
    (first / "result").mkdir(parents=True, exist_ok=True)
    (first / "result" / "adapter_model.safetensors").write_bytes(b"\0" * MB)
    before = counts(home, FIRST)
    said = cli_here("delete", FIRST, "--checkpoints", check=2)
    assert said.stdout.strip() == (f"Would delete run {FIRST} (done): its checkpoints (2 MB); its trained weights, "
                                   "history and exports stay.") and (first / "checkpoints").is_dir()
    done = cli_here("delete", FIRST, "--checkpoints", "--yes", check=0)
    assert done.stdout.startswith(f"Deleted run {FIRST} (done): its checkpoints (2 MB)")
    assert not (first / "checkpoints").exists() and (first / "result" / "adapter_model.safetensors").is_file()
    assert (first / "checkpoint-6").is_dir() and runs.is_file()  # what is not the checkpoints folder stays
    assert counts(home, FIRST) == {**before, "checkpoints": 0} and before["checkpoints"] == 1
    assert run_removal.removal(FIRST, checkpoints=True).text() == f"run {FIRST} (done): no checkpoints left; " \
                                                                  "nothing to free"
    with history.History(home / "history.sqlite") as db:
        db.update_run(SECOND, status=history.STOPPED)
    refused = cli_here("delete", SECOND, "--checkpoints", "--yes", check=2)
    assert refused.stderr.strip() == (f"error: Run {SECOND} is stopped: its checkpoints are what it resumes from, so "
                                      "they stay; resume it to its end first, or delete the whole run.")
    assert counts(home, SECOND)["checkpoints"] == 1
