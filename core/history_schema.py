"""The history's schema, one step per version: MIGRATIONS[i] takes a file from version i to i + 1.

A new version is a new function at the end of MIGRATIONS; `History.migrate` runs the steps a file lacks, each in
one transaction with the version it reaches, so a file is always at one version or the next, never between.
"""

from __future__ import annotations

import sqlite_utils


def create_v1(db: sqlite_utils.Database) -> None:
    """v1: projects, datasets, runs and what each run records (metrics, checkpoints, exports, events)."""
    db["meta"].create({"key": str, "value": str}, pk="key", if_not_exists=True)
    db["projects"].create({"id": int, "name": str, "created_at": float}, pk="id", if_not_exists=True)
    db["projects"].create_index(["name"], unique=True, if_not_exists=True)
    db["datasets"].create(
        {"id": str, "path": str, "format": str, "rows": int, "stats": str, "created_at": float},
        pk="id", if_not_exists=True,
    )
    db["runs"].create(
        {
            "id": str, "project_id": int, "status": str, "outcome": str, "model": str, "model_path": str,
            "dataset_id": str, "data_path": str, "strategy": str, "config": str, "plan": str, "hardware": str,
            "run_dir": str, "pid": int, "steps_done": int, "total_steps": int, "final_loss": float,
            "best_loss": float, "eval_loss": float, "created_at": float, "started_at": float, "ended_at": float,
            "parent_run": str,
        },
        pk="id", foreign_keys=[("project_id", "projects", "id"), ("dataset_id", "datasets", "id")],
        if_not_exists=True,
    )
    db["metrics"].create(
        {"run_id": str, "step": int, "split": str, "loss": float, "lr": float, "tokens_per_s": float,
         "elapsed_s": float, "memory_bytes": int, "at": float},
        pk=("run_id", "step", "split"), foreign_keys=[("run_id", "runs", "id")], if_not_exists=True,
    )
    db["checkpoints"].create(
        {"run_id": str, "step": int, "path": str, "created_at": float},
        pk=("run_id", "step"), foreign_keys=[("run_id", "runs", "id")], if_not_exists=True,
    )
    db["exports"].create(
        {"id": int, "run_id": str, "format": str, "quant": str, "path": str, "bytes": int, "created_at": float},
        pk="id", foreign_keys=[("run_id", "runs", "id")], if_not_exists=True,
    )
    db["events"].create(
        {"id": int, "run_id": str, "at": float, "kind": str, "text": str},
        pk="id", foreign_keys=[("run_id", "runs", "id")], if_not_exists=True,
    )


def to_v2(db: sqlite_utils.Database) -> None:
    """v2: measured disk speeds, cached per device."""
    db["disk_probes"].create(
        {"device": str, "path": str, "write_bytes_per_s": float, "read_bytes_per_s": float,
         "probe_bytes": int, "cache_dropped": int, "measured_at": float},
        pk="device", if_not_exists=True,
    )


def to_v3(db: sqlite_utils.Database) -> None:
    """v3: every plan a run has had (a re-plan after running out of memory adds one), with the reason
    it was made and, once the run has measured its true peak, the calibration."""
    db["plans"].create(
        {"run_id": str, "seq": int, "created_at": float, "reason": str, "plan": str, "calibration": str},
        pk=("run_id", "seq"), foreign_keys=[("run_id", "runs", "id")], if_not_exists=True,
    )
    for row in db.query("select id, plan, created_at from runs where plan is not null"):
        db["plans"].insert({"run_id": row["id"], "seq": 1, "created_at": row["created_at"],
                            "reason": "first plan", "plan": row["plan"]}, ignore=True)


def to_v4(db: sqlite_utils.Database) -> None:
    """v4: seconds a run has trained over all its sessions, pauses left out (started_at/ended_at span
    only the latest session, so a resumed run looked shorter than it was). Older runs get their
    latest session's span, the best that is known of them."""
    if "trained_s" not in db["runs"].columns_dict:
        db["runs"].add_column("trained_s", float)
    db.execute("update runs set trained_s = ended_at - started_at "
               "where trained_s is null and ended_at is not null and started_at is not null")


def to_v5(db: sqlite_utils.Database) -> None:
    """v5: measured host↔GPU copy speeds (core.link_probe), cached per GPU like the disk's."""
    db["link_probes"].create(
        {"device": str, "h2d_bytes_per_s": float, "d2h_bytes_per_s": float, "probe_bytes": int,
         "measured_at": float},
        pk="device", if_not_exists=True,
    )


def to_v6(db: sqlite_utils.Database) -> None:
    """v6: the latest measured correction per model, strategy and device in a table of its own, so that it
    outlives the run that measured it (a deleted run's plans go with it; what it taught the planner stays).
    Filled from the plans' calibrations, the newest of each."""
    db["calibrations"].create(
        {"model_path": str, "strategy": str, "device": str, "calibration": str, "measured_at": float},
        pk=("model_path", "strategy", "device"), if_not_exists=True,
    )
    db.execute(
        "insert or replace into calibrations select r.model_path, r.strategy, "
        "json_extract(p.calibration, '$.device'), p.calibration, p.created_at from plans p "
        "join runs r on r.id = p.run_id where p.calibration is not null and r.model_path is not null "
        "and r.strategy is not null and json_extract(p.calibration, '$.device') is not null "
        "order by p.created_at")


def to_v7(db: sqlite_utils.Database) -> None:
    """v7: each time a run was measured against its base on held-out rows (`tuneforge evaluate`, the export page's
    Measure it), with the figures in columns and the whole report (answers included) as JSON."""
    db["evaluations"].create(
        {"id": int, "run_id": str, "data": str, "rows": int, "tokens": int, "base_loss": float, "tuned_loss": float,
         "report": str, "created_at": float},
        pk="id", foreign_keys=[("run_id", "runs", "id")], if_not_exists=True,
    )


def to_v8(db: sqlite_utils.Database) -> None:
    """v8: a name the person gives a run ("pirate, longer"), shown beside its id and accepted wherever a run id
    is; older runs have none."""
    if "name" not in db["runs"].columns_dict:
        db["runs"].add_column("name", str)


def to_v9(db: sqlite_utils.Database) -> None:
    """v9: a preference run's share of pairs preferred the right way (core/objectives' `preferred`) at each step and
    validation check, beside its loss; other runs' rows have none."""
    if "prefers" not in db["metrics"].columns_dict:
        db["metrics"].add_column("prefers", float)


MIGRATIONS = (create_v1, to_v2, to_v3, to_v4, to_v5, to_v6, to_v7, to_v8, to_v9)
