"""The export page's "Try it" box asks the base and the tuned model the same prompt, each in its own pane and
conversation; its "Measure it" box compares both on a held-out file."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import answerers
from app import operations as ops
from core.planner import Wishes
from tests.conftest import DEMO
from ui import tasks
from ui.pages.base import Session
from ui.pages.export_page import ExportPage


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    """A real two-step run of the tiny model, made and trained through the app, as the train page does; in a home
    of its own, which the module's tests share (they ask and measure, and add no runs)."""
    home = tmp_path_factory.mktemp("side-by-side-home")
    (home / "models").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TUNEFORGE_HOME", str(home))
        cfg = ops.create_run(ops.make_plan(str(tiny_model_dir), str(DEMO), Wishes(max_steps=2)))
        outcome = ops.start_run(cfg.run_id).wait(120)
    assert outcome is not None and outcome.status == "done", outcome
    return cfg.run_id, outcome, home


@pytest.fixture
def export_page(qtbot, finished_run, home, monkeypatch):
    run_id, outcome, run_home = finished_run
    monkeypatch.setenv("TUNEFORGE_HOME", str(run_home))  # (after `home`'s own)
    page = ExportPage(Session(run_id=run_id, outcome=outcome))
    qtbot.addWidget(page)
    page.initializePage()
    page.resize(900, 700)
    page.show()
    yield page
    page.shutdown()
    assert tasks.wait_idle(60000), "background work still running 60 s after the test"


def ask_and_wait(qtbot, page, prompt: str) -> None:
    page.prompt_edit.setText(prompt)
    page.ask_button.click()
    assert page.busy("ask") and page.busy("ask-base") and not page.ask_button.isEnabled()
    assert not page.new_button.isEnabled()  # no new conversation while one is being answered
    qtbot.waitUntil(page.ask_button.isEnabled, timeout=60000)
    assert page.new_button.isEnabled()


def test_each_model_answers_in_its_own_pane_and_conversation_with_its_own_errors(qtbot, export_page):
    page = export_page
    assert page.answer is page.tuned_pane.text  # the tuned pane is the answer the wizard test waits for
    assert page.weights.isHidden() and page.weights.value() == "auto"  # its last step is all it kept
    ask_and_wait(qtbot, page, "Where is the gold?")
    greedy = page.conversations["ask-base"].turns[1]["content"]
    assert not page.base_pane.error.message and not page.tuned_pane.error.message
    assert page.base_pane.status.isHidden() and page.tuned_pane.status.isHidden()
    assert answerers.kept() == 2  # both stay loaded for the next question
    ask_and_wait(qtbot, page, "And the ship?")
    for name, pane in (("ask", page.tuned_pane), ("ask-base", page.base_pane)):
        turns = page.conversations[name].turns
        assert [t["content"] for t in turns[::2]] == ["Where is the gold?", "And the ship?"]
        shown = pane.text.toPlainText()
        assert shown.startswith("You: Where is the gold?\n") and "\n\nYou: And the ship?\n" in shown

    result = Path(ops.get_run(page.session.run_id)["run_dir"]) / "result"
    result.rename(result.with_name("result-moved"))  # the tuned model is gone; the base still answers
    tuned_before = page.tuned_pane.text.toPlainText()
    ask_and_wait(qtbot, page, "Who is the captain?")
    assert "no saved result yet" in page.tuned_pane.error.message
    assert page.tuned_pane.text.toPlainText() == tuned_before and len(page.conversations["ask"].turns) == 4
    assert "You: Who is the captain?" in page.base_pane.text.toPlainText() and not page.base_pane.error.message
    assert len(page.conversations["ask-base"].turns) == 6
    result.with_name("result-moved").rename(result)  # put back: the module's other tests use the run

    page.new_button.click()
    assert not page.tuned_pane.text.toPlainText() and not page.base_pane.text.toPlainText()
    assert not page.tuned_pane.error.message
    assert page.conversations["ask"].turns == [] == page.conversations["ask-base"].turns
    page.temperature.setValue(1.0)  # sampled among the likeliest tokens: not the greedy answer of the same question
    ask_and_wait(qtbot, page, "Where is the gold?")
    assert page.conversations["ask-base"].turns[1]["content"] != greedy
    assert page.longest.text() == "auto"
    page.longest.setValue(3)  # the longest answer: three tokens at most, for both models
    ask_and_wait(qtbot, page, "Where is the gold?")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ops.get_run(page.session.run_id)["model_path"])
    length = [len(tok(page.conversations[name].turns[i]["content"], add_special_tokens=False)["input_ids"])
              for name in ("ask", "ask-base") for i in (1, -1)]  # auto, then three tokens (decoded and re-encoded)
    assert length[0] > 6 and length[2] > 6 and 0 < length[1] <= 6 and 0 < length[3] <= 6, length
    page.shutdown()
    assert tasks.wait_idle(60000) and answerers.kept() == 0  # closing the page lets them go


