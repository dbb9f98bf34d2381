"""What `ollama create NAME -f Modelfile` does to Ollama's store, for tests on machines without Ollama (CI has none;
the real program is to be checked by hand where it is installed): run as `ollama` (tests/core/test_ollama_create.py
puts it on PATH), it takes the Modelfile's FROM file, relative to the Modelfile's folder as Ollama reads it, into the
store at $OLLAMA_MODELS as a blob named by its digest, its TEMPLATE as a template layer, and writes the manifest
`manifests/registry.ollama.ai/<namespace>/<model>/<tag>`, as Ollama's server does with the request. With $OLLAMA_DOWN
set it answers as Ollama's CLI does where no server is running."""

import hashlib
import json
import os
import re
import sys
from pathlib import Path


def blob(store: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    (store / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return digest


def create(name: str, modelfile: Path) -> None:
    text = modelfile.read_text(encoding="utf-8")
    source = modelfile.parent / re.search(r"^FROM (.+)$", text, re.M).group(1).strip()
    if not source.is_file():
        sys.exit(f"Error: no Modelfile or safetensors files found: {source}")
    template = re.search(r'^TEMPLATE """(.*?)"""', text, re.M | re.S)
    store = Path(os.environ["OLLAMA_MODELS"])
    layers = [("application/vnd.ollama.image.model", source.read_bytes())]
    layers += [("application/vnd.ollama.image.template", template.group(1).encode())] if template else []
    path, _, tag = name.partition(":")
    namespace, _, model = path.rpartition("/")
    manifest = store / "manifests" / "registry.ollama.ai" / (namespace or "library") / model / (tag or "latest")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
        {"mediaType": kind, "digest": blob(store, data), "size": len(data)} for kind, data in layers]}))
    print("gathering model components\ncopying file sha256:... 100%\nwriting manifest\nsuccess")


def install(folder: Path) -> Path:
    """This program as `folder/ollama`, a file to run (put `folder` first on PATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / "ollama"
    program.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" "$@"\n')
    program.chmod(0o755)
    return program


if __name__ == "__main__":
    if os.environ.get("OLLAMA_DOWN"):
        print("\x1b[?25lgathering model components \x1b[?25h\r", end="", flush=True)  # its spinner's codes
        sys.exit("Error: could not connect to ollama app, is it running?")
    verb, name, flag, modelfile = sys.argv[1:5]
    assert (verb, flag) == ("create", "-f"), sys.argv
    create(name, Path(modelfile))
