import sqlite3

import pytest

from core import history
from core.errors import KnownError, RunNotFound


def test_schema_is_versioned_and_in_wal_mode(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    assert h.schema_version() == history.SCHEMA_VERSION
    assert h.db.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert {"projects", "runs", "metrics", "checkpoints", "exports", "datasets", "events"} <= set(h.db.table_names())
    h.close()


def test_a_run_with_metrics_survives_reopening(tmp_path):
    path = tmp_path / "h.sqlite"
    h = history.History(path)
    h.record_dataset("abc", "d.jsonl", "messages", 10, {"max": 5})
    h.create_run("20260101-000000-aaaa", "proj", model="default", dataset_id="abc", strategy="lora",
                 config={"lr": 0.1}, plan={"strategy": "lora"})
    h.add_metric("20260101-000000-aaaa", 1, "train", 2.5, lr=0.1)
    h.add_metric("20260101-000000-aaaa", 2, "train", 2.0, lr=0.1)
    h.update_run("20260101-000000-aaaa", status=history.DONE, final_loss=2.0)
    h.close()
    h = history.History(path)
    run = h.run("20260101")  # a unique prefix is enough
    assert run["status"] == "done" and run["config"] == {"lr": 0.1} and run["plan"]["strategy"] == "lora"
    assert [m["loss"] for m in h.metrics(run["id"])] == [2.5, 2.0]
    assert h.runs("proj")[0]["project"] == "proj" and h.runs("other") == []
    assert h.run("last")["id"] == "20260101-000000-aaaa"


def test_unknown_and_ambiguous_runs_are_sentences(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    with pytest.raises(RunNotFound, match="no runs yet"):
        h.run("last")
    h.create_run("20260101-000000-aaaa", "p")
    h.create_run("20260101-000000-aaab", "p")
    with pytest.raises(RunNotFound, match="matches 2 runs"):
        h.run("20260101")
    with pytest.raises(RunNotFound, match="No run 'zzz'"):
        h.run("zzz")


def test_a_run_is_found_by_its_name_and_a_name_is_one_sentence_when_it_cannot_be(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    for run_id in ("20260101-000000-aaaa", "20260101-000000-bbbb", "20260101-000000-cccc"):
        h.create_run(run_id, "p")
    assert h.rename("20260101-000000-a", "  pirate,\tlonger ") == "20260101-000000-aaaa"
    assert h.run("pirate, longer")["id"] == "20260101-000000-aaaa" and h.runs()[-1]["name"] == "pirate, longer"
    h.rename("20260101-000000-bbbb", "20260101-000000-c")  # a name wins over the start of another's id
    assert h.run("20260101-000000-c")["id"] == "20260101-000000-bbbb"
    h.rename("20260101-000000-cccc", "pirate, longer")
    with pytest.raises(RunNotFound, match="2 runs are named 'pirate, longer'; give the id"):
        h.run("pirate, longer")
    for name, words in (("20260101-000000-aaaa", "how another run is already called"), ("last", "already called"),
                        ("x" * 61, "at most 60 characters")):
        with pytest.raises(KnownError, match=words):
            h.rename("20260101-000000-bbbb", name)
    h.rename("20260101-000000-cccc", "")  # no name any more
    assert h.run("20260101-000000-cccc")["name"] is None and h.run("pirate, longer")["id"] == "20260101-000000-aaaa"


def test_a_newer_schema_is_refused_not_touched(tmp_path):
    path = tmp_path / "h.sqlite"
    history.History(path).close()
    conn = sqlite3.connect(path)
    conn.execute("update meta set value='99' where key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(KnownError, match="newer Tuneforge"):
        history.History(path)


def test_an_older_schema_is_migrated_in_place(tmp_path):
    path = tmp_path / "h.sqlite"
    h = history.History(path)
    h.create_run("20260101-000000-aaaa", "p", plan={"strategy": "lora"})
    h.update_run("20260101-000000-aaaa", started_at=1000.0, ended_at=1090.0)
    h.close()
    conn = sqlite3.connect(path)  # make it a version-1 file, as the first release wrote it
    conn.execute("alter table runs drop column trained_s")
    conn.execute("alter table runs drop column name")
    conn.execute("alter table metrics drop column prefers")
    conn.execute("drop table disk_probes")
    conn.execute("drop table plans")
    conn.execute("drop table calibrations")
    conn.execute("drop table evaluations")
    conn.execute("update meta set value='1' where key='schema_version'")
    conn.commit()
    conn.close()
    h = history.History(path)
    assert h.schema_version() == history.SCHEMA_VERSION == 9
    assert {"disk_probes", "link_probes", "evaluations"} <= set(h.db.table_names())
    assert "prefers" in h.db["metrics"].columns_dict
    assert h.run("last")["id"] == "20260101-000000-aaaa"
    assert h.run("last")["trained_s"] == 90.0  # v4: the span its one session took
    assert h.run("last")["name"] is None  # v8: named by nobody yet
    assert [(p["seq"], p["reason"], p["plan"]) for p in h.plans("20260101-000000-aaaa")] == \
        [(1, "first plan", {"strategy": "lora"})]
    h.close()


def test_plans_accumulate_with_reasons_and_calibration(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    h.create_run("r1", "p", plan={"micro_batch": 8}, model_path="/m", strategy="lora")
    assert h.add_plan("r1", {"micro_batch": 4}, "ran out of memory at step 3") == 2
    assert h.run("r1")["plan"] == {"micro_batch": 4}
    h.set_calibration("r1", {"device": "RTX 4090", "factor": 1.1, "measured_bytes": 5})
    plans = h.plans("r1")
    assert [p["reason"] for p in plans] == ["first plan", "ran out of memory at step 3"]
    assert plans[0]["calibration"] is None and plans[1]["calibration"]["factor"] == 1.1
    assert h.last_calibration("/m", "lora", "RTX 4090")["factor"] == 1.1
    assert h.last_calibration("/m", "lora", "cpu") is None and h.last_calibration("/m", "full", "RTX 4090") is None
    h.delete_run("r1")  # what the run taught the planner outlives it
    assert h.plans("r1") == [] and h.last_calibration("/m", "lora", "RTX 4090")["factor"] == 1.1
    h.close()


def test_preference_runs_calibrate_apart_from_supervised_ones(tmp_path):
    """Two sequences an example and logits only where answers are: a preference run's measured factor must not
    scale a supervised plan, nor the other way round."""
    h = history.History(tmp_path / "h.sqlite")
    for run_id, objective, factor in (("r1", "sft", 1.1), ("r2", "dpo", 0.8), ("r3", None, 1.2)):
        h.create_run(run_id, "p", plan={}, model_path="/m", strategy="lora",
                     config={"objective": objective} if objective else {})
        h.set_calibration(run_id, {"device": "cpu", "factor": factor})
    assert history.calibration_kind("lora", "orpo") == "lora+pairs" == history.calibration_kind("lora", "simpo")
    assert history.calibration_kind("lora", "sft") == "lora" == history.calibration_kind("lora", None)
    assert history.calibration_kind("lora", "kto") == "lora+rated"  # its peak is under a pair run's: kept apart
    assert h.last_calibration("/m", "lora", "cpu")["factor"] == 1.2  # r3: a config from before objectives
    assert h.last_calibration("/m", "lora+pairs", "cpu")["factor"] == 0.8
    h.close()


def test_the_last_few_runs_time_factors_are_kept_beside_the_latest_calibration(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    factors = [2.0, None, 1.0, 3.0, 1.5, 1.2, 0.9]  # None: a run whose pace taught nothing (a lean heap)
    for i, factor in enumerate(factors):
        h.create_run(f"r{i}", "p", plan={}, model_path="/m", strategy="lora")
        h.set_calibration(f"r{i}", {"device": "cpu", "factor": 1.0 + i / 10, "time_factor": factor})
    latest = h.last_calibration("/m", "lora", "cpu")
    assert latest["factor"] == 1.6 and latest["time_factor"] == 0.9
    assert latest["time_factors"] == [1.0, 3.0, 1.5, 1.2, 0.9]  # the newest RECENT_TIMES, oldest first
    assert h.plans("r6")[0]["calibration"] == {"device": "cpu", "factor": 1.6, "time_factor": 0.9}
    h.close()


def test_a_version_5_history_keeps_its_calibrations_as_the_newest_of_each(tmp_path):
    path = tmp_path / "h.sqlite"
    h = history.History(path)
    for run, factor in (("r1", 1.1), ("r2", 1.3)):  # the same model, strategy and GPU, measured twice
        h.create_run(run, "p", plan={"micro_batch": 8}, model_path="/m", strategy="lora")
        h.db.execute("update plans set calibration = ?, created_at = ? where run_id = ?",
                     [f'{{"device": "RTX 4090", "factor": {factor}}}', {"r1": 1.0, "r2": 2.0}[run], run])
    h.db.conn.commit()
    h.close()
    conn = sqlite3.connect(path)  # as version 5 wrote it: calibrations only in the plans
    conn.execute("drop table calibrations")
    conn.execute("update meta set value='5' where key='schema_version'")
    conn.commit()
    conn.close()
    h = history.History(path)
    assert h.schema_version() == 9 and h.last_calibration("/m", "lora", "RTX 4090")["factor"] == 1.3
    h.close()


@pytest.mark.parametrize("write, table", [
    (lambda h: h.add_plan("r1", {"micro_batch": 4}, "ran out of memory"), "plans"),  # a plan, then the run's
    (lambda h: h.create_run("r2", "p", plan={"micro_batch": 2}), "runs"),  # the run, then its first plan
    (lambda h: h.delete_run("r1"), "metrics"),  # its records, then the run
], ids=["add_plan", "create_run", "delete_run"])
def test_writes_of_several_rows_land_whole_or_not_at_all(tmp_path, write, table):
    """sqlite-utils 4 commits each write by itself unless a transaction is open: each of these must be one."""
    h = history.History(tmp_path / "h.sqlite")
    h.create_run("r1", "p", plan={"micro_batch": 8})
    h.add_metric("r1", 1, "train", 2.5)
    before = {t: h.db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("runs", "plans", "metrics")}
    last = {"plans": "update on runs", "runs": "insert on plans", "metrics": "delete on runs"}[table]
    h.db.conn.execute(f"create trigger refuse before {last} begin select raise(abort, 'refused'); end")
    with pytest.raises(sqlite3.IntegrityError, match="refused"):
        write(h)
    after = {t: h.db.execute(f"select count(*) from {t}").fetchone()[0] for t in ("runs", "plans", "metrics")}
    assert after == before and h.run("r1")["plan"] == {"micro_batch": 8}
    h.close()


def test_the_history_lists_the_checkpoints_a_save_kept_and_forgets_the_ones_it_deleted(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    h.create_run("r1", "p", plan={})
    h.create_run("r2", "p", plan={})
    h.add_checkpoint("r2", 5, "/r2/step-5")  # another run's: untouched
    for step in (10, 20, 30):
        h.add_checkpoint("r1", step, f"/r1/step-{step}", keep=2)
    assert [c["step"] for c in h.checkpoints("r1")] == [20, 30] and len(h.checkpoints("r2")) == 1
    h.add_checkpoint("r1", 40, "/r1/step-40")  # without keep: every row stays (as before)
    assert [c["step"] for c in h.checkpoints("r1")] == [20, 30, 40]
    h.close()


def test_a_project_whose_runs_are_deleted_is_no_longer_listed_as_holding_runs(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    h.create_run("r1", "a")
    h.create_run("r2", "b")
    h.delete_run("r1")
    assert [p["name"] for p in h.projects()] == ["a", "b"]
    assert [p["name"] for p in h.projects(with_runs=True)] == ["b"]
    with pytest.raises(RunNotFound):
        h.delete_run("r1")
    h.close()


def test_evaluations_are_kept_with_their_run_and_go_with_it(tmp_path):
    h = history.History(tmp_path / "h.sqlite")
    h.create_run("r1", "p")
    report = {"data": "held.jsonl", "rows": 12, "tokens": 300, "base_loss": 3.5, "tuned_loss": 0.5,
              "summary": "held.jsonl: better", "answers": [{"source": "held.jsonl:1", "prompt": "q", "expected": "e",
                                                             "base": "b", "tuned": "t"}]}
    first = h.add_evaluation("r1", report)
    second = h.add_evaluation("r1", {**report, "tuned_loss": 0.4})
    kept = h.evaluations("r1")
    assert [e["id"] for e in kept] == [first, second] and kept[0]["report"] == report
    assert (kept[1]["base_loss"], kept[1]["tuned_loss"], kept[1]["data"]) == (3.5, 0.4, "held.jsonl")
    h.delete_run("r1")
    assert h.evaluations("r1") == []
    h.close()
