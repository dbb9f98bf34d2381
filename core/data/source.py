"""What a dataset argument names: a file, a folder, or a split of a dataset in the Hugging Face cache
(core.data.hub_datasets). A path that exists always wins over an id spelled the same way.

A folder is read by the hub's split rules too (hub_datasets.splits: a dataset card's configs, else split
words in file and folder names), so a folder holding `train.jsonl` and `test.jsonl`, a clone of a hub
dataset's repository or what `datasets` saves for a DatasetDict (`train/`, `test/`) trains on its train
split only and never on the rows kept for testing; `FOLDER:SPLIT` reads another split. A folder whose
names name no split other than train is read whole, as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from core.data import hub_datasets, readers
from core.errors import DatasetError

SPLIT = re.compile(r"^(?P<base>.+):(?P<split>[\w.-]+)$")


@dataclass(frozen=True)
class Source:
    root: Path  # the file, or the folder that the files' names are relative to
    files: tuple[Path, ...] | None = None  # None: the file itself, or every file under the folder
    split: str = ""  # the split read, when the source has several
    splits: tuple[str, ...] = ()  # every split it has
    base: str = ""  # the text naming the source without its split: `base:SPLIT` names another split
    hub: bool = False  # a dataset from the Hugging Face cache, named by its id
    docs: tuple[str, ...] = ()  # a folder's documentation files, left out of its data (readers.DOCS)

    def listing(self) -> list[Path]:
        """The files read, in order."""
        if self.files is not None:
            return list(self.files)
        return readers.files_in(self.root) if self.root.is_dir() else [self.root]

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.listing())

    @property
    def label(self) -> str:
        """'org/name:train', '/data/qa:train'; '' for a file or a folder read whole."""
        return f"{self.base}:{self.split}" if self.split else ""

    @property
    def note(self) -> str:
        """What was read and what was left: the other splits of a source with several, a folder's documentation
        ('' when nothing was left out)."""
        others = [s for s in self.splits if s != self.split]
        said = [f"read the {self.split} split ({len(self.files or ())} of the files); left out: {', '.join(others)} "
                f"(read one as {self.base}:SPLIT)"] if self.split and others else []
        if self.docs:
            said.append(f"left out {', '.join(self.docs)} (the folder's documentation, not data)")
        return "; ".join(said)


def locate(text: str | Path) -> Source:
    """The source `text` names; DatasetError (a sentence) when it names nothing readable."""
    text = str(text)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            return _folder(path, None, text)
        return Source(path)
    named = SPLIT.match(text.strip())
    if named and Path(named["base"]).expanduser().is_dir():
        return _folder(Path(named["base"]).expanduser(), named["split"], named["base"])
    if hub_datasets.looks_like_id(text):
        found = hub_datasets.find(text)
        if found is None:
            raise DatasetError(hub_datasets.not_cached(text))
        base = named["base"] if named else text.strip()
        return Source(found.folder, found.files, found.split, found.splits, base, hub=True)
    raise DatasetError(f"{path}: no such file or folder; check the path.")


def _folder(path: Path, split: str | None, base: str) -> Source:
    if not readers.files_in(path):
        raise DatasetError(f"{path}: the folder holds no files; put {', '.join(readers.READERS)} files in it.")
    by_split = hub_datasets.splits(path, None, str(path))
    docs = tuple(readers.docs_in(path))
    if split is None and not ("train" in by_split and len(by_split) > 1):
        return Source(path, docs=docs)  # no split besides train: the whole folder is the training data
    chosen = hub_datasets.pick_split(by_split, split or "train", str(path))
    return Source(path, tuple(by_split[chosen]), chosen, tuple(by_split), base, docs=docs)


def validation_split(text: str) -> str | None:
    """How to name the validation split of the source whose train split `text` names, if it has one (a cached
    hub dataset's, or a folder's): its own held-out rows, which a run validates on instead of holding out
    training rows."""
    try:
        source = locate(text)
    except DatasetError:
        return None
    return f"{source.base}:validation" if source.split == "train" and "validation" in source.splits else None


def canonical(text: str) -> str:
    """How a run records its data: a path made absolute (the trainer may start elsewhere), with its split when
    one was named; a hub id as written."""
    path = Path(text).expanduser()
    if path.exists():
        return str(path.resolve())
    named = SPLIT.match(text.strip())
    if named and Path(named["base"]).expanduser().is_dir():
        return f"{Path(named['base']).expanduser().resolve()}:{named['split']}"
    return text.strip() if hub_datasets.looks_like_id(text) else str(path.resolve())
