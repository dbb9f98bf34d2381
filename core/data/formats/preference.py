"""Preference pairs: a prompt with a chosen and a rejected answer, the data of preference tuning (core/objectives).

People bring these from the hub as often as chat data, in four shapes, all read here:
  - text columns: prompt/chosen/rejected, or question, instruction, input or query as the prompt
    (orca_dpo_pairs), with an optional `system` column;
  - whole conversations: chosen and rejected each a list of turns, the user's included (UltraFeedback as
    TRL and H4 publish it);
  - a prompt of turns and answers of turns (TRL's conversational form);
  - Anthropic HH transcripts: "\\n\\nHuman: ...\\n\\nAssistant: ..." text.
Each side becomes a whole conversation: `messages` the chosen one (what supervised tuning trains on), and
`rejected` the other.
"""

from __future__ import annotations

import re

from core.data.formats import messages, sharegpt, tool_calls
from core.data.formats.turns import check_turns, field_text, list_field, looks_like_list, with_system

NAME = "preference"
DESCRIPTION = "preference pairs (prompt/chosen/rejected)"
FIELDS = ("prompt", "chosen", "rejected")
PROMPTS = ("prompt", "question", "instruction", "input", "query")  # where a text answer's prompt is found
SPEAKER = re.compile(r"(?:^|\n\n)(Human|Assistant): ")  # an HH transcript's turns
HH_ROLE = {"Human": "user", "Assistant": "assistant"}


def detect(row: dict) -> bool:
    return "chosen" in row and "rejected" in row


def convert(row: dict) -> dict:
    return {"messages": _conversation(row, "chosen"), "rejected": _conversation(row, "rejected"),
            "tools": tool_calls.definitions(row.get("tools"))}


def _conversation(row: dict, side: str) -> list[dict]:
    """The messages of one side, its prompt put before an answer given alone."""
    turns = _turns(row, side)
    if turns[0][0] == "assistant":
        turns = _prompt(row, side) + turns
    try:
        return check_turns(turns)
    except ValueError as e:
        raise ValueError(f"'{side}': {e}") from None


def _turns(row: dict, key: str) -> list[tuple]:
    """(role, content) pairs of one side: a list of turns, an HH transcript, or one answer's text."""
    value = row.get(key)
    if looks_like_list(value):
        items = list_field(row, key)
        if not items:
            raise ValueError(f"'{key}' is an empty list of turns")
        return [sharegpt.turn_of(m) if isinstance(m, dict) and "from" in m else messages.turn_of(m) for m in items]
    text = field_text(row, key)
    if SPEAKER.match(text.lstrip("\n")) and "Assistant: " in text:
        return _transcript(text.lstrip("\n"))
    return [("assistant", text)]


def _transcript(text: str) -> list[tuple]:
    """HH's "Human: ...\\n\\nAssistant: ..." text as turns."""
    parts = SPEAKER.split(text)[1:]  # speaker, words, speaker, words, ...
    return [(HH_ROLE[who], words.strip()) for who, words in zip(parts[::2], parts[1::2])]


def _prompt(row: dict, side: str) -> list[tuple]:
    """The turns before an answer given alone: a prompt of turns, or a text prompt with its system."""
    key = next((k for k in PROMPTS if row.get(k) not in (None, "")), None)
    if key is None:
        raise ValueError(f"'{side}' is an answer alone and the row has no prompt; add a 'prompt' column, or give "
                         f"'{side}' as the whole conversation")
    if looks_like_list(row[key]):
        return _turns(row, key)
    return with_system(row, [("user", field_text(row, key))])
