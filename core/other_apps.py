"""GGUF models other apps on this machine already keep: Ollama's store and LM Studio's folder, so a person can tune
a model they pulled there without finding (or downloading again) its file.

Ollama keeps a model as a manifest, `manifests/<registry>/<namespace>/<model>/<tag>` (JSON: `layers`, each with a
`mediaType` and a `digest`), and content-addressed blobs, `blobs/sha256-<hex>`; the layer of type
`application/vnd.ollama.image.model` is the GGUF (others are its template, parameters, licence, a vision projector;
an `adapter` layer is a LoRA on it, which tuning the GGUF alone would leave out: such a model is listed with why).
The store is `$OLLAMA_MODELS`, else `~/.ollama/models` (or `/usr/share/ollama/.ollama/models` where Ollama runs as
a Linux service). A model is named as Ollama names it: `llama3.2:1b` in its own library, `NAMESPACE/MODEL:TAG` in
another namespace, `HOST/NAMESPACE/MODEL:TAG` from another registry (`hf.co/...`); `--model ollama:NAME` picks one
(`:latest` where no tag is given).

LM Studio keeps plain GGUF files as `<publisher>/<model>/<file>.gguf` under `~/.lmstudio/models` (older versions:
`~/.cache/lm-studio/models`), or the folder its settings name (`lmstudio_roots`); its vision projectors (`mmproj-*`)
are not language models, and of a model split into parts only the first part is listed (core/gguf_parts.py).
Ollama's store is only read (an export goes to Ollama through its own program, core/ollama_create.py); an exported
GGUF can be put in LM Studio's folder (`add_to_lmstudio`), under the publisher `tuneforge`, where LM Studio lists it
as it lists its downloads: a hard link where the folder is on the same drive, so a model of many GB takes no more
room.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core import atomic, gguf_parts
from core.errors import BadArgument, ModelNotFound

PREFIX = "ollama:"
MODEL_LAYER = "application/vnd.ollama.image.model"
ADAPTER_LAYER = "application/vnd.ollama.image.adapter"  # a LoRA a Modelfile's ADAPTER put on the model
REGISTRY, LIBRARY = "registry.ollama.ai", "library"


@dataclass(frozen=True)
class Found:
    name: str  # what to type for --model: "ollama:llama3.2:1b", or the file's path for LM Studio
    label: str  # "llama3.2:1b", or the file's name without the part suffix
    source: str  # "Ollama" or "LM Studio"
    gguf: Path
    problem: str = ""  # why it cannot be tuned as it is, one sentence; "" when it can


def folder_stem(found: Found) -> str | None:
    """What its converted folder is named after: an Ollama model's name (its blob's is a digest), else the file's."""
    return "ollama-" + found.label if found.source == "Ollama" else None


def ollama_root() -> Path | None:
    """Ollama's model store on this machine, or None."""
    if os.environ.get("OLLAMA_MODELS"):
        root = Path(os.environ["OLLAMA_MODELS"]).expanduser()
        return root if root.is_dir() else None
    for root in (Path.home() / ".ollama" / "models", Path("/usr/share/ollama/.ollama/models")):
        if (root / "manifests").is_dir():
            return root
    return None


def ollama_models(root: Path | None = None) -> list[Found]:
    """Every model in Ollama's store whose GGUF blob is there, by name."""
    root = root or ollama_root()
    manifests = root / "manifests" if root else None
    if manifests is None or not manifests.is_dir():
        return []
    found = []
    for manifest in _files(manifests, "*"):
        parts = manifest.relative_to(manifests).parts
        if len(parts) != 4:  # registry/namespace/model/tag
            continue
        blob, adapters = _model_blob(root, manifest)
        if blob is not None:
            label = _ollama_name(*parts)
            problem = (f"Ollama's {label} is a model with a LoRA adapter on it (its Modelfile's ADAPTER), which "
                       "tuning its GGUF alone would leave out; tune its base model, or a GGUF with the adapter merged"
                       if adapters else "")
            found.append(Found(PREFIX + label, label, "Ollama", blob, problem))
    return found


def ollama_model(name: str) -> Found:
    """The model `ollama:NAME[:TAG]`; else ModelNotFound, naming the models Ollama has."""
    wanted = name.removeprefix(PREFIX).strip()
    wanted = wanted if ":" in wanted.rsplit("/", 1)[-1] else wanted + ":latest"
    models = ollama_models()
    for found in models:
        if found.label == wanted:
            return found
    if models:
        why = "it has " + ", ".join(f.label for f in models[:8]) + (", ..." if len(models) > 8 else "")
    elif ollama_root() is not None:
        why = f"its store, {ollama_root()}, holds none"
    else:
        why = "no Ollama store was found here; set OLLAMA_MODELS to its folder"
    raise ModelNotFound(f"Ollama has no model '{wanted}' on this machine ({why}); pull it with `ollama pull "
                        f"{wanted}` or give another model.")


