"""The Try-it box's models stay loaded between questions and go when their memory is wanted (app/answerers.py)."""

from __future__ import annotations

import os

import pytest

from app import answerers
from core.progress import Progress


@pytest.fixture(autouse=True)
def nothing_kept():
    answerers.release()
    yield
    answerers.release()


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    """A real LoRA result on the tiny model, saved by peft as a run saves it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("run") / "result"
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(folder)
    return folder


def test_a_model_is_loaded_once_and_kept_for_the_next_question(tiny_model_dir, adapter):
    said = []
    first = answerers.get(tiny_model_dir, progress=Progress(lambda f, text: said.append(text)))
    assert said == ["Loading the model…"] and answerers.kept() == 1
    again = answerers.get(tiny_model_dir, progress=Progress(lambda f, text: said.append(text)))
    assert again[0] is first[0] and said == ["Loading the model…"]  # no second load, and nothing said
    tuned = answerers.get(tiny_model_dir, "lora", adapter)
    assert tuned[0] is not first[0] and answerers.kept() == 2
    assert hasattr(tuned[0], "peft_config") and not hasattr(first[0], "peft_config")
    assert answerers.get(tiny_model_dir, "lora", adapter)[0] is tuned[0]


def test_a_result_saved_again_is_loaded_again(tiny_model_dir, adapter):
    tuned = answerers.get(tiny_model_dir, "lora", adapter)[0]
    weights = adapter / "adapter_model.safetensors"
    later = weights.stat().st_mtime_ns + 10**9
    os.utime(weights, ns=(later, later))  # as a resumed run saves its result anew
    fresh = answerers.get(tiny_model_dir, "lora", adapter)[0]
    assert fresh is not tuned and answerers.kept() == 1  # the old one is let go, not kept beside it


def test_only_the_last_two_are_kept(tiny_model_dir, adapter, default_model_dir):
    base = answerers.get(tiny_model_dir)[0]
    answerers.get(tiny_model_dir, "lora", adapter)
    answerers.get(default_model_dir)
    assert answerers.kept() == answerers.KEEP == 2
    assert answerers.get(tiny_model_dir)[0] is not base  # the oldest went


def test_release_lets_everything_go_even_a_model_still_loading(tiny_model_dir):
    base = answerers.get(tiny_model_dir)[0]
    assert answerers.release() == 1 and answerers.kept() == 0
    # the page closes while a model loads: that load answers its question, and is not kept
    loading = answerers.get(tiny_model_dir, progress=Progress(lambda f, text: answerers.release()))[0]
    assert loading is not base and answerers.kept() == 0


def test_starting_or_exporting_a_run_lets_them_go_first(tiny_model_dir, home, tmp_path):
    """The trainer, or the export, gets the memory: released before anything else, even when it then fails."""
    from app import operations as ops
    from core.errors import KnownError

    answerers.get(tiny_model_dir)
    with pytest.raises(KnownError, match="config file is missing"):
        ops.start_run("no-such-run")
    assert answerers.kept() == 0
    answerers.get(tiny_model_dir)
    with pytest.raises(KnownError, match="No run 'no-such-run'"):
        ops.export_run("no-such-run", "adapter", str(tmp_path / "out"))
    assert answerers.kept() == 0
