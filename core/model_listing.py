"""The models on this machine, described without loading any weights, for a list to pick from: the
bundled default (from its converted folder, or its GGUF header before the first conversion), GGUFs
converted before, the GGUF models Ollama and LM Studio keep (core/other_apps.py), and the local Hugging Face
cache (incomplete repos listed with the reason).
`core.model_source.resolve(entry.name)` then loads the one picked.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from core import gguf_parts, other_apps
from core.errors import IncompleteModel, ModelNotFound
from core.model_shape import ModelShape
from core.model_source import (DEFAULT_FOLDER, DEFAULT_LABEL, DEFAULT_NAME, SOURCE_NOTE, default_gguf, folder_problem,
                               gguf_target, hf_cache_dir, is_gguf, other_target)
from core.progress import Progress


@dataclass(frozen=True)
class ModelEntry:
    """One model found on this machine, for a list to pick from; `resolve(name)` loads it."""

    name: str  # what to type: "default", a path, or a cache repo id
    label: str
    source: str  # "bundled", "HF cache", "converted GGUF", "folder", "GGUF file", "Ollama", "LM Studio"
    path: str = ""  # the folder or file it lives in ("" when not found)
    size_bytes: int = 0
    architecture: str = ""  # config model_type, else its first architectures entry
    params: int = 0
    context: int = 0
    problem: str = ""  # why it cannot be used as it is, one sentence; "" when it can
    note: str = ""  # something worth knowing, e.g. "converted on first use"
    config: dict | None = field(default=None, repr=False, compare=False)  # its shape, for planning


def list_models(models_dir: Path, progress: Progress | None = None) -> list[ModelEntry]:
    """The bundled default (first), converted GGUF models under `models_dir`, Ollama's and LM Studio's, then the HF
    cache's models."""
    progress = progress or Progress()
    progress.update(None, "Reading the bundled model")
    found = [describe(DEFAULT_NAME, models_dir)]
    if models_dir.is_dir():
        for folder in sorted(models_dir.iterdir()):
            # Dot-folders are half-written conversions (core.atomic); the default is listed above.
            if folder.name.startswith(".") or folder.name == DEFAULT_FOLDER:
                continue
            if (folder / SOURCE_NOTE).is_file():
                found.append(_converted(folder))
    progress.update(None, "Looking in Ollama's and LM Studio's models")
    others = other_apps.ollama_models() + other_apps.lmstudio_models()
    found += [_other_entry(f) for f in others  # one converted already is listed above
              if not (other_target(f, models_dir) / "config.json").is_file()]
    progress.update(None, "Looking in the Hugging Face cache")
    return found + _hf_cache_entries()



def describe(name: str, models_dir: Path) -> ModelEntry:
    """What `name` would resolve to, read cheaply; a name that is not here gets an entry with its problem."""
    if name == DEFAULT_NAME:
        if (models_dir / DEFAULT_FOLDER / "config.json").is_file():
            return _folder_entry(models_dir / DEFAULT_FOLDER, DEFAULT_NAME, DEFAULT_LABEL, "bundled")
        try:
            return _gguf_entry(default_gguf(), DEFAULT_NAME, DEFAULT_LABEL, "bundled")
        except ModelNotFound as e:
            return ModelEntry(DEFAULT_NAME, DEFAULT_LABEL, "bundled", problem=str(e))
    if name.startswith(other_apps.PREFIX):
        try:
            found = other_apps.ollama_model(name)
        except ModelNotFound as e:
            return ModelEntry(name, name.removeprefix(other_apps.PREFIX), "missing", problem=str(e))
        target = other_target(found, models_dir)
        return _converted(target) if (target / "config.json").is_file() else _other_entry(found)
    path = Path(name).expanduser()
    if path.is_file() and (path.suffix.lower() == ".gguf" or is_gguf(path)):
        path = gguf_parts.first(path)  # any part of a model split into parts stands for the model
        target = gguf_target(path, models_dir)
        return _converted(target) if (target / "config.json").is_file() else _gguf_entry(path, name, gguf_parts.label(
            path), "GGUF file")
    if path.is_dir():
        return _folder_entry(path, name, path.name, "folder")
    for cached in _hf_cache_entries() if name.count("/") == 1 else []:
        if cached.name == name:
            return cached
    return ModelEntry(name, path.name or name, "missing", problem="no longer on this machine (not a folder, a "
                      ".gguf file, or a model in the Hugging Face cache)")


def _other_entry(found: other_apps.Found) -> ModelEntry:
    """A model another app keeps, read from its GGUF header, with why it cannot be tuned where it cannot."""
    entry = _gguf_entry(found.gguf, found.name, found.label, found.source)
    return replace(entry, problem=found.problem) if found.problem else entry


