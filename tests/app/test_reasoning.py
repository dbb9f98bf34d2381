"""Reasoning data through the command line: `data inspect` counts the answers with reasoning and says how the
model's text holds it, the preview shows it trained with its answer, and a run says the same in its log."""

import json

from tests.conftest import REPO, write_jsonl

REASONING_DEMO = REPO / "resources" / "demo" / "pirate_reasoning.jsonl"


def test_inspect_says_how_the_reasoning_is_written(cli_here, tiny_model_dir):
    report = json.loads(cli_here("data", "inspect", REASONING_DEMO, "--model", tiny_model_dir, "--json",
                                 check=0).stdout)
    assert (report["format"], report["rows"], report["problems"], report["reasoning_rows"]) == (
        "messages", 202, 0, 202)
    assert [w for w in report["warnings"] if "reasoning" in w] == [
        "202 conversations have answers with reasoning: the model's chat template has no place for it, so it is "
        "written before each answer as <think>...</think>, trains with the answer, and the tuned model will think "
        "that way"]
    first = report["preview_rows"][0]["text"]  # «...» marks the trained text: the thinking, then the answer
    assert "«<think>\n36 plus 7 is 43. A pirate says it with 'Arr, matey!' first and 'Yo ho ho!' last.\n</think>" \
           "\n\nArr, matey! 36 plus 7 be 43" in first
    plain = cli_here("data", "inspect", REASONING_DEMO, check=0).stdout  # without a model: counted
    assert "Reasoning: 202 conversations with answers that carry their reasoning; give --model to see how that " \
           "model's text holds it" in plain


def test_a_bad_reasoning_is_a_located_bad_row(cli_here, tmp_path):
    said = {"role": "assistant", "content": "Hello"}
    data = write_jsonl(tmp_path / "r.jsonl", [{"messages": [{"role": "user", "content": "Hi"}, dict(said, reasoning={
        "steps": 2})]}, {"messages": [{"role": "user", "content": "Hi"}, said]}])
    out = cli_here("data", "inspect", data, check=0).stdout
    assert "1 usable row, format messages, 1 problem" in out
    assert "  r.jsonl:1: message 2 (assistant) has reasoning that is not text" in out.splitlines()


def test_a_run_on_reasoning_data_is_given_room_to_think(home, tiny_model_dir):
    """Its data's answers carried reasoning, so the tuned model thinks before it answers: trying it (chat, Try it,
    a paused run) and evaluate's answers allow that many more tokens by default."""
    from app import operations as ops
    from core import inference
    from core.planner import Wishes
    from tests.conftest import DEMO

    thinking = ops.create_run(ops.make_plan(str(tiny_model_dir), str(REASONING_DEMO), Wishes(max_steps=1)))
    plain = ops.create_run(ops.make_plan(str(tiny_model_dir), str(DEMO), Wishes(max_steps=1)))
    assert thinking.thinks and not plain.thinks
    assert ops.get_run(thinking.run_id)["config"]["thinks"] is True  # kept with the run, read when it is tried
    assert (inference.room(False), inference.room(True)) == (128, 128 + inference.THINKING_TOKENS)
