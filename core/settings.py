"""Small helpers for dataclass configs that explain themselves (STYLE §5).

Every field carries `help` (field metadata, for help pages and tooltips); `check` names the field
and the fix when a value is wrong; `from_dict` refuses unknown keys so a typo in a config file is an
error, not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

from core.errors import BadArgument

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", experts_only: bool = False, **kw) -> Any:
    """A dataclass field with help text (kept in metadata, shown by `describe`); `experts_only`: a setting that means
    something for a mixture of experts alone (a dense model's plan does not show it)."""
    if not help:
        raise ValueError("every setting needs help text")
    metadata = {"help": help, "experts_only": experts_only}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


def check(ok: bool, field: str, message: str) -> None:
    """Raise BadArgument('<field>: <message>') unless ok."""
    if not ok:
        raise BadArgument(f"Setting '{field}': {message}")


def from_dict(cls: type[T], data: dict, source: str = "config") -> T:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise BadArgument(f"{source}: unknown setting(s) {', '.join(unknown)}; known ones are {', '.join(sorted(names))}.")
    try:
        return cls(**data)
    except TypeError as e:  # a required field is missing
        raise BadArgument(f"{source}: {e}; fill in every required setting.") from None


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def read_json_object(path: str | Path, missing_hint: str = "check the path") -> dict:
    """A JSON object from a file, or a BadArgument naming file:line and the fix."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadArgument(f"{path}: no such file; {missing_hint}.") from None
    except json.JSONDecodeError as e:
        raise BadArgument(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix the file and try again.") from None
    if not isinstance(data, dict):
        raise BadArgument(f"{path}: expected a JSON object at the top level.")
    return data


def load_json(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, read_json_object(path), source=str(path))
