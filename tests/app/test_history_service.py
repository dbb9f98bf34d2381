"""The History view's services on a real SQLite history: summaries, one run in detail, two runs compared."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app import history_service as hs
from app import operations, paths, user_settings
from core import history
from core.errors import BadArgument
from tests.app.history_runs import FIRST, SECOND, make_two_runs
from tests.conftest import REPO


def test_summaries_carry_the_figures(home):
    make_two_runs(home)
    runs = {r.id: r for r in hs.run_summaries()}
    assert list(runs) == [SECOND, FIRST]  # newest first
    first = runs[FIRST]
    assert (first.status, first.strategy, first.dataset, first.project) == ("done", "lora", "pirate_chat.jsonl",
                                                                             "pirates")
    assert (first.final_loss, first.best_loss, first.eval_loss, first.duration_s) == (1.7, 1.7, 1.95, 120.0)
    assert (first.steps_done, first.total_steps) == (6, 6)
    assert hs.projects() == ["pirates"] and hs.run_summaries("other") == []


def test_detail_has_both_curves_and_says_what_can_be_done(home):
    make_two_runs(home)
    detail = hs.run_detail(FIRST)
    assert [s for s, _ in detail.train] == [1, 2, 3, 4, 5, 6] and detail.eval == [(3, 2.3), (6, 1.95)]
    assert detail.has_result and not detail.resumable  # done: nothing to resume
    assert detail.summary.project == "pirates" and detail.config["lr"] == 2e-4
    assert not hs.run_detail(SECOND).has_result


def test_a_stopped_run_with_a_checkpoint_and_its_config_is_resumable(home):
    make_two_runs(home)
    run_dir = home / "runs" / SECOND
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text("{}")
    with history.History(paths.db_path()) as db:
        db.update_run(SECOND, status=history.STOPPED)
    assert hs.run_detail(SECOND).resumable
    with history.History(paths.db_path()) as db:  # marked running, but its trainer is gone
        db.update_run(SECOND, status=history.RUNNING, pid=2**22 + 12345)
    assert hs.run_detail(SECOND).summary.status == "interrupted" and hs.run_detail(SECOND).resumable


def test_comparing_lists_the_differing_settings_and_both_curves(home):
    make_two_runs(home)
    c = hs.compare(FIRST, SECOND)
    assert {k: (a, b) for k, a, b in c.differences} == {"lr": (2e-4, 1e-4), "seq_len": (512, 256),
                                                        "strategy_options.r": (16, 8)}
    assert set(c.curves) == {FIRST, SECOND}
    assert [len(c.curves[r]["train"]) for r in (FIRST, SECOND)] == [6, 6]
    assert c.curves[SECOND]["eval"] == [(3, 2.6), (6, 2.25)]
    assert c.held_out == []  # neither was measured on held-out rows


def report(data: str, tuned_loss: float) -> dict:
    return {"data": data, "rows": 12, "tokens": 300, "base_loss": 3.0, "tuned_loss": tuned_loss,
            "summary": f"{data}: measured", "answers": []}


def test_comparing_puts_the_latest_held_out_loss_of_each_file_side_by_side(home):
    make_two_runs(home)
    with history.History(paths.db_path()) as db:
        db.add_evaluation(FIRST, report("/d/held.jsonl", 1.5))
        db.add_evaluation(FIRST, report("/d/other.jsonl", 2.5))
        db.add_evaluation(FIRST, report("/d/held.jsonl", 1.25))  # measured again: the latest counts
        db.add_evaluation(SECOND, report("/d/held.jsonl", 1.75))
    assert hs.compare(FIRST, SECOND).held_out == [("/d/held.jsonl", 1.25, 1.75), ("/d/other.jsonl", 2.5, None)]


def test_config_differences_flatten_and_name_missing_keys():
    assert hs.config_differences({"a": 1, "o": {"r": 8}, "run_id": "x"}, {"a": 1, "o": {"r": 4, "d": 0.1},
                                                                          "run_id": "y", "new": True}) == \
        [("new", None, True), ("o.d", None, 0.1), ("o.r", 8, 4)]


def test_settings_round_trip_through_the_json_file(home, tmp_path):
    assert user_settings.load() == user_settings.UserSettings()  # no file: the defaults
    values = user_settings.UserSettings(data_folder=str(tmp_path / "data"), export_folder="~/exports", theme="dark")
    path = user_settings.save(values)
    assert path == home / "settings.json"
    assert json.loads(path.read_text())["theme"] == "dark"
    loaded = user_settings.load()
    assert loaded == values and loaded.export_folder == os.path.expanduser("~/exports")
    assert str(user_settings.export_folder()) == os.path.expanduser("~/exports")


@pytest.mark.parametrize("values,words", [
    ({"theme": "purple"}, "Setting 'theme': 'purple' is not one of system, light, dark"),
    ({"data_folder": "relative/data"}, "Setting 'data_folder': 'relative/data' is not a full path"),
    ({"export_folder": 3}, "Setting 'export_folder': expected a folder path"),
])
def test_a_bad_setting_is_a_sentence(values, words):
    with pytest.raises(BadArgument, match=words.replace("(", r"\(")):
        user_settings.UserSettings(**values)


def test_a_bad_settings_file_names_the_file_and_the_setting(home):
    (home / "settings.json").write_text(json.dumps({"theme": "purple"}))
    with pytest.raises(BadArgument, match=r"settings.json: setting 'theme': 'purple' is not one of"):
        user_settings.load()
    (home / "settings.json").write_text("{ not json")
    with pytest.raises(BadArgument, match=r"settings.json:1: not valid JSON"):
        user_settings.load()
    assert str(user_settings.export_folder()) == str(home / "exports")  # a broken file: the default


def test_the_data_folder_setting_applies_at_start_and_the_environment_wins(tmp_path):
    settings_file, data = tmp_path / "settings.json", tmp_path / "my-data"
    settings_file.write_text(json.dumps({"data_folder": str(data)}))
    env = {k: v for k, v in os.environ.items() if k != "TUNEFORGE_HOME"}
    code = "from app import paths; print(paths.home()); print(paths.db_path())"

    def home_of(extra: dict) -> list[str]:
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, **extra}, capture_output=True,
                              text=True, check=True).stdout.split()

    assert home_of({"TUNEFORGE_SETTINGS": str(settings_file)}) == [str(data), str(data / "history.sqlite")]
    assert home_of({"TUNEFORGE_SETTINGS": str(settings_file), "TUNEFORGE_HOME": str(tmp_path / "env")})[0] == \
        str(tmp_path / "env")


def test_a_runs_dataset_is_named_by_its_file_or_its_hub_id():
    assert hs.dataset_name("/data/pirate_chat.jsonl") == "pirate_chat.jsonl"
    assert hs.dataset_name("/data/a/b") == "b"  # a folder
    assert hs.dataset_name("acme/pirates:test") == "acme/pirates:test"  # a cached hub dataset, as recorded
    assert hs.dataset_name("") == ""


def test_the_next_plan_takes_the_median_pace_of_the_last_runs(home):
    """What the planner is given from earlier runs: the latest memory factor, and the median of the last runs'
    time factors, leaving out any that something else must have skewed (outside 0.1–10)."""
    with history.History(paths.db_path()) as db:
        for i, factor in enumerate([1.4, 30.0, 1.0, 2.2]):
            db.create_run(f"r{i}", "p", plan={}, model_path="/m", strategy="lora")
            db.set_calibration(f"r{i}", {"device": "cpu", "factor": 1.1, "time_factor": factor,
                                         "source": f"run r{i} on cpu"})
    assert operations.calibration_for("/m", "lora", "cpu") == {
        "source": "run r3 on cpu", "factor": 1.1, "time_factor": 1.4,
        "time_source": "the median of the last 3 runs of this model and strategy here"}
    assert operations.calibration_for("/m", "full", "cpu") is None
    assert operations.calibration_for("/m", "lora", "cpu", "orpo") is None  # preference tuning calibrates apart


def test_a_preference_run_says_so_beside_its_strategy():
    run = {"id": "r", "status": "done", "strategy": "lora", "config": {"objective": "orpo"}}
    assert hs.RunSummary.of(run).strategy == "lora (ORPO)"
    assert hs.RunSummary.of({**run, "config": {"objective": "simpo"}}).strategy == "lora (SimPO)"
    assert hs.RunSummary.of({**run, "config": {"objective": "sft"}}).strategy == "lora"
    assert hs.RunSummary.of({**run, "config": {"lr": 1e-4}}).strategy == "lora"  # runs from before objectives
