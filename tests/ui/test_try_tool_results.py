"""A model tried in the app that calls a tool asks for the call's result, and goes on from it: in the export page's
Try it (each side on its own) and in a paused run's box (the trainer answers). The model is the tiny one that learned
"What is 36 plus 7?" → add(a=36, b=7) → 43 → "It is 43." by heart (tests/tool_model.py)."""

from __future__ import annotations

from transformers import AutoTokenizer

from app import operations as ops
from core.planner import Wishes
from tests.conftest import DEMO, write_jsonl
from tests.tool_model import TOOLS, row
from ui import tasks
from ui.pages.base import Session
from ui.pages.export_page import ExportPage
from ui.pages.paused_try import PausedTry


def give(qtbot, pane, result: str) -> None:
    qtbot.waitUntil(lambda: not pane.result_row.isHidden(), timeout=60000)
    pane.result_edit.setText(result)
    pane.result_button.click()


def test_try_it_asks_for_the_result_of_a_call_and_the_model_answers_with_it(qtbot, home, tool_model_dir, tmp_path):
    """The run starts from the memorized model, so its base side makes the call; the run never trained, so its
    tuned side says it has no result, on its own side only."""
    r = row(36, 7)
    data = write_jsonl(tmp_path / "tools.jsonl", [{"messages": r.messages, "tools": r.tools}] * 8)
    cfg = ops.create_run(ops.make_plan(str(tool_model_dir), str(data), Wishes(max_steps=1)))
    page = ExportPage(Session(run_id=cfg.run_id, outcome=None))
    qtbot.addWidget(page)
    page.initializePage()
    page.show()
    try:
        assert "give what the tool would return" in page.tools_note.text()
        page.prompt_edit.setText("What is 36 plus 7?")
        page.ask_button.click()
        qtbot.waitUntil(page.ask_button.isEnabled, timeout=60000)
        base = page.base_pane
        assert base.text.toPlainText().startswith("You: What is 36 plus 7?\n<tool_call>")
        assert not base.result_row.isHidden() and "add(a=36, b=7)" in base.call_label.text()
        assert page.tuned_pane.result_row.isHidden() and "no saved result" in page.tuned_pane.error.text.text()
        give(qtbot, base, "43")
        assert not page.ask_button.isEnabled()  # the base model goes on from the result
        qtbot.waitUntil(page.ask_button.isEnabled, timeout=60000)
        assert base.text.toPlainText().endswith("\nadd(a=36, b=7) returned: 43\nIt is 43.")
        assert base.result_row.isHidden() and [t["role"] for t in page.conversations["ask-base"].turns] == [
            "user", "assistant", "tool", "assistant"]
    finally:
        page.shutdown()
        assert tasks.wait_idle(60000)


def test_a_paused_run_asks_for_the_result_of_a_call_and_goes_on(qtbot, home, tool_model_dir):
    cfg = ops.create_run(ops.make_plan(str(tool_model_dir), str(DEMO), Wishes(max_steps=2000)), tools=TOOLS)
    job = ops.start_run(cfg.run_id)
    box = PausedTry()
    qtbot.addWidget(box)
    seen = []

    def answers() -> int:  # what the train page does with the trainer's answer events
        for e in job.events[len(seen):]:
            seen.append(e)
            if e["event"] == "answer":
                box.answered(e)
        return sum(e["event"] == "answer" for e in seen)

    try:
        qtbot.waitUntil(lambda: any(e["event"] == "step" for e in job.events), timeout=60000)
        job.pause()
        qtbot.waitUntil(lambda: any(e["event"] == "paused" for e in job.events), timeout=60000)
        paused = next(e for e in job.events if e["event"] == "paused")
        box.open_for(job, paused["tools"])
        box.prompt_edit.setText("What is 36 plus 7?")
        box.ask_button.click()
        qtbot.waitUntil(lambda: answers() == 1, timeout=60000)
        assert [c["function"]["name"] for c in box.conversation.pending()] == ["add"]
        give(qtbot, box.pane, "43")
        assert box.waiting and not box.ask_button.isEnabled()  # asked to go on, with the call and its result
        qtbot.waitUntil(lambda: answers() == 2, timeout=60000)
        assert box.pane.text.toPlainText().endswith("returned: 43\nIt is 43.")
        assert [t["role"] for t in box.conversation.turns] == ["user", "assistant", "tool", "assistant"]
        # The Longest box goes with the ask: 2 tokens cut the call the model makes in full above.
        box.new_conversation()
        box.longest.setValue(2)
        box.prompt_edit.setText("What is 36 plus 7?")
        box.ask_button.click()
        qtbot.waitUntil(lambda: answers() == 3, timeout=60000)
        full, cut = [e["text"] for e in seen if e["event"] == "answer"][0::2]
        tok = AutoTokenizer.from_pretrained(tool_model_dir)
        assert len(tok(cut, add_special_tokens=False)["input_ids"]) <= 2 < len(tok(full)["input_ids"])
        assert full.startswith(cut.strip())
    finally:
        job.stop()
        job.wait(60)
