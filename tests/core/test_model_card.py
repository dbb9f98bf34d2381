"""The model card every export carries (core/model_card.py), and what it reads of where a run came from
(core/lineage.py): a base model's Hub id and licence from the Hugging Face cache, a GGUF's header or the bundled
model, never a path on this machine; the GGUF file's own base-model, licence and dataset keys."""

from __future__ import annotations

import json
import math

import gguf
import pytest

from core import export, lineage, model_card
from core.gguf_export import reader
from core.progress import Progress
from tests.core.gguf_export import tiny

HUB = "https://huggingface.co/"


def header_only(path, **metadata):
    """A GGUF file holding metadata alone (dots in the keys written as __)."""
    w = gguf.GGUFWriter(str(path), "llama")
    for key, value in metadata.items():
        (w.add_uint32 if isinstance(value, int) else w.add_string)(key.replace("__", "."), value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    return path


def converted(tmp_path, name, label, file_name=None, **metadata):
    """A folder converted from a GGUF (its tuneforge_source.json naming the file), the file's header `metadata`."""
    folder = tmp_path / name
    folder.mkdir()
    file = header_only(tmp_path / (file_name or f"{name}.gguf"), **metadata) if metadata else tmp_path / "gone.gguf"
    (folder / "tuneforge_source.json").write_text(json.dumps({"gguf": str(file), "label": label, "converter": 3}))
    return "some.gguf", folder


def hub_cached(tmp_path, repo, card):
    folder = tmp_path / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots" / "0123abc"
    folder.mkdir(parents=True)
    if card:
        (folder / "README.md").write_text(card)
    return repo, folder


def plain(tmp_path, card):
    folder = tmp_path / "my-model"
    folder.mkdir()
    if card:
        (folder / "README.md").write_text(card)
    return str(folder), folder


# case → (what builds (model as typed, its folder), the name, Hub id and licence read, and the GGUF weights trained on)
BASES = {
    "the bundled model": (lambda t: ("default", t), ("SmolLM2-135M-Instruct", lineage.DEFAULT_REPO, "apache-2.0",
                                                     "SmolLM2-135M-Instruct.Q4_1.gguf (Q4_1), de-quantized")),
    "a model in the hub cache, its card's licence": (
        lambda t: hub_cached(t, "acme/tiny-chat", "---\nlicense: mit\nlanguage: [en, fr]\ntags: [x]\n---\n# Tiny\n"),
        ("tiny-chat", "acme/tiny-chat", "mit", "")),
    "a cached model without a card": (lambda t: hub_cached(t, "acme/bare", ""), ("bare", "acme/bare", "", "")),
    "a GGUF whose header names its repository": (
        lambda t: converted(t, "thing", "Thing-1B", general__source__repo_url=f"{HUB}acme/thing-1b",
                            general__license="llama3.2"), ("Thing-1B", "acme/thing-1b", "llama3.2", "thing.gguf")),
    "a GGUF naming it under the older key": (
        lambda t: converted(t, "old", "Old", general__source__huggingface__repository="acme/older"),
        ("Old", "acme/older", "", "old.gguf")),
    "a GGUF whose address is a dataset's, not a model's": (
        lambda t: converted(t, "odd", "Odd", general__url=f"{HUB}datasets/acme/set"), ("Odd", "", "", "odd.gguf")),
    "a blob of Ollama's, by the model's name": (
        lambda t: converted(t, "ollama-llama3.2-1b", "llama3.2:1b", "sha256-0a1b2c", general__file_type=15,
                            general__license="llama3.2"),
        ("llama3.2:1b", "", "llama3.2", "Ollama's llama3.2:1b (Q4_K_M), de-quantized")),
    "a converted folder whose GGUF is gone": (lambda t: converted(t, "gone", "Gone-7B"), ("Gone-7B", "", "", "gone.gguf")),
    "a folder of its own, licence on its card": (lambda t: plain(t, "---\nlicense: other\n---\n"),
                                                 ("my-model", "", "other", "")),
    "a folder whose card cannot be parsed": (lambda t: plain(t, "---\nlicense: [unclosed\n---\n"),
                                             ("my-model", "", "", "")),
}


LANGUAGES = {"the bundled model": ("en",), "a model in the hub cache, its card's licence": ("en", "fr")}


@pytest.mark.parametrize("case", BASES)
def test_a_base_model_s_name_id_and_licence_are_read_where_it_came_from(tmp_path, case):
    build, expected = BASES[case]
    model, folder = build(tmp_path)
    found = lineage.base_model(model, folder)
    assert (found.name, found.repo, found.license, found.weights) == expected
    assert found.languages == LANGUAGES.get(case, ())  # as its card or header states them
    repo = expected[1]
    assert found.url == (f"{HUB}{repo}" if repo else "")


@pytest.mark.parametrize("data, name, repo", [
    ("/home/someone/private/pirates.jsonl", "pirates.jsonl", ""),  # a file: its name alone, never the path
    ("/cache/hub/datasets--acme--chats/snapshots/abc/data/train.parquet", "acme/chats", "acme/chats"),
    ("acme/chats/subset:test", "acme/chats", "acme/chats"),  # as typed, a hub id not on disk
    ("", "", ""),
])
def test_a_dataset_is_named_by_its_hub_id_or_its_file_name(data, name, repo):
    found = lineage.dataset(data)
    assert (found.name, found.repo) == (name, repo)


FORMATS = {  # format → (library_name, base_model_relation) of its card's front matter
    "adapter": ("peft", "adapter"), "safetensors": ("transformers", "finetune"), "gguf": (None, "finetune")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA run on a tiny random Llama whose base folder states an MIT licence, as the history holds it."""
    from transformers import AutoTokenizer

    tmp = tmp_path_factory.mktemp("card")
    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp / "base"))
    model = tiny.random_model("llama", tok, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2)
    model.save_pretrained(tmp / "base")
    (tmp / "base" / "README.md").write_text("---\nlicense: mit\n---\n# A base\n")
    run = tiny.adapter_run(model, tmp, tmp / "base", ["q_proj", "v_proj"], run_id="20261208-0000-card")
    run |= {"model": str(tmp / "base"), "data_path": str(tmp / "private" / "pirates.jsonl"), "steps_done": 2}
    story = model_card.Story(train=[(1, 3.25), (2, 2.5)], validation=[(1, 3.1), (2, 2.75)], rows=202,
                             data_format="messages",
                             evaluations=[{"data": str(tmp / "private" / "held.jsonl"), "rows": 12, "tokens": 300,
                                           "base_loss": 3.8, "tuned_loss": 3.1, "weights": "last", "step": 2},
                                          {"data": "older.jsonl", "rows": 5, "tokens": 50, "base_loss": 3.0,
                                           "tuned_loss": 2.9, "weights": "best", "step": 1}])
    return tmp, run, story


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_export_carries_a_card_that_lists_its_files_and_tells_its_training(trained, fmt):
    tmp, run, story = trained
    out = export.export(run, fmt, tmp / f"out-{fmt}", "q8_0" if fmt == "gguf" else None, Progress(), story=story)
    text = (out / model_card.CARD).read_text(encoding="utf-8")
    meta = lineage.front_matter(out / model_card.CARD)
    assert meta.get("library_name") == FORMATS[fmt][0] and meta["license"] == "mit"
    assert "base_model" not in meta and "base_model_relation" not in meta  # a local base has no Hub id to name
    assert {"tuneforge", "lora"} <= set(meta["tags"]) and ("gguf" in meta["tags"]) == (fmt == "gguf")
    assert text.count(f"# out-{fmt}\n") == 1  # the folder's final name, not the temporary one it was written in
    assert str(tmp) not in text and "More Information Needed" not in text  # no path; not peft's template
    listed = {f.name for f in out.iterdir()} - {model_card.CARD}
    assert listed and all(f"| `{name}` |" in text for name in listed)
    assert "pirates.jsonl: 202 rows, messages" in text and "licence (mit) applies" in text
    assert "Training loss: 3.2500 at step 1, 2.5000 at step 2." in text
    assert "lowest 2.7500 at step 2, of 2 checks" in text
    assert f"held.jsonl (12 rows it did not train on, 300 answer tokens): loss 3.8000 with the base model, 3.1000 " \
           f"tuned, the expected answers {math.exp(0.7):.2f}× as likely per token." in text
    assert "older.jsonl" in text and "(measured on the weights of step 1, not these)" in text
    assert model_card.said(out).startswith(f"Model card: {out / model_card.CARD} says")


def test_a_gguf_and_its_lora_file_name_the_base_licence_and_dataset_in_their_headers(trained):
    tmp, run, story = trained
    out = export.export(run, "gguf", tmp / "keys", "f16", Progress(), story=story)
    file = next(p for p in out.glob("*.f16.gguf"))
    meta = reader.read(file, stop_at="tokenizer.ggml.model").metadata  # ahead of the vocabulary
    assert meta["general.base_model.count"] == 1 and meta["general.base_model.0.name"] == "base"
    assert "general.base_model.0.repo_url" not in meta  # nothing read, nothing said
    assert meta["general.license"] == "mit" and meta["general.dataset.0.name"] == "pirates.jsonl"
    assert meta["general.tags"] == ["tuneforge", "lora"]
    lora = reader.read(next(out.glob("*.lora.gguf"))).metadata  # the LoRA file names the base it goes on too
    assert lora["general.type"] == "adapter" and lora["general.base_model.0.name"] == "base"
    report = json.loads((out / "export.json").read_text(encoding="utf-8"))
    assert report["verification"]["ok"]  # the keys were read back with the rest of the metadata
    card = (out / model_card.CARD).read_text(encoding="utf-8")
    assert f"llama-server -m {file.name} --jinja" in card and report["verification"]["summary"] in card


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_hub_base_is_named_as_the_hub_knows_it(tmp_path, fmt):
    """A run on a model from the Hugging Face cache: the card's base_model is its id, linked, never the path, and
    the Hub is told how the export relates to it."""
    repo, folder = hub_cached(tmp_path, "acme/tiny-chat", "---\nlicense: apache-2.0\n---\n")
    run = {"id": "r1", "model": repo, "model_path": str(folder), "strategy": "qlora", "data_path": "acme/chats:train",
           "run_dir": str(tmp_path / "run"), "config": {"train_on": "last", "tools": [{"name": "add"}],
                                                        "continues": {"run": "r0", "step": 60, "weights": "best"}}}
    (tmp_path / "out").mkdir()
    text = model_card.text(tmp_path / "out", "my-tune", run, fmt, model_card.Story(), {})
    card = tmp_path / "out" / "README.md"
    card.write_text(text)
    meta = lineage.front_matter(card)
    assert meta["base_model"] == repo and meta["datasets"] == ["acme/chats"]
    assert (meta.get("library_name"), meta["base_model_relation"]) == FORMATS[fmt]
    assert f"[tiny-chat]({HUB}{repo})" in text and str(tmp_path) not in text and "QLoRA" in text
    # an adapter loads on its base, named as the Hub knows it; a merged model loads on its own
    assert (f'AutoModelForCausalLM.from_pretrained("{repo}")' in text) == (fmt == "adapter")
    assert "| Started from | the weights of run r0 at step 60 (its lowest validation loss) |" in text
    assert "| Learned | each conversation's last answer; to call the tools its rows offer |" in text
    old = model_card.text(tmp_path / "out", "my-tune", run | {"plan": {"strategy": "qlora"}}, fmt, model_card.Story(),
                          {})  # an older Tuneforge's plan, lacking fields: the card leaves its rows out
    assert "| Method | QLoRA: " in old and "| Steps |" not in old
    whole = model_card.text(tmp_path / "out", "my-tune", run | {"strategy": "full"}, fmt, model_card.Story(), {})
    assert ("the adapter is merged in" in text, "the adapter is merged in" in whole) == (fmt == "safetensors", False)


def test_a_preference_run_s_card_says_the_share_it_prefers_rightly_as_the_history_holds_it(tmp_path):
    from core import history
    from tests.app.history_runs import FIRST, make_two_runs

    make_two_runs(tmp_path)
    with history.History(tmp_path / "history.sqlite") as db:
        db.add_metric(FIRST, 6, "eval", 1.9, prefers=0.92)  # a KTO run's last check: answers rated right
        run = db.run(FIRST) | {"plan": {"strategy": "lora", "objective": "kto"}}
        story = model_card.gather(db, run)
    assert story.preferred == [(6, 0.92)] and story.rows == 202 and story.data_format == "messages"
    assert [s for s, _ in story.train] == [1, 2, 3, 4, 5, 6] and story.validation[-1] == (6, 1.9)
    lines = model_card.measured(run, story)
    assert "- Rated right: 92% of the validation answers at step 6." in lines


def test_a_run_without_a_result_yet_says_so_instead_of_naming_its_weights(tmp_path):
    from core import results

    run = {"id": "r2", "run_dir": str(tmp_path / "run"), "steps_done": 3, "model_path": str(tmp_path)}
    lines = model_card.measured(results.pick(run), model_card.Story(train=[(1, 2.0), (3, 1.5)]))
    assert lines == ["- Training loss: 2.0000 at step 1, 1.5000 at step 3.",
                     "- No trained weights yet: let the run finish, or resume it."]
    (tmp_path / "run" / "result").mkdir(parents=True)
    assert model_card.measured(results.pick(run), model_card.Story())[-1] == \
        "- These weights: the weights of the last step (step 3)."
