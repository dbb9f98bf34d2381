"""Models Ollama and LM Studio keep (core/other_apps.py), in their real layouts built here from a GGUF our exporter
wrote: listed with their names and shapes, tuned by name (`ollama:NAME`) or by path, converted as any GGUF is."""

import shutil

import numpy as np
import pytest

from core import model_listing, model_source, other_apps
from core.errors import IncompleteModel, ModelNotFound
from tests.core import other_app_stores


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return other_app_stores.tiny_gguf(tmp_path_factory.mktemp("made"))


def test_a_model_ollama_keeps_is_listed_and_tuned_by_its_name(made, tmp_path, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    model, tokenizer, gguf = made
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no LM Studio here
    blob = other_app_stores.ollama_store(tmp_path / "ollama", gguf, [
        ("registry.ollama.ai", "library", "pirate", "latest"), ("registry.ollama.ai", "crew", "pirate", "7b"),
        ("hf.co", "someone", "pirate-GGUF", "Q8_0")])
    names = [f.label for f in other_apps.ollama_models()]
    assert names == ["hf.co/someone/pirate-GGUF:Q8_0", "crew/pirate:7b", "pirate:latest"]
    listed = {e.name: e for e in model_listing.list_models(tmp_path / "models") if e.source == "Ollama"}
    entry = listed["ollama:pirate:latest"]
    assert (entry.label, entry.path, entry.size_bytes, entry.architecture, entry.problem) == (
        "pirate:latest", str(blob), gguf.stat().st_size, "llama", "")
    assert entry.params == sum(p.numel() for p in model.parameters())

    ref = model_source.resolve("ollama:pirate", tmp_path / "models")  # :latest where no tag is given
    assert ref.label == "pirate:latest" and ref.path.name.startswith("ollama-pirate-latest-")
    loaded = AutoModelForCausalLM.from_pretrained(str(ref.path), dtype=torch.float32).eval()
    ids = torch.tensor([tokenizer("Where is the gold, matey?")["input_ids"]])
    with torch.no_grad():  # q8_0: near the model, not equal
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), atol=0.05)
    # converted once: listed as that folder now, not again as Ollama's
    after = model_listing.list_models(tmp_path / "models")
    assert "ollama:pirate:latest" not in {e.name for e in after if e.source == "Ollama"}
    assert any(e.label == "pirate:latest" and e.source == "converted GGUF" for e in after)
    # its blob by path works too: a GGUF is known by its first bytes, not its name
    assert model_source.resolve(str(blob), tmp_path / "models2").path.is_dir()


def test_a_name_ollama_does_not_have_is_one_sentence_naming_those_it_has(made, tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    other_app_stores.ollama_store(tmp_path / "ollama", made[2], [("registry.ollama.ai", "library", "pirate", "latest")])
    with pytest.raises(ModelNotFound, match=r"^Ollama has no model 'parrot:latest' on this machine \(it has "
                                            r"pirate:latest\); pull it with `ollama pull parrot:latest` or give"):
        model_source.resolve("ollama:parrot", tmp_path / "models")
    entry = model_listing.describe("ollama:parrot", tmp_path / "models")
    assert entry.source == "missing" and entry.problem.startswith("Ollama has no model 'parrot:latest'")
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotFound, match="no Ollama store was found here; set OLLAMA_MODELS to its folder"):
        model_source.resolve("ollama:pirate", tmp_path / "models")


def test_a_model_with_an_adapter_on_it_is_listed_with_why_and_not_tuned_without_it(made, tmp_path, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    other_app_stores.ollama_store(tmp_path / "ollama", made[2], [("registry.ollama.ai", "library", "parrot", "latest")],
                                  adapter=True)
    entry = model_listing.describe("ollama:parrot", tmp_path / "models")
    assert entry.source == "Ollama"
    assert entry.problem.startswith("Ollama's parrot:latest is a model with a LoRA adapter")
    with pytest.raises(IncompleteModel, match="which tuning its GGUF alone would leave out; tune its base model"):
        model_source.resolve("ollama:parrot", tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_lm_studio_s_models_are_listed_without_projectors_or_later_parts(made, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))
    folder = tmp_path / ".lmstudio" / "models" / "someone" / "Pirate-GGUF"
    folder.mkdir(parents=True)
    shutil.copy(made[2], folder / "Pirate-Q8_0.gguf")
    shutil.copy(made[2], folder / "mmproj-Pirate-F16.gguf")  # a vision projector: not a language model
    for part in (1, 2):
        shutil.copy(made[2], folder / f"Big-Pirate-0000{part}-of-00002.gguf")
    found = other_apps.lmstudio_models()
    assert [(f.label, f.source) for f in found] == [("Big-Pirate", "LM Studio"), ("Pirate-Q8_0", "LM Studio")]
    listed = [e for e in model_listing.list_models(tmp_path / "models") if e.source == "LM Studio"]
    assert [e.name for e in listed] == [str(folder / name) for name in ("Big-Pirate-00001-of-00002.gguf",
                                                                        "Pirate-Q8_0.gguf")]
    assert all(e.architecture == "llama" and not e.problem for e in listed)



def test_an_export_is_put_where_lm_studio_lists_it(made, tmp_path, monkeypatch):
    """`export --lmstudio`: the GGUF goes under LM Studio's models folder as `tuneforge/<name>/<file>`, a hard link on
    the same drive (no second copy of a model of many GB), and LM Studio's list shows it; where LM Studio is not here,
    or already has that name, one sentence comes before any export is made."""
    from core.errors import BadArgument

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "no-ollama"))
    exported = tmp_path / "exports" / "pirate"
    exported.mkdir(parents=True)
    shutil.copy(made[2], exported / "pirate.q8_0.gguf")
    with pytest.raises(BadArgument, match="LM Studio was not found here"):
        other_apps.lmstudio_folder("pirate")
    (tmp_path / ".lmstudio").mkdir()
    placed = other_apps.add_to_lmstudio(exported / "pirate.q8_0.gguf", other_apps.lmstudio_folder("pirate"))
    assert placed == tmp_path / ".lmstudio" / "models" / "tuneforge" / "pirate" / "pirate.q8_0.gguf"
    assert placed.stat().st_ino == (exported / "pirate.q8_0.gguf").stat().st_ino  # the same file, not a copy
    assert [(f.gguf, f.source) for f in other_apps.lmstudio_models()] == [(placed, "LM Studio")]
    assert sorted(p.name for p in placed.parent.iterdir()) == ["pirate.q8_0.gguf"]  # a text model: the file alone
    with pytest.raises(BadArgument, match="already has a model at"):
        other_apps.lmstudio_folder("pirate")


