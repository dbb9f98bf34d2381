"""How the app talks to a running trainer: files in the run's folder, read between steps.

Files, not pipes, because the trainer outlives the window that started it: a window opened later
(the app reattaching to a run it left training in the background) controls it the same way.

- `STOP`: save a checkpoint and exit (a signal does the same, sooner, where there are signals);
- `PAUSE`: wait between steps with the model loaded; remove it to continue;
- `asks/<id>.json`: while paused, a prompt to answer with the model as it is now; the answer comes
  back as an "answer" event with the same id.

The trainer's side is `Control`; the app's side is the functions below it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

from core import atomic
from core.data.formats import tool_calls

STOP, PAUSE, ASKS = "STOP", "PAUSE", "asks"


class Control:
    """The trainer's view: `stop` and `paused` are read between steps; `take_asks` empties the queue."""

    def __init__(self, run_dir: str | Path, signalled: list | None = None):
        self.run_dir = Path(run_dir)
        self.signalled = signalled if signalled is not None else []  # the trainer's signal handlers append here

    @property
    def stop(self) -> bool:
        return bool(self.signalled) or (self.run_dir / STOP).exists()

    @property
    def paused(self) -> bool:
        return (self.run_dir / PAUSE).exists()

    def take_asks(self) -> list[dict]:
        """Prompts waiting for an answer, oldest first; each is removed as it is taken (asked once)."""
        folder = self.run_dir / ASKS
        if not folder.is_dir():
            return []
        asks = []
        for path in sorted(folder.glob("*.json")):
            try:
                ask = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # written atomically, so only a foreign file can be unreadable: leave it
            path.unlink(missing_ok=True)
            if isinstance(ask, dict) and (isinstance(ask.get("prompt"), str) or ask.get("prompt") is None):
                asks.append(ask)  # (one with no prompt and no results to go on from is answered with that error)
        return asks


def clear(run_dir: str | Path) -> None:
    """Forget requests left over from an earlier session of the run (before starting a trainer)."""
    run_dir = Path(run_dir)
    for name in (STOP, PAUSE):
        (run_dir / name).unlink(missing_ok=True)
    for path in (run_dir / ASKS).glob("*.json"):
        path.unlink(missing_ok=True)


def request_stop(run_dir: str | Path) -> None:
    Path(run_dir, STOP).touch()


def request_pause(run_dir: str | Path, paused: bool = True) -> None:
    path = Path(run_dir, PAUSE)
    if paused:
        path.touch()
    else:
        path.unlink(missing_ok=True)


def ask(run_dir: str | Path, prompt: str | None, max_new_tokens: int | None = None,
        history: list[dict] | None = None) -> str:
    """Queue a prompt for the paused trainer, after the conversation's turns so far (`history`: user, assistant and
    tool messages; `prompt` None: the answer after the tool results `history` ends with; `max_new_tokens` None: as
    long as the trainer's default for the run, inference.room); returns the id its "answer" event will carry."""
    ask_id = f"{time.time_ns()}-{uuid.uuid4().hex[:6]}"  # sorts by time: answered in the order asked
    atomic.write_json(Path(run_dir, ASKS, f"{ask_id}.json"),
                      {"id": ask_id, "prompt": prompt, "max_new_tokens": max_new_tokens and int(max_new_tokens),
                       "history": list(history or [])})
    return ask_id


def history_of(ask: dict) -> list[dict]:
    """The conversation an ask came with, or none where it is not a list of user, assistant and tool messages
    (an assistant's calls in the templates' form, a result with the name and id of its call)."""
    turns = ask.get("history")
    if not isinstance(turns, list):
        return []
    out = []
    for t in turns:
        if not (isinstance(t, dict) and t.get("role") in ("user", "assistant", "tool")
                and isinstance(t.get("content"), str)):
            return []
        m = {"role": t["role"], "content": t["content"]}
        if t["role"] == "assistant" and t.get("tool_calls"):
            try:
                m["tool_calls"] = tool_calls.calls(t["tool_calls"], "a turn")
            except ValueError:
                return []
        m.update({k: t[k] for k in ("name", "tool_call_id") if t["role"] == "tool" and isinstance(t.get(k), str)})
        out.append(m)
    return out
