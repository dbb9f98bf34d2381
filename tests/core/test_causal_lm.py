"""Loading a model folder as the causal LM we train (core/causal_lm.py): what AutoModelForCausalLM takes, as it
takes it; a llava-layout model it refuses (Mistral Small 3.1, Ministral 3) as its language model, every weight the
checkpoint's own, and a folder that lacks one refused in a sentence rather than left random."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from core import causal_lm
from core.errors import KnownError
from tests.core import vision_language


@pytest.mark.parametrize("build,loaded", [(vision_language.qwen3_5, "Qwen3_5ForCausalLM"),
                                          (vision_language.gemma3, "Gemma3ForConditionalGeneration"),
                                          (vision_language.mistral3, "MistralForCausalLM")])
def test_each_layout_loads_as_the_model_it_trains(tmp_path, build, loaded):
    model = causal_lm.from_pretrained(build(tmp_path / "m"), dtype=torch.float32)
    assert type(model).__name__ == loaded


def test_a_llava_layout_model_loads_its_language_model_with_the_checkpoint_s_weights(tmp_path):
    folder = vision_language.mistral3(tmp_path / "m")
    stored = load_file(str(folder / "model.safetensors"))
    model = causal_lm.from_pretrained(folder, dtype=torch.float32)
    state = model.state_dict()
    assert state and all(torch.equal(v, stored["language_model." + n])
                         for n, v in state.items() if n != "lm_head.weight")
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied as the whole model is


def test_a_language_model_missing_a_weight_is_refused_in_a_sentence(tmp_path):
    folder = vision_language.mistral3(tmp_path / "m")
    stored = load_file(str(folder / "model.safetensors"))
    del stored["language_model.model.layers.1.mlp.up_proj.weight"]
    save_file(stored, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(KnownError, match="lacks model.layers.1.mlp.up_proj.weight"):
        causal_lm.from_pretrained(folder, dtype=torch.float32)


def test_lisa_and_offload_find_the_language_model_s_layers(tmp_path):
    """In a vision-language model that loads whole (Gemma 3 from 4B), the decoder's layers are counted by the text
    config (the whole model's has no layer count: LISA and offload crashed) and taken from the language model, even
    beside a tower with as many layers."""
    from core.strategies.lisa import decoder_layers
    from tests.core.test_offload_stream import session
    from tests.core.test_strategies import examples, run_steps

    model = causal_lm.from_pretrained(vision_language.gemma3(tmp_path / "m", layers=1), dtype=torch.float32)
    assert len(model.model.vision_tower.encoder.layers) == 1  # as long as the language model's
    assert decoder_layers(model) is model.model.language_model.layers
    run = session(tmp_path, tmp_path / "m", "lisa", {"layers": 1, "interval": 1}, "lisa")
    assert len(run_steps(run, examples(vocab=1000), 1)) == 1
