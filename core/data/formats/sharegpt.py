"""ShareGPT exports: {"conversations": [{"from": "human|gpt|system", "value": "..."}, ...]}."""

from core.data.formats.messages import check_turns

NAME = "sharegpt"
DESCRIPTION = "ShareGPT conversations (from/value)"
ROLE_OF = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def detect(row: dict) -> bool:
    return isinstance(row.get("conversations"), list)


def convert(row: dict) -> dict:
    turns = []
    for m in row["conversations"]:
        m = m if isinstance(m, dict) else {}
        turns.append((ROLE_OF.get(m.get("from")), m.get("value")))
    return {"messages": check_turns(turns)}
