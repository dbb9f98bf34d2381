"""The History page on a real SQLite history: the list, one run opened, two runs compared, resume."""

from __future__ import annotations

import os
import sqlite3

import pytest
from PySide6.QtGui import QColor

from app import paths
from core import atomic, history
from tests.app.history_runs import FIRST, RUNS, SECOND, make_two_runs
from ui import tasks
from ui.charts import PALETTE


@pytest.fixture
def page(qtbot, home):
    from ui.history.history_page import HistoryPage

    make_two_runs(home)
    page = HistoryPage()
    qtbot.addWidget(page)
    page.resize(1100, 760)
    page.show()
    page.refresh()
    qtbot.waitUntil(lambda: page.table.topLevelItemCount() == 2, timeout=10000)
    yield page
    page.shutdown()
    for view in page.details.values():
        if view.train_page.job is not None:
            assert view.train_page.job.wait(60) is not None
    assert tasks.wait_idle(30000)


def row(page, run_id: str, what: str = "text") -> dict:
    """The run's row, column title → its text (or its tooltip)."""
    from ui.history.run_table import COLUMNS

    items = [page.table.topLevelItem(i) for i in range(page.table.topLevelItemCount())]
    item = next(i for i in items if i.run.id == run_id)
    return {title: (item.text if what == "text" else item.toolTip)(col) for col, title in enumerate(COLUMNS)}


def test_the_list_shows_both_runs_with_their_figures(page):
    assert row(page, FIRST) == {"Run": FIRST, "Project": "pirates", "Status": "done", "Model": "default",
                                "Strategy": "lora", "Dataset": "pirate_chat.jsonl", "Steps": "6/6",
                                "Final loss": "1.7000", "Best train loss": "1.7000", "Duration": "2 min", "Disk": "0 KB"}
    assert row(page, SECOND)["Final loss"] == "2.1000" and row(page, SECOND)["Duration"] == "80 s"
    assert row(page, SECOND)["Disk"] == "—"  # it has no folder
    assert page.table.topLevelItem(0).run.id == SECOND  # newest first
    page.table.sortByColumn(7, page.table.header().sortIndicatorOrder().AscendingOrder)  # by final loss
    assert page.table.topLevelItem(0).run.id == FIRST
    assert [page.project_combo.itemText(i) for i in range(page.project_combo.count())] == ["All projects", "pirates"]
    assert page.count_label.text() == "2 runs"


def test_one_run_opens_with_its_curve_settings_and_what_can_be_done(page, qtbot):
    page.select([FIRST])
    qtbot.waitUntil(lambda: page.detail_view is not None and page.detail_view.run_id == FIRST, timeout=10000)
    view = page.detail_view
    assert "1.7000" in view.header.text() and "1.9500" in view.header.text()  # final and validation loss
    chart = view.train_page.loss_chart
    assert [s for s, _ in chart.points] == [1, 2, 3, 4, 5, 6] and chart.eval_points == RUNS[FIRST][3]
    assert not view.train_page.start_button.isEnabled()  # done: nothing to resume
    assert view.tabs.isTabEnabled(1)  # it has a result: try and export
    assert view.export_page.summary.text().startswith(f"Run <b>{FIRST}</b>")
    settings = {view.config_table.topLevelItem(i).text(0): view.config_table.topLevelItem(i).text(1)
                for i in range(view.config_table.topLevelItemCount())}
    assert settings["lr"] == "0.0002" and settings["strategy_options.r"] == "16"

    page.select([SECOND])
    qtbot.waitUntil(lambda: page.detail_view.run_id == SECOND, timeout=10000)
    assert not page.detail_view.tabs.isTabEnabled(1)  # no result folder
    assert list(page.details) == [SECOND]  # the other run's view was let go


def test_a_preference_runs_figures_say_the_share_of_pairs_preferred(page, qtbot):
    """What the trainer records for a preference run (its share of pairs preferred, per step and check) is one of
    its figures, the last check's, else the last step's, and its training tab shows the last step's as the live
    page did; a supervised run has neither."""
    import dataclasses

    from app import history_service
    from ui.history.run_detail import figures_html

    page.select([FIRST])
    qtbot.waitUntil(lambda: page.detail_view is not None and page.detail_view.run_id == FIRST, timeout=10000)
    train = page.detail_view.train_page
    detail = history_service.run_detail(FIRST)
    assert "Chosen preferred" not in figures_html(detail) and train.stat["prefers"].isHidden()
    steps = dataclasses.replace(detail, preferred=[(5, 0.5), (6, 0.75)])
    assert "Chosen preferred</td><td style='padding-right:18px'><b>75% of step 6's pairs</b>" in figures_html(steps)
    checks = dataclasses.replace(steps, eval_preferred=[(3, 0.333), (6, 0.667)])
    assert "<b>67% of the validation pairs at step 6</b>" in figures_html(checks)
    train.show_run(checks)
    assert not train.stat["prefers"].isHidden() and train.stat["prefers"].text() == "75%"
    assert train.captions["prefers"].text() == "Chosen preferred"
    rated = dataclasses.replace(checks, config={**checks.config, "objective": "kto"})  # KTO counts answers rated right
    assert "Rated right</td><td style='padding-right:18px'><b>67% of the validation answers at step 6</b>" in \
        figures_html(rated)
    train.show_run(rated)
    assert train.captions["prefers"].text() == "Rated right" and train.stat["prefers"].text() == "75%"
    train.show_run(detail)
    assert train.stat["prefers"].isHidden()


