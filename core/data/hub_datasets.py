"""Datasets already in the Hugging Face cache, named as on the hub: `org/name`, `org/name:test`,
`org/name/subset:train`. Nothing is downloaded; a dataset fetched once (`huggingface-cli download
--repo-type dataset org/name`, or by the `datasets` library) is read from its cached snapshot.

Which files make a split follows the hub's own rules, in its order:
1. the dataset card's YAML `configs:` list (README.md front matter): each config (subset) names its
   data files per split as glob patterns; the subset asked for, else the one named `default`, else
   the first;
2. file and folder names: a split keyword delimited by non-letters anywhere in the path (`train.csv`,
   `data/test-00000-of-00001.parquet`, `dev/part1.jsonl`), the keywords train/training,
   validation/valid/val/dev and test/testing/eval/evaluation; `data/NAME-00000-of-00003.ext` names
   a custom split NAME;
3. otherwise every data file is the train split.
The train split is read unless another is asked for. Only files our readers take count as data; the
dataset card (README.md) and the `datasets` library's metadata files never do (readers.files_in).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from core.data import readers
from core.errors import DatasetError

ID = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)(?:/(?P<subset>[\w.-]+))?(?::(?P<split>[\w.-]+))?$")
KEYWORDS = {"train": ("train", "training"), "validation": ("validation", "valid", "val", "dev"),
            "test": ("test", "testing", "eval", "evaluation")}
SHARDED = re.compile(r"^data/(?P<split>\w+?)-\d{5}-of-\d{5}\.\w+$")  # data/train_sft-00000-of-00003.parquet


@dataclass(frozen=True)
class HubDataset:
    """A split of a cached hub dataset: the snapshot folder and the files that make the split."""

    repo_id: str
    split: str
    folder: Path  # the cached snapshot; file names are shown relative to it
    files: tuple[Path, ...]
    splits: tuple[str, ...]  # every split the dataset has, for messages and pickers


def looks_like_id(text: str) -> bool:
    """Whether `text` is written like a hub dataset id (and so may be one, when no such path exists); a name
    ending in a data file's suffix (`data/train.jsonl`) is a path."""
    return bool(ID.match(text.strip())) and Path(text.split(":")[0]).suffix.lower() not in readers.READERS


def find(text: str) -> HubDataset | None:
    """The cached dataset `text` names, or None when it is not in the cache; DatasetError (a sentence) for a
    split or subset it does not have."""
    m = ID.match(text.strip())
    folder = snapshot(m["repo"]) if m else None
    if folder is None:
        return None
    by_split = splits(folder, m["subset"], m["repo"])
    split = pick_split(by_split, m["split"] or "train", m["repo"], " in the Hugging Face cache")
    return HubDataset(m["repo"], split, folder, tuple(by_split[split]), tuple(by_split))


def pick_split(by_split: dict[str, list[Path]], asked: str, name: str, where: str = "") -> str:
    """The split `asked` for (the hub's aliases too: "dev" is validation, "eval" test); DatasetError (a
    sentence) when `name` has no such split, or it holds no file we read."""
    split = asked if asked in by_split else next(
        (s for s, words in KEYWORDS.items() if asked in words and s in by_split), asked)
    if split not in by_split:
        raise DatasetError(f"{name} has no split '{asked}'{where}; its splits: "
                           f"{', '.join(by_split) or 'none with data files we read'}. Write it as {name}:SPLIT.")
    if not by_split[split]:
        raise DatasetError(f"{name}'s {split} split names no files we read ({', '.join(readers.READERS)}){where}; "
                           "fetch its data files, or give a path.")
    return split


def not_cached(text: str) -> str:
    """The sentence for an id that is neither a path here nor a cached dataset."""
    repo = ID.match(text.strip())["repo"]
    return (f"{text}: no such file or folder, and no dataset '{repo}' in the Hugging Face cache; nothing is "
            f"downloaded, so fetch it first (huggingface-cli download --repo-type dataset {repo}) or give a path.")


def cached() -> list[str]:
    """Every split of every dataset in the cache, as the ids that read them: `org/name:train`, and
    `org/name/SUBSET:SPLIT` for the subsets after the default one."""
    from core.model_source import hf_cache_dir

    ids = []
    for folder in sorted(hf_cache_dir().glob("datasets--*--*")):
        repo = folder.name.removeprefix("datasets--").replace("--", "/", 1)
        snap = snapshot(repo)
        if snap is None:
            continue
        configs = list(card_configs(snap)) or [None]
        first = "default" if "default" in configs else configs[0]
        for subset in configs:
            named = repo if subset == first else f"{repo}/{subset}"
            ids += [f"{named}:{split}" for split in splits(snap, subset, repo)]
    return ids


def snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of dataset `repo_id` (the revision `main` points at), or None."""
    from core.model_source import hf_cache_dir

    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True, cache_dir=hf_cache_dir()))
    except Exception:  # not in the cache (or no hub library): the caller says so in words
        return None


def splits(folder: Path, subset: str | None = None, repo_id: str = "the dataset") -> dict[str, list[Path]]:
    """Split name → its data files (sorted), by the rules in this module's docstring."""
    data = [f for f in readers.files_in(folder) if f.suffix.lower() in readers.READERS]
    configs = card_configs(folder)
    if subset and subset not in configs:
        raise DatasetError(f"{repo_id} has no subset '{subset}'; "
                           + (f"its subsets: {', '.join(configs)}." if configs else "its dataset card names none."))
    if configs:
        chosen = configs[subset] if subset else configs.get("default") or next(iter(configs.values()))
        return {split: [f for f in data if any(fnmatch.fnmatch(f.relative_to(folder).as_posix(), p)
                                               for p in patterns)]
                for split, patterns in chosen.items()}
    found: dict[str, list[Path]] = {split: [] for split in KEYWORDS}  # (the usual order first)
    for f in data:
        split = split_of(f.relative_to(folder).as_posix())
        if split:
            found.setdefault(split, []).append(f)
    found = {split: files for split, files in found.items() if files}
    return found or ({"train": data} if data else {})


def split_of(name: str) -> str | None:
    """The split a data file's path (relative to the snapshot) names, or None."""
    if m := SHARDED.match(name):
        named = m["split"]
        return next((s for s, words in KEYWORDS.items() if named in words), named)
    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w]
    for split, keywords in KEYWORDS.items():
        if any(w in keywords for w in words):
            return split
    return None


def card_configs(folder: Path) -> dict[str, dict[str, list[str]]]:
    """The dataset card's `configs:` as {subset: {split: [glob, ...]}}; empty when the card has none."""
    from core.lineage import front_matter

    meta = front_matter(folder / "README.md")  # none, or one we cannot parse: the file names decide, as on the hub
    configs = {}
    entries = meta.get("configs") if isinstance(meta, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or "config_name" not in entry:
            continue
        configs[str(entry["config_name"])] = _data_files(entry.get("data_files"))
    return configs


def _data_files(files) -> dict[str, list[str]]:
    """A config's `data_files` (a pattern, a list of patterns, a list of {split, path}, or {split: patterns})
    as {split: [pattern, ...]}; patterns without a split are the train split."""
    if isinstance(files, dict):
        files = [{"split": split, "path": path} for split, path in files.items()]
    by_split: dict[str, list[str]] = {}
    for item in files if isinstance(files, list) else [files] if files else []:
        if not isinstance(item, (str, dict)):
            continue
        split, paths = ("train", item) if isinstance(item, str) else (item.get("split", "train"), item.get("path"))
        for path in paths if isinstance(paths, list) else [paths] if paths else []:
            by_split.setdefault(str(split), []).append(str(path))
    return by_split
