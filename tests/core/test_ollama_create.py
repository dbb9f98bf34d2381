"""Handing an exported GGUF to Ollama (core/ollama_create.py): names checked by Ollama's rules before any work, a name
Ollama already has refused, the export taken in by `ollama create` run in its folder (tests/core/ollama_program.py
plays Ollama, writing its store), and Ollama's own words passed on where it did not take it."""

import shutil

import pytest

from core import ollama_create, other_apps
from core.errors import BadArgument, KnownError
from tests.core import other_app_stores


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return other_app_stores.tiny_gguf(tmp_path_factory.mktemp("made"))


@pytest.fixture
def export_dir(made, tmp_path):
    """A GGUF export's folder: the file and the Modelfile that names it."""
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(made[2], folder / made[2].name)
    (folder / "Modelfile").write_text(f'FROM ./{made[2].name}\nTEMPLATE """{{{{ .Prompt }}}}"""\n')
    return folder


@pytest.mark.parametrize("name,listed", [
    ("pirate", "pirate:latest"), ("pirate:q8_0", "pirate:q8_0"), ("crew/pirate-2.1:v1", "crew/pirate-2.1:v1"),
    ("  _p  ", "_p:latest"),
])
def test_names_ollama_takes_are_listed_with_a_tag(name, listed, ollama_here):
    assert ollama_create.checked_name(name) == listed


@pytest.mark.parametrize("name,words", [
    ("", "'' is empty, over 80 characters"), ("-pirate", "'-pirate' is empty"), ("pi rate", "'pi rate' is empty"),
    ("a/b/c", "Ollama names are MODEL, MODEL:TAG or NAMESPACE/MODEL:TAG"), ("a:b:c", "NAMESPACE/MODEL:TAG"),
    ("my.crew/pirate", "no '.' in a namespace"), ("p" * 81, "over 80 characters"), ("pirate:", "'' is empty"),
])
def test_a_name_ollama_refuses_is_one_sentence(name, words, ollama_here):
    with pytest.raises(BadArgument, match="cannot be an Ollama model's name: ") as said:
        ollama_create.target(name)
    assert words in str(said.value) and "\n" not in str(said.value)


def test_an_export_goes_to_ollama_and_its_name_is_then_taken(export_dir, made, ollama_here):
    to = ollama_create.target("pirate")
    assert to.name == "pirate:latest" and to.program.name == "ollama"
    assert ollama_create.create(export_dir, to) == "ollama run pirate:latest"
    found = other_apps.ollama_model("pirate")  # Ollama's store lists it: the same bytes as the export's file
    assert found.gguf.read_bytes() == made[2].read_bytes() and found.gguf.parent == ollama_here / "blobs"
    with pytest.raises(BadArgument, match="Ollama already has a model named pirate:latest; .*`ollama rm"):
        ollama_create.target("Pirate")  # Ollama's names do not differ by case
    assert ollama_create.target("pirate:v2").name == "pirate:v2"


def test_where_ollama_does_not_take_it_its_words_are_passed_on(export_dir, ollama_here, monkeypatch):
    to = ollama_create.target("pirate")
    monkeypatch.setenv("OLLAMA_DOWN", "1")
    with pytest.raises(KnownError, match=r"Ollama did not take the model \(Error: could not connect to ollama app, is "
                                         r"it running\?\); start Ollama and run `ollama create pirate:latest"):
        ollama_create.create(export_dir, to)
    assert other_apps.ollama_models() == []
    (export_dir / "Modelfile").unlink()
    with pytest.raises(BadArgument, match="has no Modelfile; only a GGUF export"):
        ollama_create.create(export_dir, to)


def test_without_ollama_installed_it_is_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `ollama` on it
    monkeypatch.setattr(ollama_create, "PLACES", (tmp_path / "Ollama.app" / "ollama",))
    with pytest.raises(BadArgument, match="Ollama was not found here .*install it from ollama.com"):
        ollama_create.target("pirate")
