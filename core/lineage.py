"""Where a run came from: its base model's name, Hugging Face id and licence, and its dataset's name, as far as
this machine can tell. An export's model card (core.model_card) and its GGUF file's `general.base_model.*` and
`general.dataset.*` keys say them, so a model shared from here names what it was made from.

Read, never guessed from a name alone:
- a model in the Hugging Face cache: its id from the cache's folder (`models--ORG--NAME`), its licence from its own
  card (README.md's front matter);
- a GGUF (converted once into a folder, its `tuneforge_source.json` naming the file; Ollama's blobs too): the id
  from the header's repository keys where one is a Hugging Face address, the licence from `general.license`;
- the bundled default: SmolLM2-135M-Instruct, whose file names no repository, is known to be HuggingFaceTB's;
- another folder: its name, and the licence its card states, if it has one.
What cannot be read stays empty, and the card says the base by name alone. A local path never leaves the machine in
a card (it names nothing to a reader elsewhere, and may say more about the person than they meant to share).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import KnownError

HUB = "https://huggingface.co/"
# the bundled default model (core.model_source.DEFAULT_*): its GGUF carries no repository key
DEFAULT_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
# GGUF keys that may hold the model's own address (llama.cpp's converter writes the first two; older files the last)
REPO_KEYS = ("general.repo_url", "general.source.repo_url", "general.url", "general.source.url",
             "general.source.huggingface.repository")
CACHED = re.compile(r"^(models|datasets)--(?P<org>[^/]+?)--(?P<name>[^/]+)$")  # the hub cache's folder names


@dataclass(frozen=True)
class Origin:
    """A base model or a dataset: `name` always, `repo` (ORG/NAME on the Hugging Face Hub) and `license` where
    known; `read_from` says where they were read, for the card."""

    name: str
    repo: str = ""
    license: str = ""
    read_from: str = ""
    # a base converted from a GGUF: the file whose weights (de-quantized) the run trained on, and their type, which
    # may differ a little from the Hub release `repo` names: "SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1), de-quantized"
    weights: str = ""
    languages: tuple[str, ...] = ()  # what the base's card or GGUF header says it speaks ("en", ...)

    @property
    def url(self) -> str:
        return f"{HUB}{self.repo}" if self.repo else ""

    @property
    def organization(self) -> str:
        return self.repo.split("/")[0] if self.repo else ""


def front_matter(card: Path) -> dict:
    """A Hugging Face card's YAML front matter (README.md between its `---` lines); empty when it has none or
    cannot be parsed."""
    try:
        text = Path(card).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    if not text.startswith("---"):
        return {}
    try:
        import yaml

        meta = yaml.safe_load(text[3:].split("\n---", 1)[0]) or {}
    except Exception:  # a card we cannot parse reads as none
        return {}
    return meta if isinstance(meta, dict) else {}


def base_model(model: str, model_path: str | Path) -> Origin:
    """The base model a run was given as `model` (what the person typed) and loaded from `model_path`."""
    from core import model_source

    path = Path(model_path)
    if model == model_source.DEFAULT_NAME:
        try:
            gguf = model_source.default_gguf()
        except KnownError:  # its package gone since the run: the model is still known by its name
            gguf = Path(model_source.DEFAULT_GGUF)
        header = _gguf_header(gguf) if gguf.is_file() else {}
        return Origin(model_source.DEFAULT_LABEL, DEFAULT_REPO, _text(header.get("general.license")),
                      "the bundled model", _weights(gguf, header), _languages(header.get("general.languages")))
    note = _source_note(path)
    if note is not None:  # converted from a GGUF (a file, or Ollama's blob)
        gguf = Path(str(note.get("gguf", "")))
        header = _gguf_header(gguf) if gguf.is_file() else {}
        label = str(note.get("label") or path.name)
        return Origin(label, _repo_in(header), _text(header.get("general.license")),
                      f"the header of {gguf.name}" if header else "", _weights(gguf, header, label),
                      _languages(header.get("general.languages")))
    card = front_matter(path / "README.md") if path.is_dir() else {}
    licence, languages = _text(card.get("license")), _languages(card.get("language"))
    cached = _cached_repo(path, "models")
    if cached:
        return Origin(cached.split("/")[-1], cached, licence, "the Hugging Face cache", languages=languages)
    if model.count("/") == 1 and not Path(model).expanduser().exists():  # a hub id the cache resolved elsewhere
        return Origin(model.split("/")[-1], model, licence, "the model's id", languages=languages)
    return Origin(path.name, "", licence, "the model folder's card" if card else "", languages=languages)


def dataset(data_path: str) -> Origin:
    """The dataset a run read: a cached hub dataset by its id (subset and split left out), a file or folder by its
    name alone."""
    from core.data import hub_datasets

    text = str(data_path or "").strip()
    if not text:
        return Origin("")
    cached = _cached_repo(Path(text), "datasets")
    if cached:
        return Origin(cached, cached, "", "the Hugging Face cache")
    if hub_datasets.looks_like_id(text) and not Path(text).expanduser().exists():
        repo = hub_datasets.ID.match(text)["repo"]
        return Origin(repo, repo, "", "the dataset's id")
    return Origin(Path(text).name)


def _source_note(folder: Path) -> dict | None:
    from core import model_source

    try:
        note = json.loads((folder / model_source.SOURCE_NOTE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _gguf_header(gguf: Path) -> dict:
    """The metadata before the vocabulary (its arrays are most of a header's bytes); empty for a file that cannot
    be read."""
    from core.gguf_export import reader

    try:
        return reader.read(gguf, stop_at="tokenizer.ggml.model").metadata
    except (OSError, ValueError, KeyError):
        return {}


def _weights(gguf: Path, header: dict, label: str = "") -> str:
    """'NAME.gguf (Q4_1), de-quantized': the file a base was converted from, and its type; a blob of Ollama's store
    (named by its digest) by the model's name."""
    from gguf import LlamaFileType

    shown = gguf.name if gguf.suffix.lower() == ".gguf" or not label else f"Ollama's {label}"

    try:
        kind = LlamaFileType(header["general.file_type"]).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except (KeyError, ValueError):
        return shown
    return f"{shown} ({kind})" + ("" if kind in ("F32", "F16", "BF16") else ", de-quantized")


def _repo_in(header: dict) -> str:
    for key in REPO_KEYS:
        value = _text(header.get(key))
        repo = value[len(HUB):] if value.startswith(HUB) else value if key.endswith("repository") else ""
        parts = [p for p in repo.split("/") if p]
        if len(parts) >= 2 and parts[0] not in ("datasets", "spaces"):
            return "/".join(parts[:2])
    return ""


def _cached_repo(path: Path, kind: str) -> str:
    for part in path.parts:
        m = CACHED.match(part)
        if m and m[1] == kind:
            return f"{m['org']}/{m['name']}"
    return ""


def _languages(value) -> tuple[str, ...]:
    """A card's `language` (one code or a list) or a header's `general.languages`, as a tuple of codes."""
    values = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []
    return tuple(v.strip() for v in values if isinstance(v, str) and v.strip())


def _text(value) -> str:
    return value.strip() if isinstance(value, str) else ""
