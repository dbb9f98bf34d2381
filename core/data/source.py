"""What a dataset argument names: a file, a folder, or a split of a dataset in the Hugging Face cache
(core.data.hub_datasets). A path that exists always wins over an id spelled the same way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.data import hub_datasets, readers
from core.errors import DatasetError


@dataclass(frozen=True)
class Source:
    root: Path  # the file, or the folder that the files' names are relative to
    files: tuple[Path, ...] | None = None  # None: the file itself, or every file under the folder
    hub: hub_datasets.HubDataset | None = None

    def listing(self) -> list[Path]:
        """The files read, in order."""
        if self.files is not None:
            return list(self.files)
        return readers.files_in(self.root) if self.root.is_dir() else [self.root]

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.listing())


def locate(text: str | Path) -> Source:
    """The source `text` names; DatasetError (a sentence) when it names nothing readable."""
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir() and not readers.files_in(path):
            raise DatasetError(f"{path}: the folder holds no files; put {', '.join(readers.READERS)} files in it.")
        return Source(path)
    if hub_datasets.looks_like_id(str(text)):
        found = hub_datasets.find(str(text))
        if found is None:
            raise DatasetError(hub_datasets.not_cached(str(text)))
        return Source(found.folder, found.files, found)
    raise DatasetError(f"{path}: no such file or folder; check the path.")


def validation_split(text: str) -> str | None:
    """The id of the validation split of the cached hub dataset whose train split `text` names, if it has one:
    the dataset's own held-out rows, which the run then validates on instead of holding out training rows."""
    path = Path(text).expanduser()
    if path.exists() or not hub_datasets.looks_like_id(text):
        return None
    found = hub_datasets.find(text)
    if found is None or found.split != "train" or "validation" not in found.splits:
        return None
    return text.strip().split(":")[0] + ":validation"


def canonical(text: str) -> str:
    """How a run records its data: a path made absolute (the trainer may start elsewhere), a hub id as written."""
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() or not hub_datasets.looks_like_id(text) else text.strip()