PUBLISHER = "tuneforge"  # the folder LM Studio shows our exports under, as it shows a download's publisher


def lmstudio_roots() -> list[Path]:
    """LM Studio's models folders, the one it downloads to first: the folder its settings name (`downloadsFolder` in
    `settings.json` of its home: a person may move the models to another drive), then `models` in its home (the
    folder `~/.lmstudio-home-pointer` names, where an install found an older one), then the default places."""
    homes = [Path.home() / ".lmstudio", Path.home() / ".cache" / "lm-studio"]
    try:
        pointed = Path((Path.home() / ".lmstudio-home-pointer").read_text(encoding="utf-8").strip()).expanduser()
        if pointed.is_absolute():
            homes.insert(0, pointed)
    except OSError:
        pass
    roots = []
    for home in homes:
        try:
            folder = json.loads((home / "settings.json").read_text(encoding="utf-8")).get("downloadsFolder")
        except (OSError, ValueError, AttributeError):
            folder = None
        if isinstance(folder, str) and folder.strip() and Path(folder).expanduser().is_absolute():
            roots.append(Path(folder).expanduser())
        roots.append(home / "models")
    return list(dict.fromkeys(roots))


def lmstudio_folder(name: str) -> Path:
    """Where LM Studio will list a model of this name, `<models>/tuneforge/<name>` (asked before an export, so a
    sentence comes before any work): where LM Studio is not here, or already has a model of that name."""
    root = next((r for r in lmstudio_roots() if r.is_dir() or r.parent.is_dir()), None)
    if root is None:
        raise BadArgument(f"LM Studio was not found here ({lmstudio_roots()[0].parent} does not exist); install it, or "
                          "copy the exported .gguf into its models folder yourself.")
    folder = root / PUBLISHER / name
    if folder.exists():
        raise BadArgument(f"LM Studio already has a model at {folder}; export to a folder of another name, or remove "
                          "that one in LM Studio first.")
    return folder


def add_to_lmstudio(gguf: Path, folder: Path) -> Path:
    """The exported GGUF put in `folder` (lmstudio_folder), with the vision projector exported beside it (an
    `mmproj-*.gguf`, which LM Studio pairs with the model in its folder): hard links where they are on the same
    drive, else copies; in a temporary folder that becomes `folder` whole."""
    target = folder / Path(gguf).name
    with atomic.folder(folder) as tmp:
        for file in (Path(gguf), *sorted(Path(gguf).parent.glob("mmproj-*.gguf"))):
            atomic.link_or_copy(file, tmp / file.name)
    return target


def lmstudio_models() -> list[Found]:
    """Every language-model GGUF in LM Studio's folders (first parts of split ones; no vision projectors)."""
    found = []
    for root in lmstudio_roots():
        if not root.is_dir():
            continue
        for gguf in _files(root, "*.gguf"):
            if gguf.name.lower().startswith("mmproj") or gguf_parts.first(gguf) != gguf:
                continue
            found.append(Found(str(gguf), gguf_parts.label(gguf), "LM Studio", gguf))
    return found


def _files(root: Path, pattern: str) -> list[Path]:
    """The files under `root` matching `pattern`, sorted; none where a folder cannot be read (Ollama's service store
    may belong to its own user), so a list never fails for another app's permissions."""
    try:
        return sorted(p for p in root.rglob(pattern) if p.is_file())
    except OSError:
        return []


def _model_blob(root: Path, manifest: Path) -> tuple[Path | None, bool]:
    """(the model layer's blob where it is there, whether the manifest also has an adapter layer)."""
    try:
        layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
    except (OSError, ValueError, AttributeError):
        return None, False
    layers = [layer for layer in layers if isinstance(layer, dict)]
    adapters = any(layer.get("mediaType") == ADAPTER_LAYER for layer in layers)
    for layer in layers:
        if layer.get("mediaType") == MODEL_LAYER:
            blob = root / "blobs" / str(layer.get("digest", "")).replace(":", "-", 1)
            return (blob if blob.is_file() else None), adapters
    return None, adapters


def _ollama_name(registry: str, namespace: str, model: str, tag: str) -> str:
    if registry == REGISTRY:
        return f"{model}:{tag}" if namespace == LIBRARY else f"{namespace}/{model}:{tag}"
    return f"{registry}/{namespace}/{model}:{tag}"
