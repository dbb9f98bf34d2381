"""Dataset schemas, one file each, registered here in order of precedence.

Each format module has NAME, DESCRIPTION, FIELDS (the names a column mapping can fill),
`detect(row) -> bool` (does this row look like mine?) and `convert(row) -> Example fields`, which
raises ValueError with a short reason for a bad row. turns.py (the checks of chat turns) and tool_calls.py (tool
calls and definitions) serve the chat schemas.
"""

from core.data.formats import alpaca, messages, preference, prompt_completion, rated, sharegpt, text

# Preference pairs first: a pair that also has other schemas' columns is still a pair (H4's UltraFeedback repeats
# the chosen conversation as `messages`; orca_dpo_pairs has a `question`). Rated answers next: a rated row is a chat
# or prompt/completion row with a `label`, and reading it as one of those would train on the answers rated bad.
FORMATS = {m.NAME: m for m in (preference, rated, messages, sharegpt, alpaca, prompt_completion, text)}


def detect(row: dict) -> str | None:
    for name, fmt in FORMATS.items():
        if fmt.detect(row):
            return name
    return None
