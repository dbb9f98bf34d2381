"""One training example as read from a dataset: chat turns or raw text, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Example:
    messages: list[dict] | None = None  # chat turns, rendered through the model's chat template
    tools: list[dict] | None = None  # the functions the conversation's assistant may call (formats/tool_calls.py)
    text: str | None = None  # raw text, every token trained
    source: str = ""  # file:line, for messages about this example
    rejected: list[dict] | None = None  # a preference pair's rejected conversation (messages: the chosen one)
    desirable: bool | None = None  # a rated answer's rating: True to learn from, False to move away from
    score: float | None = None  # a scored answer's number, from which the dataset draws its rating (data/scores.py)
