"""Configs explain themselves: help on every field, checks that name the field (STYLE §5)."""

import dataclasses
import json

import pytest

from core import hardware, planner, settings
from core.errors import BadArgument
from core.run_config import RunConfig
from tests.conftest import REPO

REQUIRED = dict(run_id="r", run_dir="/tmp/r", db_path="/tmp/h.sqlite", model_path="/m", data_path="/d")


def test_every_run_setting_has_help():
    for f in dataclasses.fields(RunConfig):
        assert len(f.metadata.get("help", "")) > 10, f"{f.name} has no help"


@pytest.mark.parametrize("field,value,words", [
    ("lr", 5.0, "lr"), ("micro_batch", 0, "micro_batch"), ("train_on", "bots", "train_on"),
    ("seq_len", 4, "seq_len"), ("device", "tpu", "device"),
])
def test_bad_values_name_the_field(field, value, words):
    with pytest.raises(BadArgument, match=words):
        RunConfig(**REQUIRED, **{field: value})


def test_config_round_trips_and_refuses_unknown_keys(tmp_path):
    cfg = RunConfig(**REQUIRED, lr=1e-3)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(settings.to_dict(cfg)))
    assert settings.load_json(RunConfig, path) == cfg
    path.write_text(json.dumps({**settings.to_dict(cfg), "learning_rate": 1}))
    with pytest.raises(BadArgument, match="unknown setting.*learning_rate"):
        settings.load_json(RunConfig, path)
    path.write_text("{\n  oops")
    with pytest.raises(BadArgument, match=r"run.json:2"):
        settings.load_json(RunConfig, path)


def test_run_files_from_before_strategy_settings_still_load(tmp_path):
    """run.json files written before strategies had their own settings kept LoRA's at the top level; their
    runs must still resume, with those values moved where the strategy now reads them."""
    from core import run_config

    old = {**settings.to_dict(RunConfig(**REQUIRED)), "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.1}
    del old["strategy_options"]
    path = tmp_path / "run.json"
    path.write_text(json.dumps(old))
    assert run_config.load(path).strategy_options == {"r": 8, "alpha": 16, "dropout": 0.1}
    path.write_text(json.dumps({**settings.to_dict(RunConfig(**REQUIRED)), "strategy_options": {"rank": 8}}))
    with pytest.raises(BadArgument, match="lora settings: unknown setting.*rank"):
        run_config.load(path)


def test_run_files_from_before_dpo_keep_their_orpo_strength_and_beta_is_checked_for_the_objective(tmp_path):
    """Before DPO and SimPO, every run.json had `orpo_beta` (0.1 in supervised runs too): an ORPO run keeps it as
    `beta`, any other drops it, so both still resume."""
    from core import run_config

    path = tmp_path / "run.json"
    for objective, beta in (("orpo", 0.5), ("sft", None)):
        old = {k: v for k, v in settings.to_dict(RunConfig(**REQUIRED, objective=objective)).items() if k != "beta"}
        path.write_text(json.dumps({**old, "orpo_beta": 0.5}))
        assert run_config.load(path).beta == beta
    with pytest.raises(BadArgument, match="'beta': is a preference objective's strength, and this run is supervised"):
        RunConfig(**REQUIRED, beta=0.5)
    with pytest.raises(BadArgument, match=r"'beta': must be in \[0.01, 20\] for SimPO; 2 is the paper's."):
        RunConfig(**REQUIRED, objective="simpo", beta=30)
    assert RunConfig(**REQUIRED, objective="dpo", beta=0.05).beta == 0.05


@pytest.mark.parametrize("path", sorted((REPO / "resources" / "hardware").glob("*.json")), ids=lambda p: p.name)
def test_shipped_hardware_profiles_load_and_plan(path):
    profile = hardware.load(path)
    assert profile.source.startswith("what-if") and profile.ram_total_bytes > 0
    cfg = json.loads((REPO / "resources" / "models" / "smollm2-135m.json").read_text())
    plan = planner.make_plan(profile, cfg, [200] * 100)
    assert plan.device == ("cuda" if profile.gpus else "cpu") and plan.reasons and plan.fits


@pytest.mark.parametrize("path", sorted((REPO / "resources" / "models").glob("*.json")), ids=lambda p: p.name)
def test_shipped_model_configs_give_a_shape(path):
    from core.model_shape import ModelShape

    shape = ModelShape.from_config(json.loads(path.read_text()))
    assert shape.params > 1e8
