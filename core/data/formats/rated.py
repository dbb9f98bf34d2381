"""Rated answers: a prompt with one answer and a thumbs-up or thumbs-down, the data of KTO (core/objectives/kto.py).

What people collect from a chat app's feedback buttons, and what TRL calls unpaired preference data:
  - text columns: prompt/completion (or another prompt/completion schema's names) with a `label`;
  - a prompt and a completion each a list of turns (TRL's conversational form);
  - a whole conversation (`messages` or ShareGPT's `conversations`) with a `label`: its assistant turns are rated.
The label says whether the answer is one to learn from: true/false, 1/0 or "true"/"false" (as a CSV holds them).
Any other label is a bad row, never read as a rating: a row with a class number in `label` is not feedback, and
guessing would train towards answers someone marked bad. (A column mapping without 'label' reads such a file
as plain prompt/completion pairs.)

Instead of a label a row may carry a `score`: stars, a 0-4 helpfulness grade, a reward model's number (HelpSteer,
UltraFeedback's ratings, a feedback form). A score is a rating once a line is drawn: answers scored above it are
rated good, the others bad. The line belongs to the whole file, so the dataset draws it when every row is read
(core/data/scores.py). A row with both is rated by its score, so that a label column of numbers (stars) is read
as scores by mapping 'score' to it.
"""

from __future__ import annotations

import math

from core.data.formats import messages, prompt_completion, sharegpt, tool_calls
from core.data.formats.turns import check_turns, list_field, looks_like_list

NAME = "rated"
DESCRIPTION = "rated answers (prompt/completion with a true/false label or a score)"
FIELDS = ("prompt", "completion", "label", "score")
BASES = (messages, sharegpt, prompt_completion)  # the shapes a rated row's answer comes in
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def detect(row: dict) -> bool:
    return ("label" in row or "score" in row) and any(base.detect(row) for base in BASES)


def convert(row: dict) -> dict:
    rated = {"score": score(row.get("score"))} if "score" in row else {"desirable": rating(row["label"])}
    if looks_like_list(row.get("completion")):  # the conversational form: prompt turns, then the answer's
        prompt = [messages.turn_of(m) for m in list_field(row, "prompt")] if looks_like_list(row.get("prompt")) \
            else [("user", row.get("prompt"))]
        fields = {"messages": check_turns(prompt + [messages.turn_of(m) for m in list_field(row, "completion")]),
                  "tools": tool_calls.definitions(row.get("tools"))}
    else:
        fields = next((b for b in BASES if b.detect(row)), prompt_completion).convert(row)
    if fields["messages"][-1]["role"] != "assistant":
        ends = "a tool's result" if fields["messages"][-1]["role"] == "tool" else "a user turn"
        raise ValueError(f"the conversation ends with {ends}; end it with the assistant's answer that is rated")
    return {**fields, **rated}


def rating(value) -> bool:
    """A label as a rating: True for an answer to learn from, False for one to move away from."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    raise ValueError(f"'label' is {value!r}; rate each answer true (one to learn from) or false (one to move away "
                     "from)" + (", or read the column as a score (map 'score' to it)" if numeric else ""))


def score(value) -> float:
    """A score as a number (a CSV's text too); ValueError for anything else, booleans included (use `label`)."""
    number = float("nan")
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)  # (float() takes a CSV's text with its blanks)
        except ValueError:
            pass
    if not math.isfinite(number):
        raise ValueError(f"'score' is {value!r}; give each answer a number (stars, a grade), or rate it with a "
                         "true/false 'label'")
    return number