def test_measure_it_compares_both_models_on_a_held_out_file(qtbot, export_page, tmp_path):
    from tests.conftest import HELDOUT

    box = export_page.evaluate_box
    assert box.run_id == export_page.session.run_id and box.summary.isHidden() and box.answers.isHidden()
    box.file_edit.setText(str(tmp_path / "missing.jsonl"))
    box.measure_button.click()
    qtbot.waitUntil(lambda: bool(box.error.message), timeout=30000)
    assert "missing.jsonl: no such file" in box.error.message and box.measure_button.isEnabled()

    box.file_edit.setText(str(HELDOUT))
    box.measure_button.click()
    assert not box.measure_button.isEnabled() and box.status.isVisible() and not box.error.message
    qtbot.waitUntil(box.measure_button.isEnabled, timeout=120000)
    assert box.summary.isVisible() and box.summary.text().startswith(f"{HELDOUT}: 12 rows, "), box.error.message
    shown = box.answers.toPlainText()
    assert shown.count("\nAsked: ") == 3 and shown.startswith(f"{HELDOUT.name}:1\nAsked: ")
    assert "\nExpected: Arr, matey!" in shown and "\nBase: " in shown and "\nTuned: " in shown

    again = ExportPage(Session(run_id=export_page.session.run_id, outcome=export_page.session.outcome))
    qtbot.addWidget(again)
    again.initializePage()  # the run opened later: its latest measurement is shown, from the history
    kept = again.evaluate_box
    assert kept.summary.text().startswith("Measured ") and kept.summary.text().endswith(box.summary.text())
    assert kept.answers.toPlainText() == shown and kept.file_edit.text() == str(HELDOUT)
    again.shutdown()


def test_measure_it_offers_the_runs_own_test_split(qtbot, home, tiny_model_dir, tmp_path):
    """Runs recorded, not trained: the offer needs only the run's data."""
    import shutil

    from tests.conftest import HELDOUT
    from ui.pages.evaluate_box import EvaluateBox

    folder = tmp_path / "qa"
    folder.mkdir()
    shutil.copy(DEMO, folder / "train.jsonl")
    shutil.copy(HELDOUT, folder / "test.jsonl")
    with_test, plain = (ops.create_run(ops.make_plan(str(tiny_model_dir), str(data), Wishes(max_steps=2))).run_id
                        for data in (folder, DEMO))
    box = EvaluateBox()
    qtbot.addWidget(box)
    box.show_run(with_test)
    assert box.file_edit.text() == f"{folder}:test"
    box.show_run(plain)  # what the box offered follows the run...
    assert box.file_edit.text() == ""
    box.file_edit.setText(str(HELDOUT))
    box.show_run(with_test)  # ...what the person wrote stays
    assert box.file_edit.text() == str(HELDOUT)


def test_a_run_whose_data_offered_tools_offers_them_to_both_models(qtbot, tiny_model_dir, home, tmp_path):
    """Try it asks both models with the tools the run's data offered (as training wrote them), and says so."""
    import json

    from tests.conftest import REPO, write_jsonl

    demo = (REPO / "resources" / "demo" / "pirate_tools.jsonl").read_text(encoding="utf-8").splitlines()[:12]
    data = write_jsonl(tmp_path / "tools.jsonl", [json.loads(line) for line in demo])
    cfg = ops.create_run(ops.make_plan(str(tiny_model_dir), str(data), Wishes(max_steps=1)))
    assert [t["function"]["name"] for t in cfg.tools] == ["add", "capital"]
    page = ExportPage(Session(run_id=cfg.run_id, outcome=None))
    qtbot.addWidget(page)
    page.initializePage()
    assert not page.tools_note.isHidden() and "(add, capital)" in page.tools_note.text()
    assert all(c.tools == cfg.tools for c in page.conversations.values())
    page.shutdown()