def colour_pixels(widget, colour: str) -> int:
    image = widget.grab().toImage()
    want = QColor(colour).rgb()
    return sum(image.pixel(x, y) == want for x in range(0, image.width(), 2) for y in range(0, image.height(), 2))


def test_a_run_is_named_from_the_list_and_a_name_that_cannot_be_is_a_sentence(page, qtbot, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    assert not page.rename_button.isEnabled()
    page.select([FIRST])
    qtbot.waitUntil(lambda: page.detail_view is not None and page.detail_view.run_id == FIRST, timeout=10000)
    assert page.rename_button.isEnabled()
    asked = []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: asked.append(k["text"]) or ("pirates,  short", True))
    page.rename_button.click()  # the person types a name in the dialog and presses OK
    qtbot.waitUntil(lambda: row(page, FIRST)["Run"] == "pirates, short", timeout=10000)  # the id: in the tooltip
    assert row(page, FIRST, "tip")["Run"].startswith(f"Run {FIRST}, created ")
    assert asked == [""] and page.status.label.text() == "Named it “pirates, short”."
    qtbot.waitUntil(lambda: "pirates, short" in page.detail_view.header.text(), timeout=10000)
    page.rename(FIRST, SECOND)  # another run's id cannot be a name: said in the panel, nothing changed
    assert "is how another run is already called" in page.error.message
    assert row(page, FIRST)["Run"] == "pirates, short"


def test_two_runs_compare_settings_and_curves(page, qtbot):
    with history.History(paths.db_path()) as db:  # both measured on the same held-out file
        for run, loss in ((FIRST, 1.25), (SECOND, 1.75)):
            db.add_evaluation(run, {"data": "/d/held.jsonl", "rows": 12, "tokens": 300, "base_loss": 3.0,
                                    "tuned_loss": loss, "summary": "", "answers": []})
    page.select([FIRST, SECOND])
    view = page.compare_view
    qtbot.waitUntil(lambda: page.stack.currentWidget() is view, timeout=10000)
    assert view.differing_keys == ["lr", "seq_len", "strategy_options.r"]
    cells = {view.table.item(r, 0).text(): (view.table.item(r, 1).text(), view.table.item(r, 2).text())
             for r in range(view.table.rowCount())}
    assert cells["lr"] == ("0.0002", "0.0001") and cells["seq_len"] == ("512", "256")
    assert cells["final loss"] == ("1.7000", "2.1000")
    assert cells["held-out loss: held.jsonl"] == ("1.2500", "1.7500")
    assert cells["lowest validation"] == ("1.9500 at step 6", "2.2500 at step 6")
    series = view.chart.series
    assert [(s.dashed, len(s.points)) for s in series] == [(False, 6), (True, 2), (False, 6), (True, 2)]
    assert {s.color for s in series if not s.dashed} == {PALETTE[0], PALETTE[1]}
    # painted, both colours on the chart
    assert colour_pixels(view.chart, PALETTE[0]) > 20 and colour_pixels(view.chart, PALETTE[1]) > 20

    with history.History(paths.db_path()) as db:
        db.create_run("20260103-110000-cccc", "pirates")
    page.refresh()
    qtbot.waitUntil(lambda: page.table.topLevelItemCount() == 3, timeout=10000)
    page.table.selectAll()
    assert page.stack.currentWidget() is page.placeholder and "not more" in page.placeholder.text()


def test_a_history_from_a_newer_tuneforge_is_a_sentence(qtbot, home):
    from ui.history.history_page import HistoryPage

    history.History(paths.db_path()).close()
    with sqlite3.connect(paths.db_path()) as conn:
        conn.execute("update meta set value='99' where key='schema_version'")
    page = HistoryPage()
    qtbot.addWidget(page)
    page.refresh()
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=10000)
    assert "newer Tuneforge" in page.error.message and page.error.details_button.isHidden()
    assert tasks.wait_idle(10000)


