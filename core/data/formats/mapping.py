"""A column mapping names which column fills which field of a schema, and so overrides detection.

{"prompt": "question_text", "completion": "answer_text"} reads prompt/completion pairs from those two
columns; {"text": "body"} reads plain text; {"messages": "dialog"} reads chat turns. Fields the mapping
does not name are taken from a column of their own name when there is one (Alpaca's optional input).
"""

from __future__ import annotations

from core.data import formats
from core.errors import DatasetError


def schema_for(mapping: dict) -> str:
    """The schema whose fields the mapping names; DatasetError saying what to change otherwise.

    A field two schemas share ('prompt': prompt/completion and preference pairs) goes to the smallest schema
    holding every field named, so {'prompt': 'q'} is prompt/completion and {'prompt': 'q', 'chosen': 'a'} a pair.
    """
    if not isinstance(mapping, dict) or not mapping:
        raise DatasetError(f"column mapping: {mapping!r} is not a mapping of fields to columns; "
                           "give one like {'prompt': 'question', 'completion': 'answer'}.")
    known = {f for fmt in formats.FORMATS.values() for f in fmt.FIELDS}
    fields = ", ".join(f"{'/'.join(fmt.FIELDS)}" for fmt in formats.FORMATS.values())
    for field, column in mapping.items():
        if field not in known:
            raise DatasetError(f"column mapping: {field!r} is not a field of any schema; map columns to "
                               f"{fields}.")
        if not isinstance(column, str) or not column:
            raise DatasetError(f"column mapping: {field!r} maps to {column!r}; give the column's name.")
    holding = [name for name, fmt in formats.FORMATS.items() if set(mapping) <= set(fmt.FIELDS)]
    if not holding:
        owners = sorted({name for f in mapping for name, fmt in formats.FORMATS.items() if f in fmt.FIELDS})
        raise DatasetError(f"column mapping: the fields {', '.join(map(repr, mapping))} belong to different "
                           f"schemas ({', '.join(owners)}); map the fields of one schema.")
    return min(holding, key=lambda name: len(formats.FORMATS[name].FIELDS))


def apply(row: dict, mapping: dict) -> dict:
    """The row with the mapped columns under the schema's field names; ValueError for a missing column."""
    out = dict(row)
    for field, column in mapping.items():
        if column not in row:
            columns = ", ".join(map(repr, list(row)[:12])) or "none"
            raise ValueError(f"has no column {column!r} (mapped to {field}); its columns are {columns}")
        out[field] = row[column]
    return out
