"""The local history: every project, run, metric, checkpoint, export and dataset, in SQLite.

sqlite-utils over one file in WAL mode, so the trainer process writes while the app reads. The schema carries
a version (table `meta`); `migrate` brings an older file up to date with the steps in core/history_schema.py and
refuses a newer one with a sentence instead of corrupting it. Writes of several rows are one transaction each.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from core.errors import KnownError, RunNotFound
from core.history_schema import MIGRATIONS

SCHEMA_VERSION = len(MIGRATIONS)

# Run statuses. "running" with a dead trainer is shown as "interrupted" by the app.
QUEUED, RUNNING, DONE, STOPPED, FAILED = "queued", "running", "done", "stopped", "failed"
# What is recorded of a run beside its row in `runs` (a run is deleted with all of them).
RUN_TABLES = ("metrics", "checkpoints", "exports", "events", "plans", "evaluations")
RECENT_TIMES = 5  # runs whose time factors are kept per model, strategy and device (their median plans)
NAME_MAX = 60  # characters of a run's name: enough to say what it was, short enough for a table's column


def now() -> float:
    return time.time()


def check_name(name: str) -> str:
    """A run's name as kept (blanks folded to single spaces); KnownError (a sentence) for one too long."""
    name = " ".join(name.split())
    if len(name) > NAME_MAX:
        raise KnownError(f"A run's name is at most {NAME_MAX} characters; '{name[:24]}…' has {len(name)}.")
    return name