def test_resume_starts_the_trainer_from_the_history_and_shows_how_it_ended(page, qtbot, home):
    with history.History(paths.db_path()) as db:  # stopped, with a checkpoint and its config file
        db.update_run(SECOND, status=history.STOPPED, outcome="stopped by you")
        atomic.write_json(home / "runs" / SECOND / "run.json", db.run(SECOND)["config"])
    page.refresh()
    page.select([SECOND])
    qtbot.waitUntil(lambda: page.detail_view is not None and page.detail_view.run_id == SECOND, timeout=10000)
    resume = page.detail_view.train_page
    assert resume.start_button.isEnabled() and "checkpoint at step 6" in resume.summary.text()
    resume.start_button.click()
    assert resume.running and not page.detail_view.tabs.isTabEnabled(1)
    # The run's data file is gone (/data/pirate_chat.jsonl): the real trainer says so, in a sentence.
    qtbot.waitUntil(lambda: resume.session.outcome is not None, timeout=60000)
    assert resume.session.outcome.status == "failed"
    assert "pirate_chat.jsonl" in resume.error.message and resume.start_button.isEnabled()
    qtbot.waitUntil(lambda: row(page, SECOND)["Status"] == "failed", timeout=10000)  # the list was read again


def test_deleting_asks_with_what_it_frees_then_the_run_and_its_view_go(page, qtbot, home, monkeypatch):
    (home / "runs" / FIRST / "result" / "adapter.safetensors").write_bytes(b"\0" * 2_000_000)
    page.refresh()
    qtbot.waitUntil(lambda: row(page, FIRST)["Disk"] == "2 MB", timeout=10000)  # what its folder holds
    page.select([FIRST])
    qtbot.waitUntil(lambda: page.detail_view is not None and page.detail_view.run_id == FIRST, timeout=10000)
    assert page.delete_button.isEnabled()
    asked = []

    def answer(found):  # the person reads the question, cancels the first time, deletes the second
        asked.append(page.delete_box(found))
        return len(asked) == 2

    monkeypatch.setattr(page, "confirm_delete", answer)
    page.delete_button.click()
    qtbot.waitUntil(lambda: len(asked) == 1, timeout=10000)
    box = asked[0]
    assert box.text() == "Delete this run, freeing 2 MB? This cannot be undone."
    assert box.informativeText() == f"• Run {FIRST} (done): its folder (2 MB) and its history."
    assert box.defaultButton() is box.button(box.StandardButton.Cancel)
    assert (home / "runs" / FIRST / "result").is_dir() and FIRST in page.details  # cancelled: nothing happened

    page.delete_button.click()
    qtbot.waitUntil(lambda: page.table.topLevelItemCount() == 1, timeout=10000)
    qtbot.waitUntil(lambda: page.status.label.text() == "Deleted 1 run, 2 MB freed.", timeout=10000)
    assert not (home / "runs" / FIRST).exists() and FIRST not in page.details
    assert page.count_label.text() == "1 run" and page.table.topLevelItem(0).run.id == SECOND
    assert not page.delete_button.isEnabled()  # nothing selected


def test_a_selection_with_a_run_training_now_cannot_be_deleted(page, qtbot):
    with history.History(paths.db_path()) as db:
        db.update_run(SECOND, status=history.RUNNING, pid=os.getpid())  # a live process: it trains
    page.refresh()
    qtbot.waitUntil(lambda: row(page, SECOND)["Status"] == "running", timeout=10000)
    page.select([FIRST])
    qtbot.waitUntil(page.delete_button.isEnabled, timeout=10000)
    page.select([FIRST, SECOND])  # compared, not opened: nothing attaches to the "run"
    qtbot.waitUntil(lambda: page.stack.currentWidget() is page.compare_view, timeout=10000)
    assert not page.delete_button.isEnabled()


def test_a_project_whose_runs_are_all_deleted_leaves_the_list(page, qtbot, monkeypatch):
    page.project_combo.setCurrentText("pirates")
    qtbot.waitUntil(lambda: not page.tasks.busy("list"), timeout=10000)
    monkeypatch.setattr(page, "confirm_delete", lambda found: True)
    page.select([FIRST, SECOND])
    qtbot.waitUntil(page.delete_button.isEnabled, timeout=10000)
    page.delete_button.click()
    qtbot.waitUntil(lambda: page.status.label.text().startswith("Deleted 2 runs"), timeout=10000)
    assert [page.project_combo.itemText(i) for i in range(page.project_combo.count())] == ["All projects"]
    assert page.table.topLevelItemCount() == 0 and page.count_label.text() == "0 runs"
    assert page.placeholder.text().startswith("No runs yet")


