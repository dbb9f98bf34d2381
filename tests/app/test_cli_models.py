"""`tuneforge models` (app/cli_models.py) as the command line runs it, on a real Ollama store built from a GGUF our
exporter wrote."""

import json

from tests.core import other_app_stores


def test_the_models_verb_lists_them_with_what_to_type_and_whether_each_fits(tmp_path, monkeypatch, cli_here):
    """`tuneforge models`: the command line's list of what --model takes here, Ollama's models by their names."""
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    _, _, gguf = other_app_stores.tiny_gguf(tmp_path)
    other_app_stores.ollama_store(tmp_path / "ollama", gguf, [("registry.ollama.ai", "library", "pirate", "latest")])
    listed = json.loads(cli_here("models", "--json", check=0).stdout.strip().splitlines()[-1])
    by_name = {m["name"]: m for m in listed}
    assert listed[0]["name"] == "default" and listed[0]["source"] == "bundled"
    pirate = by_name["ollama:pirate:latest"]
    assert (pirate["source"], pirate["architecture"], pirate["problem"]) == ("Ollama", "llama", "")
    assert pirate["fit"].startswith(("fits", "CPU only")) and pirate["fit_level"] in ("good", "slow")
    said = cli_here("models", check=0).stdout
    assert "ollama:pirate:latest\n    Ollama: " in said and "llama, context 256" in said
    assert said.rstrip().endswith("`plan --model NAME --data FILE` answers for your own.")
