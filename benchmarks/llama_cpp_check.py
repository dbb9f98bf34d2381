"""A GGUF export used by llama.cpp itself: `llama-server --jinja` loads the file, answers with the chat template
the export wrote into it, stops where the model ends its answer, and, for a run that learned to call tools,
offers the tools, finds the model's call in its answer (llama.cpp's own parser for the template's format) and
answers from the result given; for a run whose answers carried their reasoning, the model thinks first (in
place of the plain question, which a briefly tuned thinker may think about at length). With
`--base`, the export's LoRA file on that base GGUF (`--lora`, and the export's chat_template.jinja where it wrote
one) answers too.

Nothing here is ours at run time but the file: the server is a llama.cpp build (its `llama-server` binary, built
from source where no package has one: cmake -B build -DLLAMA_CURL=OFF && cmake --build build --target
llama-server), asked through its OpenAI-compatible endpoint, greedily, so answers repeat.

    python benchmarks/llama_cpp_check.py --server PATH/llama-server --export DIR [--tools FILE] [--base BASE.gguf]
        [--run RUN]

DIR is what `tuneforge export --format gguf --out DIR` wrote. `--tools` (a JSON list, or a dataset whose first
row has `tools`) is offered where the export says the run learned tools (export.json's `learned_tools`); the demo's
by default. With `--run`, the run's own answers (`tuneforge chat`, full precision) are recorded beside llama.cpp's,
and whether they are the same text (not a pass condition: a quantized file may choose otherwise somewhere).
The result goes to benchmarks/results/llama_cpp-<architecture>-<type>[-tools][-thinks].json unless
--out says otherwise; the exit status is 1 when a check fails. It needs no GPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core import atomic  # noqa: E402
from core.data.formats import tool_calls  # noqa: E402

DEMO_TOOLS = REPO / "resources" / "demo" / "pirate_tools.jsonl"
PLAIN = "What is the capital of Peru?"
ASKED, RESULT = "What is 39 plus 18?", "57"  # a held-out question of the tools demo, and what add returns


class Server:
    """llama-server on a free local port, for one GGUF file (and a LoRA file on it)."""

    def __init__(self, binary: Path, gguf: Path, lora: Path | None = None, template: Path | None = None,
                 extra: tuple[str, ...] = ()):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        command = [str(binary), "-m", str(gguf), "--jinja", "--host", "127.0.0.1", "--port", str(self.port),
                   "-c", "4096", "--threads", "2", "--no-webui"]
        self.command = (command + (["--lora", str(lora)] if lora else [])
                        + (["--chat-template-file", str(template)] if template else []) + list(extra))
        # Its log goes to the system's temporary folder, never beside the files it reads; kept where it failed.
        self.log = tempfile.NamedTemporaryFile("w", prefix="llama-server-", suffix=".log", delete=False)
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT)

    def __enter__(self):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"llama-server ended at start (exit {self.process.returncode}); see {self.log.name}.")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"llama-server did not answer in 180 s; see {self.log.name}.")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(30)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)

    def chat(self, messages: list[dict], tools: list[dict] | None = None, max_tokens: int = 96) -> dict:
        body = {"messages": messages, "temperature": 0, "max_tokens": max_tokens, **({"tools": tools} if tools else {})}
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/chat/completions",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as r:
            return json.loads(r.read())["choices"][0]


def check_plain(server: Server) -> dict:
    """A plain question: an answer, ended by the model (not by the token limit)."""
    choice = server.chat([{"role": "user", "content": PLAIN}])
    answer = choice["message"].get("content") or ""
    return {"check": "plain answer", "asked": PLAIN, "answer": answer, "finish_reason": choice["finish_reason"],
            "ok": bool(answer.strip()) and choice["finish_reason"] == "stop"}


def check_tools(server: Server, tools: list[dict]) -> list[dict]:
    """The tools offered: llama.cpp finds the model's call; given the result, the model answers with it."""
    asked = [{"role": "user", "content": ASKED}]
    choice = server.chat(asked, tools)
    calls = choice["message"].get("tool_calls") or []
    first = {"check": "tool call found", "asked": ASKED, "tool_calls": calls,
             "content": choice["message"].get("content"), "finish_reason": choice["finish_reason"],
             "ok": len(calls) == 1 and calls[0]["function"]["name"] == "add"
             and json.loads(calls[0]["function"]["arguments"]) == {"a": 39, "b": 18}}
    if not first["ok"]:
        return [first]
    call = {**calls[0], "id": calls[0].get("id") or "call00001"}
    then = asked + [{"role": "assistant", "content": "", "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": call["id"], "content": RESULT}]
    choice = server.chat(then, tools)
    answer = choice["message"].get("content") or ""
    return [first, {"check": "answer from the result", "result": RESULT, "answer": answer,
                    "finish_reason": choice["finish_reason"], "ok": RESULT in answer and not
                    choice["message"].get("tool_calls")}]


def check_thinking(server: Server) -> dict:
    """A run whose answers carried their reasoning: the model thinks first (llama.cpp gives the thinking apart, as
    reasoning_content, or leaves the <think> block in the answer), then answers."""
    choice = server.chat([{"role": "user", "content": ASKED}], max_tokens=256)
    message = choice["message"]
    thought = message.get("reasoning_content") or ""
    answer = message.get("content") or ""
    inline = answer.lstrip().startswith("<think>") and "</think>" in answer
    return {"check": "thinks first", "asked": ASKED, "reasoning_content": thought, "answer": answer,
            "finish_reason": choice["finish_reason"], "thinking_apart": bool(thought.strip()),
            "ok": (bool(thought.strip()) or inline) and choice["finish_reason"] == "stop"}


