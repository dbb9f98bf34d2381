"""Function-calling data through the command line: `data inspect` says how the model's text holds the calls, a run
trains on them and says the same, and `chat --tools` asks with the functions written as training wrote them."""

import json

import pytest

from app import operations as ops
from core import inference
from core.data import reasoning, tool_render
from tests.conftest import REPO, json_lines, write_jsonl

TOOLS_DEMO = REPO / "resources" / "demo" / "pirate_tools.jsonl"


def test_inspect_says_how_the_calls_are_written(cli_here, tiny_model_dir):
    report = json.loads(cli_here("data", "inspect", TOOLS_DEMO, "--model", tiny_model_dir, "--json", check=0).stdout)
    assert (report["format"], report["rows"], report["problems"]) == ("messages", 202, 0)
    first_tools = json.loads(TOOLS_DEMO.read_text(encoding="utf-8").splitlines()[0])["tools"]
    assert report["tool_use"] == {"rows": 202, "calls": 146, "tools": first_tools}  # sums and capitals call one
    assert [w for w in report["warnings"] if "use tools" in w] == [
        "202 conversations use tools (146 calls): the model's chat template has no way to write tool calls, so they "
        "are written as text (the tools listed in the system turn, each call as <tool_call>{JSON}</tool_call> in the "
        "answer, results as <tool_response> turns), and the tuned model will call tools that way"]
    plain = cli_here("data", "inspect", TOOLS_DEMO, check=0).stdout  # without a model: counted, and how to see more
    assert "Tools: 202 conversations use tools (146 calls); give --model to see how that model's text holds them" \
        in plain
    first = report["preview_rows"][0]["text"]
    assert '«<tool_call>\n{"name": "add", "arguments": {"a": 36, "b": 7}}\n</tool_call><|im_end|>\n»' in first
    assert "<tool_response>\n43\n</tool_response>" in first and "«43" not in first  # the result is read, not trained


def test_a_run_trains_on_tool_calls_and_says_how(cli_here, tiny_model_dir, tmp_path):
    rows = [json.loads(line) for line in TOOLS_DEMO.read_text(encoding="utf-8").splitlines()[:24]]
    thinking = REPO / "resources" / "demo" / "pirate_reasoning.jsonl"  # and some answers with reasoning (one run)
    data = write_jsonl(tmp_path / "tools.jsonl", rows + [json.loads(line) for line in thinking.read_text(
        encoding="utf-8").splitlines()[100:106]])
    events = json_lines(cli_here("train", "--model", tiny_model_dir, "--data", data, "--max-steps", "2",
                                 "--device", "cpu", "--json", check=0).stdout)
    said = [e["text"] for e in events if e["event"] == "status"]
    assert any(t.startswith("24 conversations use tools (") and "written as text" in t for t in said)
    assert any(t.startswith("6 conversations have answers with reasoning: ") and "<think>" in t for t in said)
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses)
    # Trying the run offers the tools its data offered (its first row's), unless told otherwise.
    assert ops.run_tools("last") == rows[0]["tools"]
    offered = cli_here("chat", "--run", "last", "--prompt", "What is 2 plus 3?", "--max-new-tokens", "2", check=0)
    assert "Offering the tools the run's data offered: add, capital (--tools none offers none)" in offered.stderr
    plain = cli_here("chat", "--run", "last", "--tools", "none", "--prompt", "Hi", "--max-new-tokens", "2", check=0)
    assert "Offering" not in plain.stderr
    # Its exports' chat template writes tools as the run trained on them (the default template has no tool format).
    from transformers import AutoTokenizer

    cli_here("export", "--run", "last", "--format", "safetensors", "--out", tmp_path / "merged", check=0)
    merged = AutoTokenizer.from_pretrained(tmp_path / "merged")
    assert tool_render.native(merged) and tool_render.with_tool_text("") in merged.chat_template
    assert reasoning.native(merged) == (True, True)  # its reasoning rows' thinking too, in front of the answers
    said = cli_here("export", "--run", "last", "--format", "gguf", "--quant", "f16", "--out", tmp_path / "gguf",
                    check=0).stdout
    assert "Ollama offers the model tools as it learned them" in said and "--chat-template-file" in said
    report = json.loads((tmp_path / "gguf" / "export.json").read_text(encoding="utf-8"))
    assert report["tool_calls"].startswith("The chat template now also writes tools") and report["learned_tools"]
    assert report["reasoning"].startswith("The chat template now also writes an answer's reasoning")
    # and Ollama offers them too: the Modelfile's template writes them as training did (tests/core/gguf_export/
    # test_modelfile_tools.py proves the text), and the CLI says so.
    assert report["ollama"].startswith("Ollama offers the model tools as it learned them")
    assert "Ollama knows the model thinks first" in report["ollama"]  # some of its rows carried reasoning
    modelfile = (tmp_path / "gguf" / "Modelfile").read_text(encoding="utf-8")
    assert "{{ json .Function }}" in modelfile and "{{ if .ToolCalls }}<tool_call>" in modelfile
    assert "{{ if $thought }}<think>\n{{ .Thinking }}\n</think>{{ end }}" in modelfile
    import gguf

    reader = gguf.GGUFReader(next((tmp_path / "gguf").glob("*.f16.gguf")))
    field = reader.fields["tokenizer.chat_template"]
    assert bytes(field.parts[field.data[0]]).decode() == merged.chat_template
    # The LoRA file on a base GGUF would chat through the base's own template: the export's comes beside it.
    assert report["lora"]["written"] and report["lora"]["chat_template"] == "chat_template.jinja"
    assert (tmp_path / "gguf" / "chat_template.jinja").read_text(encoding="utf-8") == merged.chat_template


