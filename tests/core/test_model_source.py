import hashlib
import json
import os
from pathlib import Path

import pytest

from core import model_listing, model_source
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


def test_a_folder_without_its_weights_is_planned_for_and_not_trained(tiny_model_dir, tmp_path):
    """A config and tokenizer fetched alone (a few MB of a model's many GB) are enough to plan with: the ref says
    what training it would need; a folder without its tokenizer cannot count the data's tokens, so not even that."""
    light = tmp_path / "light"
    light.mkdir()
    for f in tiny_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            (light / f.name).write_bytes(f.read_bytes())
    with pytest.raises(IncompleteModel, match="lacks weights"):
        model_source.resolve(str(light), tmp_path)
    ref = model_source.resolve(str(light), tmp_path, plan_only=True)
    assert ref.missing == "the model folder lacks weights (*.safetensors); copy the whole model folder to train it"
    assert model_source.resolve(str(tiny_model_dir), tmp_path, plan_only=True).missing == ""
    (light / "model.bin").write_bytes(b"")
    assert "only in pickle (.bin) files" in model_source.resolve(str(light), tmp_path, plan_only=True).missing
    for f in light.glob("tokenizer*"):
        f.unlink()
    with pytest.raises(IncompleteModel, match="lacks a tokenizer"):
        model_source.resolve(str(light), tmp_path, plan_only=True)


@pytest.mark.parametrize("name,error,words", [
    ("no/such-model", ModelNotFound, "nothing is downloaded"),
    ("no/such-model", ModelNotFound, r"`hf download no/such-model config\.json tokenizer\.json tokenizer_config"),
    ("no-such-model", ModelNotFound, "nothing is downloaded"),
    ("missing.gguf", ModelNotFound, "no such .gguf"),
    ("", ModelNotFound, "No model given"),
])
def test_unknown_models_are_sentences(name, error, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=words):
        model_source.resolve(name, tmp_path / "models")


# -- Listing what is on this machine: a real HF cache layout in tmp_path, nothing downloaded -------------

RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay files out as huggingface_hub does: blobs by content hash, a snapshot of links, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, home) -> Path:
    """A cache with a tiny random Llama saved by transformers, a config-only 70B and a broken entry."""
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, LlamaConfig

    cache = tmp_path / "hf-cache"
    saved = tmp_path / "saved"
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, max_position_embeddings=128, tie_word_embeddings=True)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(saved)
    Tokenizer(models.WordLevel({"[UNK]": 0, "hi": 1}, unk_token="[UNK]")).save(str(saved / "tokenizer.json"))
    cache_repo(cache, "tiny-org/tiny-llama", {f.name: f.read_bytes() for f in saved.iterdir()})
    cache_repo(cache, "meta-llama/Llama-3.1-70B", {"config.json": (RESOURCES / "models" / "llama-3.1-70b.json").read_bytes()})
    (cache / "models--broken--repo").mkdir()  # no snapshots folder: the hub library calls it corrupted
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def by_name(entries) -> dict:
    return {e.name: e for e in entries}


def test_listing_finds_the_default_first_then_the_cache(hf_cache, home):
    found = model_listing.list_models(home / "models")
    assert found[0].name == "default" and found[0].source == "bundled"
    assert found[0].architecture == "llama" and found[0].context == 8192 and 130e6 < found[0].params < 140e6
    assert found[0].note == "converted on first use"  # read from the GGUF header, nothing converted
    entries = by_name(found)
    tiny = entries["tiny-org/tiny-llama"]
    assert (tiny.source, tiny.label, tiny.architecture, tiny.context, tiny.problem) == (
        "HF cache", "tiny-llama", "llama", 128, "")
    assert tiny.params == 64 * 16 + 2 * (16 * 16 + 2 * 16 * 8 + 16 * 16 + 3 * 16 * 32 + 2 * 16) + 16
    assert tiny.size_bytes > 4 * tiny.params  # float32 weights, counted from the blobs
    huge = entries["meta-llama/Llama-3.1-70B"]
    assert huge.problem == "incomplete in the cache: lacks weights (*.safetensors), a tokenizer (tokenizer.json)"
    assert 69e9 < huge.params < 72e9 and huge.config["num_hidden_layers"] == 80
    broken = [e for e in found if e.source == "HF cache" and not e.name]
    assert len(broken) == 1 and "models--broken--repo" in broken[0].problem
    # a listed cache model resolves by the name shown, without a download
    assert model_source.resolve("tiny-org/tiny-llama", home / "models").path == Path(tiny.path)
    with pytest.raises(IncompleteModel, match="lacks a tokenizer.*; fetch it whole with `hf download meta-llama/"):
        model_source.resolve("meta-llama/Llama-3.1-70B", home / "models", plan_only=True)  # (to count tokens)


