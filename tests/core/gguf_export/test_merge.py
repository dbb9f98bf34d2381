"""Merging a run's adapter: a QLoRA adapter goes into the nf4-rounded base on request (on a tiny Llama)."""

import torch

from core.gguf_export import merge
from tests.core.gguf_export import tiny


def test_a_qlora_run_can_merge_into_the_nf4_base_it_trained_on(tmp_path):
    from bitsandbytes import functional as bnb
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.byte_level(tmp_path / "base"))
    base = tiny.random_model("llama", tok, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2)
    base.save_pretrained(tmp_path / "base")
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    peft.save_pretrained(tmp_path / "run" / "result")
    run = {"id": "q1", "run_dir": str(tmp_path / "run"), "model_path": str(tmp_path / "base"), "strategy": "qlora",
           "status": "done"}

    merged, why = merge.merged_model(run, nf4_base=True)
    assert "rounded to nf4 as QLoRA training saw it" in why
    layer = peft.base_model.model.model.layers[1].self_attn.q_proj
    w = layer.base_layer.weight.detach()
    codes, state = bnb.quantize_4bit(w, quant_type="nf4", compress_statistics=True)
    update = (8 / 4) * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    expected = bnb.dequantize_4bit(codes, state) + update
    torch.testing.assert_close(merged.model.layers[1].self_attn.q_proj.weight, expected.detach())
    plain, _ = merge.merged_model(run)
    torch.testing.assert_close(plain.model.layers[1].self_attn.q_proj.weight, (w + update).detach())
