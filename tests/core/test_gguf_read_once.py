"""Inside gguf_read_once.parsed_once(), transformers' GGUF loader reads a file once for its config, tokenizer and
weights, and builds gguf's name map once, with the same results as without it; outside, nothing is changed."""

import gguf
import torch

from core import gguf_read_once
from tests.core.gguf_export import tiny

LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)


def test_config_tokenizer_and_weights_come_from_one_reading(tmp_path, monkeypatch):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from core.gguf_export import writer
    from core.progress import Progress

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "tok"))
    model = tiny.random_model("llama", tok, **LLAMA)
    path = writer.write(tiny.plan(model, tok, "f32"), model.state_dict(), tmp_path / "m.gguf", Progress())
    readings, maps = [], []
    real_init, real_map = gguf.GGUFReader.__init__, gguf.get_tensor_name_map
    monkeypatch.setattr(gguf.GGUFReader, "__init__",
                        lambda self, *a, **k: readings.append(a) or real_init(self, *a, **k))
    monkeypatch.setattr(gguf, "get_tensor_name_map", lambda *a: maps.append(a) or real_map(*a))

    def load():
        kw = {"gguf_file": path.name}
        return (AutoConfig.from_pretrained(tmp_path, **kw).to_dict(), AutoTokenizer.from_pretrained(tmp_path, **kw),
                AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32, **kw).state_dict())

    plain = load()
    assert len(readings) >= 3 and len(maps) > 3  # what transformers does on its own
    readings.clear(), maps.clear()
    with gguf_read_once.parsed_once():
        once = load()
        again = load()  # (a config asked for twice gets its own copy each time)
        assert once[0] is not again[0] and once[0] == again[0]
    assert len(readings) == 1 and len(maps) == 1
    assert once[0] == plain[0]
    sample = "<|im_start|>user\nWhere be the treasure?<|im_end|>\n"
    assert once[1](sample)["input_ids"] == plain[1](sample)["input_ids"]
    assert once[2].keys() == plain[2].keys() and all(torch.equal(once[2][k], plain[2][k]) for k in plain[2])
    # and afterwards everything is as it was
    readings.clear()
    load()
    assert len(readings) >= 3