def test_on_another_drive_the_export_is_copied_whole(made, tmp_path, monkeypatch):
    def no_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".lmstudio").mkdir()
    monkeypatch.setattr(other_apps.os, "link", no_links)
    placed = other_apps.add_to_lmstudio(made[2], other_apps.lmstudio_folder("pirate"))
    assert placed.read_bytes() == made[2].read_bytes() and placed.stat().st_ino != made[2].stat().st_ino
    assert [p.name for p in placed.parent.iterdir()] == [made[2].name]  # no temporary file left beside it


def test_a_vision_projector_exported_beside_the_model_goes_with_it_to_lm_studio(made, tmp_path, monkeypatch):
    """LM Studio pairs a model with the mmproj-*.gguf in its folder: a vision-language export's projector goes
    there too, or the model LM Studio lists would be blind."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".lmstudio").mkdir()
    exported = tmp_path / "exports" / "seer"
    exported.mkdir(parents=True)
    shutil.copy(made[2], exported / "seer.q8_0.gguf")
    (exported / "mmproj-seer.f16.gguf").write_bytes(b"GGUF projector")
    placed = other_apps.add_to_lmstudio(exported / "seer.q8_0.gguf", other_apps.lmstudio_folder("seer"))
    assert sorted(p.name for p in placed.parent.iterdir()) == ["mmproj-seer.f16.gguf", "seer.q8_0.gguf"]
    assert (placed.parent / "mmproj-seer.f16.gguf").read_bytes() == b"GGUF projector"
    assert [f.gguf for f in other_apps.lmstudio_models()] == [placed]  # listed once: the projector is no model


def test_lm_studio_s_models_folder_is_where_its_settings_put_it(made, tmp_path, monkeypatch):
    """A person may move LM Studio's models to another drive (`downloadsFolder` in the settings of its home, the
    home itself named by ~/.lmstudio-home-pointer where an install found an older one): its models are listed from
    there, and an export goes there, where LM Studio will list it."""
    import json

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    elsewhere, home = tmp_path / "big-drive" / "llms", tmp_path / "portable" / "lm-studio"
    (elsewhere / "someone" / "Pirate-GGUF").mkdir(parents=True)
    shutil.copy(made[2], elsewhere / "someone" / "Pirate-GGUF" / "pirate.q8_0.gguf")
    home.mkdir(parents=True)
    (home / "settings.json").write_text(json.dumps({"downloadsFolder": str(elsewhere), "theme": "dark"}))
    assert other_apps.lmstudio_models() == []  # the settings of a home LM Studio is not pointed at are not read
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / ".lmstudio-home-pointer").write_text(f"{home}\n")
    assert other_apps.lmstudio_roots()[:2] == [elsewhere, home / "models"]
    assert [f.gguf for f in other_apps.lmstudio_models()] == [elsewhere / "someone" / "Pirate-GGUF" / made[2].name]
    assert other_apps.lmstudio_folder("pirate") == elsewhere / "tuneforge" / "pirate"
    (home / "settings.json").write_text("{not json")  # a settings file being written: the home's own folder
    assert other_apps.lmstudio_roots()[0] == home / "models"
    (tmp_path / "home" / ".lmstudio").mkdir()  # the usual home, with the setting there
    (tmp_path / "home" / ".lmstudio" / "settings.json").write_text(json.dumps({"downloadsFolder": str(elsewhere)}))
    (tmp_path / "home" / ".lmstudio-home-pointer").unlink()
    assert other_apps.lmstudio_roots()[0] == elsewhere
