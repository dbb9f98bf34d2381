"""A GGUF model split into parts: NAME-00001-of-00003.gguf, NAME-00002-of-00003.gguf, ...

Models past a few tens of GB come that way (the Hugging Face hub takes files of up to 50 GB; a 70B model at
Q4_K_M is about 43 GB, at Q8_0 75): llama.cpp's gguf-split and its converter's --split-max-size write the parts,
each a whole GGUF file with keys split.no (from 0), split.count and split.tensors.count, the model's metadata
in the first. llama.cpp loads such a model from any part's name by this naming; so does Tuneforge: any part
stands for the model (`first`), the parts are found beside it (`parts`), and each must be there, be the part
its name says, and agree on the count (`check`), else one sentence says which part to fetch.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import IncompleteModel

PART = re.compile(r"^(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def _name(stem: str, no: int, count: int) -> str:
    return f"{stem}-{no:05d}-of-{count:05d}.gguf"


def _all(gguf: Path, stem: str, count: int) -> list[Path]:
    """Every part's path, beside `gguf`, by the naming."""
    return [gguf.with_name(_name(stem, no, count)) for no in range(1, count + 1)]


def first(gguf: Path) -> Path:
    """The first part of the model `gguf` is a part of (by its name), where that part exists; else `gguf`."""
    m = PART.match(gguf.name)
    if m is None or int(m["no"]) == 1:
        return gguf
    candidate = gguf.with_name(_name(m["stem"], 1, int(m["count"])))
    return candidate if candidate.is_file() else gguf


def label(gguf: Path) -> str:
    """The model's name: the file's, without a part's -00001-of-00003."""
    m = PART.match(gguf.name)
    return m["stem"] if m else gguf.stem


def size(gguf: Path) -> int:
    """The bytes of the whole model: every part's where `gguf` is a part and they are all there, else its own."""
    m = PART.match(gguf.name)
    if m is None:
        return gguf.stat().st_size
    found = _all(gguf, m["stem"], int(m["count"]))
    return sum(p.stat().st_size for p in found) if all(p.is_file() for p in found) else gguf.stat().st_size


def parts(gguf: Path, count: int) -> list[Path]:
    """The files of a model of `count` parts whose first part is `gguf`: NAME-0000k-of-0000N.gguf beside it
    (`gguf` itself where its name does not follow that form, which llama.cpp would not load either)."""
    m = PART.match(gguf.name)
    if m is None or int(m["count"]) != count:
        raise IncompleteModel(f"{gguf}: is the first of {count} parts of a model, but its name does not say so "
                              f"(llama.cpp's form is NAME-00001-of-{count:05d}.gguf); keep the parts' names as "
                              "they were downloaded.")
    found = _all(gguf, m["stem"], count)
    missing = [p.name for p in found if not p.is_file()]
    if missing:
        raise IncompleteModel(f"{gguf}: is part 1 of {count}, and {len(missing)} part(s) are not beside it "
                              f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); download every part "
                              "into the same folder.")
    return found


def check(path: Path, metadata: dict, no: int, count: int) -> None:
    """A part's own keys must say it is part `no` (from 1) of `count`."""
    said = (metadata.get("split.no"), metadata.get("split.count"))
    if said != (no - 1, count):
        raise IncompleteModel(f"{path}: says it is part {_said(said)}, where its name says part {no} of {count}; "
                              "the parts are of different downloads: download them again.")


def _said(said: tuple) -> str:
    no, count = said
    return "of no split model" if no is None or count is None else f"{no + 1} of {count}"
