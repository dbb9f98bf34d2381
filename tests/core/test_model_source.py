import json

import pytest

from core import model_source
from core.errors import IncompleteModel, ModelNotFound


def test_default_model_is_converted_once_into_an_hf_folder(default_model_dir, tmp_path):
    assert (default_model_dir / "config.json").is_file()
    assert list(default_model_dir.glob("*.safetensors"))
    tok_cfg = json.loads((default_model_dir / "tokenizer_config.json").read_text())
    assert "im_start" in (tok_cfg.get("chat_template") or (default_model_dir / "chat_template.jinja").read_text())
    # resolving again reuses the folder (no second conversion)
    stamp = (default_model_dir / "config.json").stat().st_mtime_ns
    ref = model_source.resolve("default", default_model_dir.parent)
    assert ref.path == default_model_dir and (default_model_dir / "config.json").stat().st_mtime_ns == stamp
    assert ref.config()["num_hidden_layers"] == 30


def test_folder_is_checked(tiny_model_dir, tmp_path):
    assert model_source.resolve(str(tiny_model_dir), tmp_path).path == tiny_model_dir.resolve()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(IncompleteModel, match="lacks config.json"):
        model_source.resolve(str(empty), tmp_path)


@pytest.mark.parametrize("name,error,words", [
    ("no/such-model", ModelNotFound, "nothing is downloaded"),
    ("missing.gguf", ModelNotFound, "no such .gguf"),
    ("", ModelNotFound, "No model given"),
])
def test_unknown_models_are_sentences(name, error, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=words):
        model_source.resolve(name, tmp_path / "models")