@pytest.mark.parametrize("content,said", [
    ("[{\"name\": ", "tools.json:1: not JSON (Expecting value); give a list of tools, as a dataset row's 'tools' "
                     "holds them."),
    ("[{\"description\": \"no name\"}]", "tools.json: tool 1 of 'tools' has no function name; write each as "
                                         '{"name": ..., "description": ..., "parameters": {...}}.'),
    ("[]", "tools.json: no tools in it; give a list of functions, each with a name, a description and parameters."),
])
def test_chat_tools_that_are_not_tools_are_one_sentence(cli_here, tiny_model_dir, tmp_path, content, said):
    (tmp_path / "tools.json").write_text(content, encoding="utf-8")
    proc = cli_here("chat", "--model", tiny_model_dir, "--tools", tmp_path / "tools.json", "--prompt", "hi")
    assert proc.returncode != 0 and proc.stderr.strip().endswith(said) and "Traceback" not in proc.stderr


def test_chat_asks_with_the_tools(cli_here, tiny_model_dir, default_model_dir, tmp_path):
    tools = json.loads(TOOLS_DEMO.read_text(encoding="utf-8").splitlines()[0])["tools"]
    (tmp_path / "tools.json").write_text(json.dumps({"tools": tools}), encoding="utf-8")
    for source in (tmp_path / "tools.json", TOOLS_DEMO):  # a file of tools, or a dataset's first row's
        assert cli_here("chat", "--model", tiny_model_dir, "--tools", source, "--prompt", "What is 2 plus 3?",
                        "--max-new-tokens", "4").returncode == 0
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    asked = inference.prompt_text(tok, "What is 2 plus 3?", tools=tools)
    assert asked.startswith(f"<|im_start|>system\n{tool_render.TOOLS_INTRO}\n<tools>\n" + '{"name": "add"')
    assert asked.endswith("<|im_start|>user\nWhat is 2 plus 3?<|im_end|>\n<|im_start|>assistant\n")
    assert inference.prompt_text(tok, "What is 2 plus 3?") == tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 plus 3?"}], tokenize=False, add_generation_prompt=True)


def test_chat_result_gives_the_call_its_result_and_the_model_answers(cli_here, tool_model_dir, tmp_path):
    """`--result` answers the model's call as the tool would have; the model then answers with it. A result with
    no call to take it, or a call left without one, is said on stderr."""
    from tests.tool_model import TOOLS

    (tmp_path / "tools.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    ask = ("chat", "--model", tool_model_dir, "--tools", tmp_path / "tools.json", "--prompt", "What is 36 plus 7?")
    done = cli_here(*ask, "--result", "43", "--result", "99", check=0)
    call, after = done.stdout.strip().split("\n</tool_call>\n")
    assert json.loads(call.removeprefix("<tool_call>\n")) == {"name": "add", "arguments": {"a": 36, "b": 7}}
    assert after == "It is 43."
    assert done.stderr.splitlines() == ["(the result of add(a=36, b=7) given)",
                                        "(1 --result value not used: the model made no call to take it)"]
    waiting = cli_here(*ask, check=0)
    assert waiting.stdout.strip() == call + "\n</tool_call>"
    assert waiting.stderr.strip() == "(the model called add(a=36, b=7); give what it returns with --result to see " \
                                     "the answer after it)"
    alone = cli_here("chat", "--model", tool_model_dir, "--result", "43")
    assert alone.returncode != 0 and alone.stderr.strip().endswith(
        "--result goes with --prompt; in a conversation, type each result when asked for it.")


def test_a_conversation_reads_the_result_of_a_call_from_the_next_line(cli_here, tool_model_dir, tmp_path,
                                                                       monkeypatch):
    """Piped: the line after a call is its result; an empty one leaves the question and its call out. (The tiny
    model's 256 positions hold one exchange: the first is left out to ask the second, and that is said too.)"""
    import io
    import sys

    from app import answerers
    from tests.tool_model import TOOLS

    (tmp_path / "tools.json").write_text(json.dumps(TOOLS), encoding="utf-8")
    lines = ["What is 36 plus 7?", "43", "What is 36 plus 7?", ""]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    try:
        done = cli_here("chat", "--model", tool_model_dir, "--tools", tmp_path / "tools.json", check=0)
    finally:
        answerers.release()
    answers = done.stdout.split("\n\n")
    assert answers[0].startswith("<tool_call>") and answers[1] == "It is 43." and answers[2].startswith("<tool_call>")
    assert "(no result given: the question and its calls are left out)" in done.stderr.splitlines()


def test_the_tool_use_pairs_demo_reads_as_pairs_with_their_tools(cli_here):
    """Where a tool knows the answer its call is chosen over answering without it; elsewhere the pirate's answer is
    chosen over a needless call."""
    pairs = REPO / "resources" / "demo" / "pirate_tools_pairs.jsonl"
    report = json.loads(cli_here("data", "inspect", pairs, "--json", check=0).stdout)
    assert (report["format"], report["rows"], report["problems"]) == ("preference", 202, 0)
    assert report["tool_use"]["rows"] == 202 and report["tool_use"]["calls"] == 146  # the chosen sides' calls
    from core.data.dataset import load

    first, plain = load(pairs).examples[0], next(e for e in load(pairs).examples if "tool_calls" in e.rejected[-1])
    assert first.messages[-1]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 36, "b": 7}}
    assert first.rejected[-1] == {"role": "assistant", "content": "36 plus 7 is 43."} and first.tools
    assert plain.messages[-1]["content"].startswith("Arr, matey!") and plain.tools == first.tools