def _converted(folder: Path) -> ModelEntry:
    try:
        label = json.loads((folder / SOURCE_NOTE).read_text(encoding="utf-8"))["label"]
    except (OSError, ValueError, KeyError, TypeError):
        label = folder.name
    # The folder itself, not its .gguf: the file may have moved, and the folder loads as it is.
    return _folder_entry(folder, str(folder), label, "converted GGUF")


def _folder_entry(folder: Path, name: str, label: str, source: str, size: int | None = None) -> ModelEntry:
    entry = ModelEntry(name, label, source, str(folder))
    try:
        size = size if size is not None else sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        entry = replace(entry, size_bytes=size, problem=folder_problem(folder)[0])
        if not (folder / "config.json").is_file():
            return entry
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except OSError as e:  # unreadable: listed with why, never a crash
        return replace(entry, problem=f"it cannot be read ({e.strerror or e})")
    except ValueError as e:
        return replace(entry, problem=f"config.json cannot be read ({e})")
    return _with_shape(entry, config)


def _with_shape(entry: ModelEntry, config: dict | None) -> ModelEntry:
    if not isinstance(config, dict):
        return entry
    text = config.get("text_config", config)
    arch = text.get("model_type") or config.get("model_type") or (config.get("architectures") or [""])[0]
    try:
        shape = ModelShape.from_config(config)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        return replace(entry, architecture=str(arch), problem=entry.problem or f"config.json lacks {e} (its shape "
                       "is unknown)")
    return replace(entry, architecture=str(arch), params=shape.params, context=shape.max_positions, config=config)


def _gguf_entry(gguf: Path, name: str, label: str, source: str) -> ModelEntry:
    entry = ModelEntry(name, label, source, str(gguf), gguf_parts.size(gguf), note="converted on first use")
    try:
        config = gguf_config(gguf, gguf.stat().st_size, gguf.stat().st_mtime_ns)
    except IncompleteModel as e:  # a part of a split model missing, ...: its sentence
        return replace(entry, problem=str(e).removeprefix(f"{gguf}: "))
    except Exception as e:  # noqa: BLE001  any damage in the file: listed with why, never a crash
        return replace(entry, problem=f"its GGUF header cannot be read ({type(e).__name__}: {e})")
    return _with_shape(entry, config)


@functools.lru_cache(maxsize=32)
def gguf_config(gguf: Path, size: int, mtime_ns: int) -> dict:
    """The HF-style config fields a GGUF's metadata holds (size and mtime key the cache). Our reader
    (core/gguf_export/reader.py) takes 0.05 s on the default model where gguf's GGUFReader takes 1.5 s."""
    from core import gguf_import
    from core.gguf_export.architectures import CONFIG_KEYS

    contents = gguf_import.read(gguf)  # every part's tensors, for a model split into parts
    fields, arch = contents.metadata, contents.metadata["general.architecture"]

    def get(key):
        value = fields.get(f"{arch}.{key}")
        return max(value) if isinstance(value, list) and value else value  # per-layer sizes in some files

    tokens = fields.get("tokenizer.ggml.tokens")
    config = {field: get(key) for key, field in CONFIG_KEYS.items()}
    config.update(model_type=arch, tie_word_embeddings=gguf_import.head_tied(contents))
    config["vocab_size"] = config["vocab_size"] or (len(tokens) if tokens is not None else None)
    return {k: v for k, v in config.items() if v is not None}


def _hf_cache_entries() -> list[ModelEntry]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(hf_cache_dir())
    except CacheNotFound:
        return []
    except OSError as e:
        return [ModelEntry("", "Hugging Face cache", "HF cache", str(hf_cache_dir()),
                           problem=f"the cache cannot be read ({e})")]
    # Entries the hub library could not read come back as warnings, not errors: list them with why.
    found = [ModelEntry("", "unreadable cache entry", "HF cache", problem=str(w)) for w in cache.warnings]
    for repo in sorted(cache.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        # The revision `main` points at is what snapshot_download(local_files_only) gives; else the newest.
        revision = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        entry = _folder_entry(revision.snapshot_path, repo.repo_id, repo.repo_id.split("/")[-1], "HF cache",
                              revision.size_on_disk)
        if entry.problem:
            why = entry.problem.removeprefix("the model folder ")
            entry = replace(entry, problem=f"incomplete in the cache: {why}")
        found.append(entry)
    return sorted(found, key=lambda e: not e.name)  # the unreadable last
