"""Datasets in the Hugging Face cache, named by id (core/data/hub_datasets.py, core/data/source.py): real cache
folders as the hub library lays them out (refs/main → snapshots/<commit>/...), read by the hub library itself."""

from __future__ import annotations

import json

import pytest

from core.data import hub_datasets, load
from core.data import source as data_source
from core.errors import DatasetError
from tests.conftest import DEMO, json_lines

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROWS = [json.loads(line) for line in DEMO.read_text().splitlines()]


def cached(cache, repo: str, files: dict[str, int], card: str = "") -> None:
    """Dataset `repo` in the hub cache at `cache`: each file (jsonl, csv or parquet by its suffix) with that many
    of the demo's chat rows; `card` is the README.md's YAML front matter."""
    folder = cache / f"datasets--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / COMMIT
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    for name, n in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = ROWS[:n]
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), path)
        elif path.suffix == ".csv":
            lines = ["prompt,completion"] + [f'"{r["messages"][0]["content"]}","{r["messages"][1]["content"]}"'
                                             for r in rows]
            path.write_text("\n".join(lines) + "\n")
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (snapshot / "README.md").write_text(f"---\n{card}---\n# A dataset card\n\nSome words.\n")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


CONFIGS = """configs:
- config_name: default
  data_files:
  - split: train
    path: chat/part-*.jsonl
  - split: test
    path: [held/a.jsonl]
- config_name: raw
  data_files: raw/*.csv
"""


@pytest.mark.parametrize("files, card, subset, splits", [
    ({"data.csv": 5}, "", None, {"train": ["data.csv"]}),  # one file, no split in its name: all of it trains
    ({"train.csv": 5, "test.csv": 3, "validation.csv": 2}, "", None,
     {"train": ["train.csv"], "validation": ["validation.csv"], "test": ["test.csv"]}),
    ({"data/train-00000-of-00002.parquet": 4, "data/train-00001-of-00002.parquet": 4,
      "data/test-00000-of-00001.parquet": 2}, "", None,
     {"train": ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"],
      "test": ["data/test-00000-of-00001.parquet"]}),
    ({"dev/part1.jsonl": 2, "training/a.jsonl": 3}, "", None,  # folders named by keywords, aliases included
     {"train": ["training/a.jsonl"], "validation": ["dev/part1.jsonl"]}),
    ({"data/train_sft-00000-of-00001.parquet": 3, "data/test_sft-00000-of-00001.parquet": 2}, "", None,
     {"test_sft": ["data/test_sft-00000-of-00001.parquet"], "train_sft": ["data/train_sft-00000-of-00001.parquet"]}),
    ({"contest.jsonl": 2, "notes/intervals.jsonl": 2}, "", None,  # keywords inside words do not count
     {"train": ["contest.jsonl", "notes/intervals.jsonl"]}),
    ({"train.jsonl": 3, "dataset_infos.json": 0}, "license: mit\n", None, {"train": ["train.jsonl"]}),
    ({"chat/part-0.jsonl": 3, "chat/part-1.jsonl": 3, "held/a.jsonl": 2, "raw/x.csv": 4, "train.jsonl": 1},
     CONFIGS, None, {"train": ["chat/part-0.jsonl", "chat/part-1.jsonl"], "test": ["held/a.jsonl"]}),
    ({"chat/part-0.jsonl": 3, "held/a.jsonl": 2, "raw/x.csv": 4}, CONFIGS, "raw", {"train": ["raw/x.csv"]}),
])
def test_splits_follow_the_hubs_rules(cache, files, card, subset, splits):
    cached(cache, "acme/set", files, card)
    folder = hub_datasets.snapshot("acme/set")
    assert folder is not None and folder.name == COMMIT
    found = hub_datasets.splits(folder, subset, "acme/set")
    assert {s: [f.relative_to(folder).as_posix() for f in fs] for s, fs in found.items()} == splits
    assert list(found) == list(splits)  # train, validation, test first, in that order; other names as the files go


