"""Models other apps keep, in their real layouts, for the tests: a tiny GGUF our exporter wrote, and Ollama's store
(manifest JSON and digest-named blobs) holding it."""

import hashlib
import json
import shutil

from core import other_apps
from core.gguf_export import writer
from core.progress import Progress
from tests.core.gguf_export import tiny
from tests.core.gguf_export.test_architectures import COMMON


def tiny_gguf(folder):
    """(model, tokenizer, path): a random tiny Llama written as q8_0 GGUF into `folder`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.byte_level(folder / "tok"))
    model = tiny.random_model("llama", tokenizer, **COMMON)
    gguf = folder / "pirate.q8_0.gguf"
    writer.write(tiny.plan(model, tokenizer, "q8_0"), model.state_dict(), gguf, Progress())
    return model, tokenizer, gguf


def ollama_store(root, gguf, names, adapter=False):
    """Ollama's store: the GGUF as a blob named by its digest, beside a template layer (and an adapter layer, as a
    Modelfile's ADAPTER adds), and a manifest per name."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True)
    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    shutil.copy(gguf, blobs / f"sha256-{digest}")
    (blobs / "sha256-0123").write_text("{{ .Prompt }}")
    for registry, namespace, model, tag in names:
        manifest = root / "manifests" / registry / namespace / model / tag
        manifest.parent.mkdir(parents=True)
        manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:0123", "size": 13},
            {"mediaType": other_apps.MODEL_LAYER, "digest": f"sha256:{digest}", "size": gguf.stat().st_size},
            *([{"mediaType": other_apps.ADAPTER_LAYER, "digest": "sha256:0123", "size": 13}] if adapter else [])]}))
    return blobs / f"sha256-{digest}"
