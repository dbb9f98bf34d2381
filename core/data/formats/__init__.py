"""Dataset schemas, one file each, registered here in order of precedence.

Each format module has NAME, DESCRIPTION, FIELDS (the names a column mapping can fill),
`detect(row) -> bool` (does this row look like mine?) and `convert(row) -> Example fields`, which
raises ValueError with a short reason for a bad row. Chat schemas add "dropped": the number of tool
turns left out.
"""

from core.data.formats import alpaca, messages, preference, prompt_completion, sharegpt, text

# Preference pairs before prompt/completion: a pair that also has, say, question and answer columns is a pair.
FORMATS = {m.NAME: m for m in (messages, sharegpt, alpaca, preference, prompt_completion, text)}


def detect(row: dict) -> str | None:
    for name, fmt in FORMATS.items():
        if fmt.detect(row):
            return name
    return None
