"""Plain text for continued pre-training: {"text": "..."}; every token is trained."""

NAME = "text"
DESCRIPTION = "plain text"
FIELDS = ("text",)


def detect(row: dict) -> bool:
    return isinstance(row.get("text"), str)


def convert(row: dict) -> dict:
    text = row.get("text")
    if not isinstance(text, str):
        raise ValueError("'text' is missing" if text is None else "'text' is not text")
    if not text.strip():
        raise ValueError("'text' is empty")
    return {"text": text}
