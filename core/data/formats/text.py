"""Plain text for continued pre-training: {"text": "..."}; every token is trained."""

NAME = "text"
DESCRIPTION = "plain text"


def detect(row: dict) -> bool:
    return isinstance(row.get("text"), str)


def convert(row: dict) -> dict:
    if not row["text"].strip():
        raise ValueError("'text' is empty")
    return {"text": row["text"]}
