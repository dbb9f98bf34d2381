"""OpenAI chat format: {"messages": [{"role": "system|user|assistant", "content": "..."}, ...]}."""

NAME = "messages"
DESCRIPTION = "chat messages (role/content, OpenAI style)"
ROLES = {"system", "user", "assistant"}


def detect(row: dict) -> bool:
    return isinstance(row.get("messages"), list)


def convert(row: dict) -> dict:
    return {"messages": check_turns([(m.get("role"), m.get("content")) if isinstance(m, dict) else (None, None)
                                     for m in row["messages"]])}


def check_turns(turns: list[tuple]) -> list[dict]:
    """Shared by the chat-like formats: roles known, contents non-empty text, an assistant turn present."""
    out = []
    for i, (role, content) in enumerate(turns, 1):
        if role not in ROLES:
            raise ValueError(f"message {i} has role {role!r}; use system, user or assistant")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"message {i} ({role}) is empty")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError("no assistant message to learn from")
    if out[0]["role"] == "assistant":
        raise ValueError("the conversation starts with the assistant; put a user message first")
    return out