def test_a_deletion_that_fails_part_way_shows_what_is_left_and_why(page, qtbot, monkeypatch):
    with sqlite3.connect(paths.db_path()) as conn:  # SQLite refuses to forget the first run (listed last)
        conn.execute(f"create trigger held before delete on runs when old.id = '{FIRST}' "
                     "begin select raise(abort, 'held by a test'); end")
    monkeypatch.setattr(page, "confirm_delete", lambda found: True)
    page.select([FIRST, SECOND])
    qtbot.waitUntil(page.delete_button.isEnabled, timeout=10000)
    page.delete_button.click()
    qtbot.waitUntil(lambda: "held by a test" in page.error.message, timeout=10000)
    assert [page.table.topLevelItem(i).run.id for i in range(page.table.topLevelItemCount())] == [FIRST]
    assert paths.run_dir(FIRST).joinpath("result").is_dir()  # its folder was put back


def test_freeing_a_finished_runs_checkpoints_keeps_the_run(page, qtbot, home, monkeypatch):
    (home / "runs" / FIRST / "checkpoints" / "step-000006").mkdir(parents=True)
    (home / "runs" / FIRST / "checkpoints" / "step-000006" / "optimizer.safetensors").write_bytes(b"\0" * 2_000_000)
    with history.History(paths.db_path()) as db:
        db.update_run(SECOND, status=history.STOPPED)  # it resumes from its checkpoints: they stay
    page.refresh()
    qtbot.waitUntil(lambda: row(page, SECOND)["Status"] == "stopped", timeout=10000)
    page.select([FIRST, SECOND])
    qtbot.waitUntil(lambda: page.stack.currentWidget() is page.compare_view, timeout=10000)
    assert page.delete_button.isEnabled() and not page.free_button.isEnabled()
    page.select([FIRST])
    qtbot.waitUntil(page.free_button.isEnabled, timeout=10000)
    asked = []
    monkeypatch.setattr(page, "confirm_delete", lambda found: asked.append(page.delete_box(found)) or True)
    page.free_button.click()
    qtbot.waitUntil(lambda: page.status.label.text() == "Deleted the checkpoints of 1 run, 2 MB freed.",
                    timeout=10000)
    assert asked[0].text() == "Delete the checkpoints of this run, freeing 2 MB? This cannot be undone."
    assert asked[0].windowTitle() == "Free checkpoints"
    assert not (home / "runs" / FIRST / "checkpoints").exists() and (home / "runs" / FIRST / "result").is_dir()
    assert page.table.topLevelItemCount() == 2 and row(page, FIRST)["Status"] == "done"


def test_a_run_s_exports_are_listed_newest_first_and_a_moved_one_says_so(page, qtbot, home, tmp_path, monkeypatch):
    from PySide6.QtGui import QDesktopServices

    kept, moved = tmp_path / "pirate-gguf", tmp_path / "pirate-adapter"
    kept.mkdir()
    with history.History(home / "history.sqlite") as db:
        db.add_export(FIRST, "adapter", str(moved), 20_000_000)  # since moved away by the person
        db.add_export(FIRST, "gguf", str(kept), 105_000_000, "q4_k_m")
    page.select([FIRST])
    qtbot.waitUntil(lambda: page.detail_view is not None and page.detail_view.run_id == FIRST, timeout=10000)
    view = page.detail_view
    table = view.exports_table
    assert view.tabs.tabText(3) == "Exports (2)"
    rows = [[table.topLevelItem(i).text(c) for c in range(3)] for i in range(table.topLevelItemCount())]
    assert rows == [["gguf (q4_k_m)", "105 MB", str(kept)], ["adapter", "20 MB", f"{moved}  (no longer there)"]]
    assert table.topLevelItem(0).isDisabled() is False and table.topLevelItem(1).isDisabled()
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()))
    table.itemDoubleClicked.emit(table.topLevelItem(0), 2)
    table.itemDoubleClicked.emit(table.topLevelItem(1), 2)  # gone: nothing to open
    assert opened == [str(kept)]
    with history.History(home / "history.sqlite") as db:  # one made on the Try and export tab joins the list
        db.add_export(FIRST, "safetensors", str(kept), 270_000_000)
    view.export_page.exported_to.emit(str(kept))
    assert view.tabs.tabText(3) == "Exports (3)" and table.topLevelItem(0).text(0) == "safetensors"
    page.select([SECOND])
    qtbot.waitUntil(lambda: page.detail_view.run_id == SECOND, timeout=10000)
    assert page.detail_view.tabs.tabText(3) == "Exports" and page.detail_view.exports_table.topLevelItemCount() == 0