def test_converted_models_and_folders_are_described(tmp_path, home, hf_cache):
    models = home / "models"
    converted = models / "mymodel-0123456789"
    converted.mkdir()
    (converted / "tuneforge_source.json").write_text(json.dumps({"gguf": "/gone/my.gguf", "label": "My model"}))
    (models / ".half-written.tmp").mkdir()
    found = by_name(model_listing.list_models(models))
    entry = found[str(converted)]
    assert (entry.source, entry.label) == ("converted GGUF", "My model")
    assert entry.problem.startswith("the model folder lacks config.json")
    assert not [name for name in found if ".half-written" in name]
    bad = tmp_path / "bad-config"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert "config.json cannot be read" in model_listing.describe(str(bad), models).problem
    assert model_listing.describe(str(tmp_path / "nowhere"), models).problem.startswith("no longer on this machine")


def test_fit_phrase_from_the_planner(hf_cache, home):
    from app import model_catalog, operations

    listed = {e.model.name: e for e in model_catalog.list_models(hardware_file=str(RESOURCES / "hardware" / "gpu-24gb.json"))}
    tiny, huge = listed["tiny-org/tiny-llama"], listed["meta-llama/Llama-3.1-70B"]
    assert tiny.fit.startswith("fits: LoRA on the GPU, ") and tiny.fit.endswith(" per 1,000 rows")
    assert tiny.level == "good"
    assert huge.fit.startswith("incomplete in the cache: lacks weights") and huge.level == "no"
    assert "; once whole, only with weights streamed from" in huge.fit  # whether fetching the rest is worth it
    # its shape alone still plans: streamed on a 24 GB GPU, too big for a 16 GB laptop without one
    gpu = operations.machine_profile(str(RESOURCES / "hardware" / "gpu-24gb.json"))
    cpu = operations.machine_profile(str(RESOURCES / "hardware" / "cpu-16gb-laptop.json"))
    assert model_catalog.fit_answer(gpu, huge.model.config)[0].startswith("only with weights streamed from")
    phrase, level = model_catalog.fit_answer(cpu, huge.model.config)
    assert phrase.startswith("does not fit this machine: needs about ") and level == "no"
    assert model_catalog.fit_answer(cpu, tiny.model.config)[0].startswith("CPU only: slow, ")
    # on this machine, whatever it has, the tiny model fits one way or the other
    here = {e.model.name: e for e in model_catalog.list_models()}
    assert here["tiny-org/tiny-llama"].level in ("good", "slow")


def test_models_used_before_are_listed_as_recent(hf_cache, home, tmp_path):
    from app import model_catalog, operations

    kept, gone = tmp_path / "kept-model", tmp_path / "gone-model"
    kept.mkdir()
    (kept / "config.json").write_text((RESOURCES / "models" / "llama-3.2-1b.json").read_text())
    with operations.open_history() as db:
        for run_id, model in (("r1", str(gone)), ("r2", str(kept)), ("r3", "default"), ("r4", "tiny-org/tiny-llama")):
            db.create_run(run_id, "p", model=model)
    listed = [e.model for e in model_catalog.list_models(hardware_file=str(RESOURCES / "hardware" / "gpu-24gb.json"))]
    recent = {m.name: m for m in listed if m.source == "recent"}
    assert set(recent) == {str(kept), str(gone)}  # the default and the cache model are listed once, as themselves
    assert 1.1e9 < recent[str(kept)].params < 1.3e9 and "lacks weights" in recent[str(kept)].problem
    assert recent[str(gone)].problem.startswith("no longer on this machine")