def test_an_id_reads_its_split_and_says_what_is_wrong_in_a_sentence(cache, tmp_path, monkeypatch):
    cached(cache, "acme/pirates", {"data/train-00000-of-00001.parquet": 30, "data/validation-00000-of-00001.parquet":
                                   6})
    cached(cache, "acme/empty", {"other.jsonl": 3}, "configs:\n- config_name: default\n  data_files: nothing/*.jsonl\n")
    ds = load("acme/pirates")
    assert (len(ds.examples), ds.format, ds.summary()["path"]) == (30, "messages", "acme/pirates:train")
    assert ds.examples[0].source == "data/train-00000-of-00001.parquet:row 1"
    assert len(load("acme/pirates:dev").examples) == 6  # the hub's alias for validation
    for text, words in [("acme/pirates:test", "acme/pirates has no split 'test' in the Hugging Face cache; its "
                                              "splits: train, validation. Write it as acme/pirates:SPLIT."),
                        ("acme/pirates/chat", "acme/pirates has no subset 'chat'; its dataset card names none."),
                        ("acme/absent", "no dataset 'acme/absent' in the Hugging Face cache; nothing is downloaded, "
                                        "so fetch it first (huggingface-cli download --repo-type dataset acme/absent)"),
                        ("acme/empty", "acme/empty's train split names no files we read"),
                        ("nope/train.jsonl", "nope/train.jsonl: no such file or folder; check the path.")]:
        with pytest.raises(DatasetError) as caught:
            load(text)
        assert words in str(caught.value), caught.value
    here = tmp_path / "acme" / "pirates"  # a path spelled like an id is the path
    here.mkdir(parents=True)
    (here / "rows.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    monkeypatch.chdir(tmp_path)
    assert len(load("acme/pirates").examples) == 1 and data_source.canonical("acme/pirates") == str(here)
    assert data_source.canonical("acme/elsewhere:test") == "acme/elsewhere:test"


def test_a_run_trains_on_a_cached_dataset_by_its_id_and_validates_on_its_own_split(cli, home, tiny_model_dir,
                                                                                    cache):
    cached(cache, "acme/pirates", {"train.jsonl": 24, "validation.jsonl": 6, "test.jsonl": 12})
    assert data_source.validation_split("acme/pirates") == "acme/pirates:validation"
    assert data_source.validation_split("acme/pirates:test") is None  # only a train split gets its validation
    env = {"HF_HUB_CACHE": str(cache)}
    events = json_lines(cli("train", "--model", tiny_model_dir, "--data", "acme/pirates", "--max-steps", "1",
                            "--json", check=0, env=env).stdout)
    run = json.loads((home / "runs" / events[-1]["run_id"] / "run.json").read_text())
    assert (run["data_path"], run["eval_data"]) == ("acme/pirates", "acme/pirates:validation")
    assert events[-1]["status"] == "done" and any("acme/pirates:validation, the dataset's own validation split (6 "
                                                  "rows)" in r for r in events[0]["plan"]["reasons"])
    said = [e.get("text", "") for e in events]
    assert "Validation on the 6 rows of acme/pirates:validation; every training row trains" in said, said
    assert any(t.startswith("Packed 24 rows") for t in said)  # every train row trains
    assert next(e for e in events if e["event"] == "eval")["step"] == 1


def test_a_folder_that_names_its_splits_trains_on_train_and_keeps_the_others(tmp_path):
    from tests.corpus.make_corpus import arrow

    folder = tmp_path / "qa"
    folder.mkdir()
    for name, n in (("train.jsonl", 5), ("validation.jsonl", 2), ("test.jsonl", 3)):
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in ROWS[:n]))
    ds = load(folder)
    assert (len(ds.examples), ds.summary()["path"]) == (5, f"{folder}:train")
    assert ds.warnings == [f"read the train split (1 of the files); left out: validation, test (read one as "
                           f"{folder}:SPLIT)"]
    assert len(load(f"{folder}:test").examples) == 3 and len(load(f"{folder}:dev").examples) == 2
    assert data_source.validation_split(str(folder)) == f"{folder}:validation"
    assert data_source.canonical(f"{folder}:test") == f"{folder.resolve()}:test"
    with pytest.raises(DatasetError, match=r"qa has no split 'extra'; its splits: train, validation, test\. Write"):
        load(f"{folder}:extra")
    saved = tmp_path / "saved"  # what datasets' DatasetDict.save_to_disk writes
    for split, n in (("train", 4), ("test", 2)):
        (saved / split).mkdir(parents=True)
        arrow(saved / split / "data-00000-of-00001.arrow", ROWS[:n])
        (saved / split / "dataset_info.json").write_text("{}")
        (saved / split / "state.json").write_text("{}")
    (saved / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    ds = load(saved)
    assert (len(ds.examples), ds.problems, ds.examples[0].source) == (4, [], "train/data-00000-of-00001.arrow:row 1")