def new_run_id() -> str:
    """Short, sortable, typeable: 20261123-091512-a3f9."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def calibration_kind(strategy: str, objective: str | None = None) -> str:
    """What a calibration is kept against beside the model and device: the strategy, with "+pairs" for
    preference tuning (core/objectives), whose memory and pace the estimates model apart from supervised
    runs' (two sequences an example, logits only where answers are), so one kind's measurement must not
    scale the other's plans; "+rated" for rated answers (KTO), whose second sequence takes no gradient, so
    it peaks well under a pair run's estimate (0.58× on the demo) and must not shrink the next pair run's."""
    from core import objectives

    pairs = objective in objectives.NAMES and objectives.learns_pairs(objective)
    return strategy + (("+rated" if objectives.learns_rated(objective) else "+pairs") if pairs else "")


class History:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(conn)
        self.migrate()

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self):
        """All the writes inside, or none of them. `with conn:` alone is not that: sqlite-utils 4 commits each of
        its writes at once unless a transaction is open, so this opens one (IMMEDIATE: the write lock is taken at
        the start, so a read-then-write such as add_plan's next number cannot race the other process). Inside
        another, it is part of that one."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    # -- schema ---------------------------------------------------------------------------------
    def schema_version(self) -> int:
        if "meta" not in self.db.table_names():
            return 0
        row = self.db.execute("select value from meta where key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def migrate(self) -> None:
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise KnownError(
                f"{self.path}: the history was written by a newer Tuneforge (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); update Tuneforge or point TUNEFORGE_HOME elsewhere."
            )
        for reached, step in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                step(self.db)
                self.db["meta"].upsert({"key": "schema_version", "value": str(reached)}, pk="key")

    # -- plans ----------------------------------------------------------------------------------
    def add_plan(self, run_id: str, plan: dict, reason: str) -> int:
        """Record a new plan for the run (it becomes the run's current plan); returns its number."""
        with self.transaction():
            row = self.db.execute("select coalesce(max(seq), 0) from plans where run_id = ?", [run_id]).fetchone()
            seq = row[0] + 1
            self.db["plans"].insert({"run_id": run_id, "seq": seq, "created_at": now(), "reason": reason,
                                     "plan": json.dumps(plan)})
            self.db["runs"].update(run_id, {"plan": json.dumps(plan)})
        return seq

    def plans(self, run_id: str) -> list[dict]:
        rows = self.db.query("select * from plans where run_id = ? order by seq", [run_id])
        return [{**r, "plan": json.loads(r["plan"]), "calibration": json.loads(r["calibration"] or "null")}
                for r in rows]

    def set_calibration(self, run_id: str, calibration: dict) -> None:
        """Attach the measured peak to the run's current plan, and keep it as the latest for the run's model,
        strategy (calibration_kind: with preference tuning apart) and device (calibration["device"]), with the
        time factors of the last RECENT_TIMES runs there ("time_factors", oldest first): one run's pace is a thin
        sample, their median a steadier one."""
        with self.transaction():
            self.db.execute("update plans set calibration = ? where run_id = ? and seq = "
                            "(select max(seq) from plans where run_id = ?)", [json.dumps(calibration), run_id, run_id])
            run = self.db.execute("select model_path, strategy, config from runs where id = ?", [run_id]).fetchone()
            if run and run[0] and run[1] and calibration.get("device"):
                objective = (json.loads(run[2]) if run[2] else {}).get("objective")
                run = (run[0], calibration_kind(run[1], objective))
                before = self.last_calibration(run[0], run[1], calibration["device"]) or {}
                times = before.get("time_factors", [before.get("time_factor")])
                times = [t for t in [*times, calibration.get("time_factor")] if t][-RECENT_TIMES:]
                self.db.execute("insert or replace into calibrations values (?, ?, ?, ?, ?)",
                                [run[0], run[1], calibration["device"],
                                 json.dumps({**calibration, "time_factors": times}), now()])

    def last_calibration(self, model_path: str, strategy: str, device: str) -> dict | None:
        """The latest measured correction for this model, strategy (calibration_kind) and device (a GPU's name,
        or 'cpu'), even when the run that measured it has since been deleted."""
        row = self.db.execute("select calibration from calibrations where model_path = ? and strategy = ? and "
                              "device = ?", [model_path, strategy, device]).fetchone()
        return json.loads(row[0]) if row else None

    # -- measured machine facts -----------------------------------------------------------------
    def disk_probe(self, device: str) -> dict | None:
        return self._probe("disk_probes", device)

    def save_disk_probe(self, record: dict) -> None:
        self._save_probe("disk_probes", record)

    def link_probe(self, device: str) -> dict | None:
        return self._probe("link_probes", device)

    def save_link_probe(self, record: dict) -> None:
        self._save_probe("link_probes", record)

    def _probe(self, table: str, device: str) -> dict | None:
        rows = list(self.db.query(f"select * from {table} where device = ?", [device]))
        return rows[0] if rows else None

    def _save_probe(self, table: str, record: dict) -> None:
        with self.transaction():
            self.db[table].upsert({**record, "measured_at": now()}, pk="device")

    # -- projects and datasets --------------------------------------------------------------------
    def project_id(self, name: str) -> int:
        row = self.db.execute("select id from projects where name = ?", [name]).fetchone()
        if row:
            return row[0]
        with self.transaction():
            return self.db["projects"].insert({"name": name, "created_at": now()}).last_pk

    def record_dataset(self, digest: str, path: str, fmt: str, rows: int, stats: dict) -> str:
        with self.transaction():
            self.db["datasets"].upsert(
                {"id": digest, "path": str(path), "format": fmt, "rows": rows, "stats": json.dumps(stats),
                 "created_at": now()}, pk="id",
            )
        return digest

    # -- runs -----------------------------------------------------------------------------------
    def create_run(self, run_id: str, project: str, **fields) -> str:
        record = {"id": run_id, "project_id": self.project_id(project), "status": QUEUED, "steps_done": 0,
                  "created_at": now()}
        for key in ("config", "plan", "hardware"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key], default=str)
        record.update(fields)
        with self.transaction():
            self.db["runs"].insert(record)
            if record.get("plan"):
                self.db["plans"].insert({"run_id": run_id, "seq": 1, "created_at": record["created_at"],
                                         "reason": "first plan", "plan": record["plan"]})
        return run_id

    def update_run(self, run_id: str, **fields) -> None:
        for key in ("config", "plan", "hardware"):
            if key in fields and not isinstance(fields[key], str):
                fields[key] = json.dumps(fields[key], default=str)
        with self.transaction():
            self.db["runs"].update(run_id, fields)

    def run(self, run_id: str) -> dict:
        """One run by id, 'last', its name (when one run has it), or a unique prefix of an id."""
        if run_id == "last":
            row = self.db.execute("select id from runs order by created_at desc limit 1").fetchone()
            if not row:
                raise RunNotFound("There are no runs yet; start one with `tuneforge train`.")
            run_id = row[0]
        named = [r[0] for r in self.db.execute("select id from runs where name = ? and id != ?", [run_id, run_id])]
        if len(named) > 1:
            raise RunNotFound(f"{len(named)} runs are named '{run_id}'; give the id of one (`tuneforge runs` lists "
                              "them).")
        run_id = named[0] if named else run_id
        rows = list(self.db.query("select * from runs where id = ? or id like ? order by created_at desc",
                                  [run_id, run_id + "%"]))
        exact = [r for r in rows if r["id"] == run_id]
        if exact:
            rows = exact
        if not rows:
            raise RunNotFound(f"No run '{run_id}' in the history; `tuneforge runs` lists them.")
        if len(rows) > 1:
            raise RunNotFound(f"'{run_id}' matches {len(rows)} runs; give more of the id (`tuneforge runs` lists them).")
        return _decode(rows[0])

    def rename(self, run_id: str, name: str) -> str:
        """Give the run `name` (its blanks folded; '' takes the name away); returns the run's id."""
        run = self.run(run_id)
        name = check_name(name)
        if name and (name == "last" or self.db.execute("select 1 from runs where id = ?", [name]).fetchone()):
            raise KnownError(f"'{name}' is how another run is already called (its id, or 'last'); choose another "
                             "name.")
        self.update_run(run["id"], name=name or None)
        return run["id"]

    def delete_run(self, run_id: str) -> None:
        """Forget one run (the exact id) and everything recorded of it, in one transaction: all or nothing."""
        with self.transaction():
            for table in RUN_TABLES:
                self.db.execute(f"delete from {table} where run_id = ?", [run_id])
            if not self.db.execute("delete from runs where id = ?", [run_id]).rowcount:
                raise RunNotFound(f"No run '{run_id}' in the history; `tuneforge runs` lists them.")

    def runs(self, project: str | None = None) -> list[dict]:
        sql = ("select runs.*, projects.name as project from runs join projects on projects.id = runs.project_id")
        args: list = []
        if project:
            sql += " where projects.name = ?"
            args.append(project)
        return [_decode(r) for r in self.db.query(sql + " order by runs.created_at desc", args)]

    def projects(self, with_runs: bool = False) -> list[dict]:
        """Every project, or only those holding runs (one whose runs were all deleted is then left out)."""
        held = " where id in (select project_id from runs)" if with_runs else ""
        return list(self.db.query(f"select * from projects{held} order by name"))

    # -- metrics, checkpoints, exports, events ------------------------------------------------------------
    def add_metric(self, run_id: str, step: int, split: str, loss: float, **extra) -> None:
        with self.transaction():
            self.db["metrics"].upsert({"run_id": run_id, "step": step, "split": split, "loss": loss, "at": now(),
                                       **extra}, pk=("run_id", "step", "split"))

    def metrics(self, run_id: str, split: str = "train") -> list[dict]:
        return list(self.db.query("select * from metrics where run_id = ? and split = ? order by step",
                                  [run_id, split]))

    def add_checkpoint(self, run_id: str, step: int, path: str, keep: int | None = None) -> None:
        """Record a checkpoint; with `keep`, the rows of all but the newest `keep` go, as checkpoint.save deleted
        those folders (so the history never lists a checkpoint that is not on disk)."""
        with self.transaction():
            self.db["checkpoints"].upsert({"run_id": run_id, "step": step, "path": str(path), "created_at": now()},
                                          pk=("run_id", "step"))
            if keep is not None:
                self.db.execute("delete from checkpoints where run_id = ? and step not in (select step from "
                                "checkpoints where run_id = ? order by step desc limit ?)", [run_id, run_id, keep])

    def forget_checkpoints(self, run_id: str) -> None:
        """The run's checkpoints were deleted (app.run_removal): their rows go, in one transaction."""
        with self.transaction():
            self.db.execute("delete from checkpoints where run_id = ?", [run_id])

    def checkpoints(self, run_id: str) -> list[dict]:
        return list(self.db.query("select * from checkpoints where run_id = ? order by step", [run_id]))

    def add_export(self, run_id: str, fmt: str, path: str, size: int, quant: str | None = None) -> int:
        with self.transaction():
            return self.db["exports"].insert({"run_id": run_id, "format": fmt, "quant": quant, "path": str(path),
                                              "bytes": size, "created_at": now()}).last_pk

    def exports(self, run_id: str) -> list[dict]:
        return list(self.db.query("select * from exports where run_id = ? order by id", [run_id]))

    def add_evaluation(self, run_id: str, report: dict) -> int:
        """Keep a measurement of the run on held-out rows (core.evaluation.Report.to_dict())."""
        with self.transaction():
            return self.db["evaluations"].insert({
                "run_id": run_id, "data": report["data"], "rows": report["rows"], "tokens": report["tokens"],
                "base_loss": report["base_loss"], "tuned_loss": report["tuned_loss"], "report": json.dumps(report),
                "created_at": now()}).last_pk

    def evaluations(self, run_id: str) -> list[dict]:
        """The run's measurements, oldest first, each with its report decoded."""
        rows = self.db.query("select * from evaluations where run_id = ? order by id", [run_id])
        return [{**r, "report": json.loads(r["report"])} for r in rows]

    def add_event(self, run_id: str, kind: str, text: str) -> None:
        with self.transaction():
            self.db["events"].insert({"run_id": run_id, "at": now(), "kind": kind, "text": text})

    def events(self, run_id: str) -> list[dict]:
        return list(self.db.query("select * from events where run_id = ? order by id", [run_id]))


def _decode(row: dict) -> dict:
    row = dict(row)
    for key in ("config", "plan", "hardware"):
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row
