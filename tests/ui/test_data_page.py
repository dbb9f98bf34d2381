"""The data page's corrections: read the file as a chosen schema with named columns, skip or stop at bad rows,
and the planned sequence length drawn over the token lengths on the plan page. Real files, real app functions."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel

from app import operations as ops
from tests.conftest import DEMO

LONG = "Und dann segelte das Schiff weiter. " * 80  # longer than the tiny model's 256-token context


def open_data_page(make_wizard, advance, qtbot, model, data):
    wizard = make_wizard(model=str(model), data=str(data))
    page = advance(wizard)
    assert page is wizard.data_page
    return wizard, page


def choose(combo, text):
    index = combo.findText(text)
    assert index >= 0, f"{text!r} is not offered: {[combo.itemText(i) for i in range(combo.count())]}"
    combo.setCurrentIndex(index)


def test_detected_columns_then_a_mapping_for_odd_ones_reaches_the_plan(make_wizard, advance, qtbot, tmp_path,
                                                                       tiny_model_dir):
    known = tmp_path / "qa.csv"
    known.write_text("question,answer\nWhat is 2+2?,4\nThe capital of France?,Paris\n", encoding="utf-8")
    repeated = tmp_path / "qa-twice.csv"
    repeated.write_text("question,answer\nWhat is 2+2?,4\nWhat is 2+2?,4\n", encoding="utf-8")
    odd = tmp_path / "fragen.csv"
    odd.write_text(f"frage,antwort\nWas ist 2+2?,4\nErzähl eine lange Geschichte.,{LONG}\n", encoding="utf-8")
    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, known)
    choices = page.choices
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert page.format_label.text().startswith("prompt_completion")
    assert page.rows_label.text() == "2 usable" and page.rows_label.toolTip() == ""  # nothing repeated
    assert choices.schema.currentText() == "Detected: prompt_completion" and choices.columns_row.isHidden()

    page.set_path(str(repeated))
    qtbot.waitUntil(lambda: page.rows_label.text() == "2 usable, 1 duplicated", timeout=10000)
    assert "a held-out row's copies leave training with it" in page.rows_label.toolTip()
    page.set_path(str(odd))
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=10000)
    assert "fragen.csv:row 2: no known schema" in page.error.message and not page.isComplete()
    prompt, completion = choices.fields["prompt_completion"].values()
    qtbot.waitUntil(lambda: prompt.count() == 2, timeout=10000)  # the columns, read although detection failed

    choose(choices.schema, "messages")
    assert choices.columns_row.isVisible() and choices.apply_button.isEnabled()
    qtbot.mouseClick(choices.apply_button, Qt.LeftButton)  # a cell of text is no list of turns: a sentence
    qtbot.waitUntil(lambda: "no usable rows" in page.error.message, timeout=10000)
    assert page.error.details_button.isHidden() and not page.isComplete()

    choose(choices.schema, "prompt_completion")
    choose(completion, "frage")
    choose(prompt, "antwort")  # the wrong way round first, then as a person corrects it
    choose(prompt, "frage")
    choose(completion, "antwort")
    qtbot.mouseClick(choices.apply_button, Qt.LeftButton)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert wizard.session.data_mapping == {"prompt": "frage", "completion": "antwort"}
    assert page.rows_label.text() == "2 usable" and not page.error.message
    assert "set by the column mapping (prompt <- frage, completion <- antwort)" in page.format_label.text()
    assert "1 longer than the model's context (256)" in page.tokens_label.text()
    assert page.histogram.cutoff == 256 and sum(page.histogram.counts) == 2

    plan_page = advance(wizard)
    qtbot.waitUntil(plan_page.isComplete, timeout=20000)
    bundle = wizard.session.bundle
    assert (bundle.mapping, bundle.on_bad, bundle.data["rows"]) == ({"prompt": "frage", "completion": "antwort"},
                                                                     "skip", 2)
    assert plan_page.histogram.cutoff == bundle.plan.seq_len == 256
    assert sum(plan_page.histogram.counts) == 2
    assert plan_page.cut_caption.text().startswith("1 row longer than the planned sequence length (256 tokens) is cut")
    cfg = ops.create_run(bundle)  # what the train page starts the trainer from
    assert cfg.data_mapping == {"prompt": "frage", "completion": "antwort"} and cfg.bad_rows == "skip"

    wizard.back()
    choices.schema.setCurrentIndex(0)  # "Detected" goes back to detection at once, no Apply needed
    qtbot.waitUntil(lambda: "no known schema" in page.error.message, timeout=10000)
    assert wizard.session.data_mapping is None and choices.columns_row.isHidden()


def test_bad_rows_are_skipped_and_listed_or_stop_with_the_line(make_wizard, advance, qtbot, tmp_path,
                                                                tiny_model_dir):
    broken = tmp_path / "pairs.jsonl"
    broken.write_text('{"prompt": "Hi", "completion": "Ahoy"}\n{"prompt": "Bye", "completion": \n'
                      '{"prompt": "Name?", "completion": "Long John"}\n', encoding="utf-8")
    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, broken)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert page.rows_label.text() == "2 usable"
    assert page.problems_label.text().startswith("1 rows skipped:\npairs.jsonl:2: broken JSON")
    assert page.choices.bad_rows.currentText() == "Skip bad rows (they are listed)"

    choose(page.choices.bad_rows, "Stop at the first bad row")
    qtbot.waitUntil(lambda: bool(page.error.message), timeout=10000)
    assert wizard.session.bad_rows == "stop"
    assert page.error.message.startswith("pairs.jsonl:2: broken JSON") and "skip bad rows" in page.error.message
    assert page.error.details_button.isHidden() and not page.isComplete()

    choose(page.choices.bad_rows, "Skip bad rows (they are listed)")
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert not page.error.message and wizard.session.bad_rows == "skip"


def test_the_choices_have_labels_and_a_tab_order(make_wizard, advance, qtbot, tmp_path, tiny_model_dir):
    data = tmp_path / "qa.csv"
    data.write_text("question,answer\nWhat is 2+2?,4\n", encoding="utf-8")
    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, data)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    choices = page.choices
    buddies = {(label.text(), label.buddy()) for label in choices.findChildren(QLabel) if label.buddy()}
    assert {("&Read as:", choices.schema), ("Bad ro&ws:", choices.bad_rows)} <= buddies
    assert {(field, combo) for fields in choices.fields.values() for field, combo in fields.items()} <= buddies
    choose(choices.schema, "prompt_completion")

    wizard.activateWindow()
    page.demo_button.setFocus()
    order = []
    for _ in range(5):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Tab)
        order.append(QApplication.focusWidget())
    fields = choices.fields["prompt_completion"]
    assert order == [choices.schema, fields["prompt"], fields["completion"], choices.apply_button,
                     choices.bad_rows]


def test_a_cached_hub_dataset_is_offered_by_split_and_read(make_wizard, advance, qtbot, tmp_path, monkeypatch,
                                                           tiny_model_dir):
    from tests.core.data.test_hub_datasets import cached

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    cached(tmp_path / "hub", "acme/pirates", {"data/train-00000-of-00001.parquet": 9,
                                              "data/test-00000-of-00001.parquet": 4})
    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, DEMO)
    hub = page.hub_choice
    qtbot.waitUntil(lambda: hub.count() > 1, timeout=10000)  # the cache is read in the background
    assert not hub.isHidden() and [hub.itemText(i) for i in range(1, hub.count())] == ["acme/pirates:train",
                                                                                       "acme/pirates:test"]
    hub.activated.emit(2)
    qtbot.waitUntil(lambda: (page.session.data_report or {}).get("path") == "acme/pirates:test", timeout=20000)
    assert page.rows_label.text() == "4 usable" and page.session.data_path == "acme/pirates:test"
    assert page.drop_zone.title.text() == "acme/pirates:test" and "Hugging Face cache" in page.drop_zone.hint.text()


def test_validation_on_another_file_reaches_the_plan(make_wizard, advance, qtbot, tiny_model_dir):
    from tests.conftest import DEMO, HELDOUT

    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, DEMO)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert page.validation.currentText() == "Auto (held out of the data)"
    page.set_eval_data(str(HELDOUT))
    assert page.validation.currentText() == str(HELDOUT) and page.session.eval_data == str(HELDOUT)
    plan_page = advance(wizard)
    qtbot.waitUntil(lambda: plan_page.session.bundle is not None, timeout=20000)
    assert plan_page.session.bundle.eval_data == str(HELDOUT.resolve())
    assert f"Validation on {HELDOUT} (12 rows), so every training row trains." in plan_page.reasons.text()
    assert "202 training rows" in plan_page.reasons.text()  # none of the demo's rows held out


def test_rated_answers_are_counted_and_planned_for_kto(make_wizard, advance, qtbot, tmp_path, tiny_model_dir):
    rated = tmp_path / "thumbs.jsonl"
    rated.write_text("".join(json.dumps({"prompt": f"{i} plus {i}?", "completion": str(2 * i), "label": i % 3 > 0})
                             + "\n" for i in range(12)), encoding="utf-8")
    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, rated)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert page.format_label.text().startswith("rated")
    assert page.rows_label.text() == "12 usable (8 rated good, 4 rated bad)"
    plan_page = advance(wizard)
    qtbot.waitUntil(plan_page.isComplete, timeout=20000)
    plan = wizard.session.bundle.plan
    assert plan.objective == "kto" and "preference tuning (KTO)" in plan_page.labels["strategy"].text()
    assert "The 8 answers rated good and 4 rated bad weigh the same in all (each bad one ×2.00)." in plan.reasons[0]
    assert plan_page.labels["batch"].text().startswith(f"{plan.micro_batch} answer")


def test_scored_answers_show_their_line_which_moves_the_ratings_and_the_plan(make_wizard, advance, qtbot, tmp_path,
                                                                              tiny_model_dir):
    scored = tmp_path / "stars.jsonl"
    scored.write_text("".join(json.dumps({"prompt": f"{i} plus {i}?", "completion": str(2 * i), "score": i % 5 + 1})
                              + "\n" for i in range(10)), encoding="utf-8")
    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, scored)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert page.rows_label.text() == "10 usable (4 rated good, 6 rated bad)" and page.line.isVisible()
    assert page.line.value() == 3 and page.line_note.text() == (
        "Scores from 1 to 5: above 3 good, the rest bad (the middle of the scores)")
    page.line.setValue(1.5)  # as typed and confirmed, or stepped with the arrows
    qtbot.waitUntil(lambda: page.isComplete() and page.rows_label.text().startswith("10 usable (8 rated good"),
                    timeout=20000)
    assert wizard.session.good_above == 1.5 and "(the line given)" in page.line_note.text()
    plan_page = advance(wizard)
    qtbot.waitUntil(plan_page.isComplete, timeout=20000)
    assert wizard.session.bundle.plan.reasons[0].endswith(
        "Rated by their scores from 1 to 5: above 1.5 good, the rest bad (the line given).")
    wizard.back()
    page.set_path(str(tmp_path / "stars.jsonl"))  # read afresh: its own middle again
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert wizard.session.good_above is None and page.line.value() == 3
    page.set_path(str(DEMO))  # no scores: no line
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert not page.line.isVisible()


def test_the_preview_marks_what_the_plan_pages_learns_from_asks(make_wizard, advance, qtbot, tmp_path,
                                                                tiny_model_dir):
    """Back from the plan page with "Learns from: The last answer", the preview marks that answer alone."""
    talk = [{"role": "user", "content": "Where is the ship?"}, {"role": "assistant", "content": "Arr, in the bay."},
            {"role": "user", "content": "And the gold?"}, {"role": "assistant", "content": "Arr, buried deep."}]
    data = tmp_path / "talks.jsonl"
    data.write_text(json.dumps({"messages": talk}) + "\n" + json.dumps({"messages": talk[:2]}) + "\n",
                    encoding="utf-8")

    def trained(text: str) -> bool:
        segments = wizard.session.data_report["preview_rows"][0]["segments"]
        return next(s["trained"] for s in segments if text in s["text"])

    wizard, page = open_data_page(make_wizard, advance, qtbot, tiny_model_dir, data)
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert trained("in the bay") and trained("buried deep") and not trained("Where is the ship?")
    plan_page = advance(wizard)
    qtbot.waitUntil(plan_page.isComplete, timeout=20000)
    adv = plan_page.advanced
    adv.train_on.setCurrentIndex(adv.train_on.findData("last"))
    qtbot.waitUntil(lambda: plan_page.isComplete() and wizard.session.bundle.plan.train_on == "last", timeout=20000)
    wizard.back()
    qtbot.waitUntil(page.isComplete, timeout=20000)
    assert not trained("in the bay") and trained("buried deep")
    assert "in the bay" in page.preview.toPlainText()  # shown, not marked