def tuneforge_answers(run: str, tools: list[dict] | None, thinks: bool) -> dict[str, str]:
    """What `tuneforge chat --run RUN` answers (transformers, the run's weights in full precision, greedy) to the
    questions of the checks, by check."""
    from app import operations as ops
    from core.conversation import Conversation

    said = {}
    if thinks:
        said["thinks first"] = ops.chat(ASKED, run=run, tools=[], max_new_tokens=256, keep=True)
    else:
        said["plain answer"] = ops.chat(PLAIN, run=run, tools=[], max_new_tokens=96, keep=True)
    if tools:
        conversation = Conversation(None, tools=tools)
        ops.chat(ASKED, run=run, conversation=conversation, max_new_tokens=96, keep=True)
        if conversation.pending():
            conversation.give(RESULT)
            said["answer from the result"] = ops.chat(None, run=run, conversation=conversation, max_new_tokens=96,
                                                      keep=True)
    return said


def as_written(check: dict) -> str:
    """A check's answer as the model wrote it: llama.cpp's thinking put back in front, as <think> text."""
    thought = (check.get("reasoning_content") or "").strip()
    return (f"<think>\n{thought}\n</think>\n\n" if thought else "") + (check.get("answer") or "").strip()


def answers(server: Server, tools: list[dict] | None, thinks: bool) -> list[dict]:
    """The checks for one server: the model thinks first where its data carried reasoning (else a plain answer),
    and the tool loop where it learned tools."""
    return [check_thinking(server) if thinks else check_plain(server)] + (check_tools(server, tools) if tools else [])


def version(binary: Path) -> str:
    done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return " ".join((done.stdout + done.stderr).split())[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", type=Path, required=True, help="The llama-server binary of a llama.cpp build.")
    parser.add_argument("--export", type=Path, required=True, help="A folder `tuneforge export --format gguf` wrote.")
    parser.add_argument("--tools", type=Path, default=DEMO_TOOLS,
                        help="The tools to offer where the run learned tools (a JSON list or a dataset).")
    parser.add_argument("--base", type=Path, help="The base model's GGUF, to check the export's LoRA file on it.")
    parser.add_argument("--run", help="The exported run (in this TUNEFORGE_HOME): its own answers beside llama.cpp's.")
    parser.add_argument("--out", type=Path,
                        help="JSON to write (default benchmarks/results/llama_cpp-<architecture>-<type>-....json).")
    args = parser.parse_args(argv)
    if not args.server.is_file():
        parser.error(f"{args.server}: no such file; give the llama-server binary of a llama.cpp build.")
    report_path = args.export / "export.json"
    if not report_path.is_file():
        parser.error(f"{args.export}: no export.json; give a folder that `tuneforge export --format gguf` wrote.")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    gguf = args.export / report["file"]
    learned_tools = report.get("learned_tools") or "tool_calls" in report  # tool_calls: exports before the key
    tools = tool_calls.read_file(str(args.tools)) if learned_tools else None

    checks = []
    with Server(args.server, gguf) as server:
        checks.extend(answers(server, tools, bool(report.get("thinks"))))
    lora = report.get("lora") or {}
    if args.base and lora.get("file"):
        template = args.export / lora["chat_template"] if lora.get("chat_template") else None
        with Server(args.server, args.base, args.export / lora["file"], template) as server:
            checks.extend({**c, "check": c["check"] + ", the LoRA file on the base GGUF"}
                          for c in answers(server, tools, bool(report.get("thinks"))))

    if args.run:  # the same questions to the run itself: does llama.cpp answer as `tuneforge chat` does?
        ours = tuneforge_answers(args.run, tools, bool(report.get("thinks")))
        for c in checks:
            said = ours.get(c["check"].split(", the LoRA file")[0])
            if said is not None:
                c |= {"tuneforge": said, "same_as_tuneforge": as_written(c) == said.strip()}

    result = {
        "benchmark": "llama_cpp_check", "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "device": {"cpu": platform.processor() or platform.machine(), "platform": platform.platform()},
        "llama_cpp": version(args.server),
        "export": {k: report.get(k) for k in ("run", "file", "quant", "architecture", "weights", "ollama")},
        "tools_offered": [t["function"]["name"] for t in tools or []], "checks": checks,
        "ok": all(c["ok"] for c in checks),
    }
    kind = "-tools" * bool(tools) + "-thinks" * bool(report.get("thinks"))
    name = f"llama_cpp-{report['architecture']}-{report['quant']}{kind}.json"
    out = args.out or REPO / "benchmarks" / "results" / name
    atomic.write_json(out, result)
    for c in checks:
        said = c.get("answer") if "answer" in c else json.dumps(c.get("tool_calls"))
        same = {True: " (as tuneforge chat answers)", False: " (tuneforge chat answers otherwise)"}.get(
            c.get("same_as_tuneforge"), "")
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']}: {said!r}{same}")
    print(f"Wrote {out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
