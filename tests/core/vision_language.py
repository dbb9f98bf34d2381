"""A tiny random Qwen 3.5 saved as its releases are: a vision-language checkpoint (Qwen3_5ForConditionalGeneration),
the language model under `model.language_model.`, a vision tower beside it. transformers' causal-LM class trains
its language model by other names (`model.layers.N...`), so everything that reads the checkpoint by the model's
names (merged and GGUF export, weight streaming) is tested against one."""

from __future__ import annotations

from pathlib import Path


def qwen3_5(folder: Path, vocab: int = 1000, layers: int = 4) -> Path:
    """Three Gated DeltaNet layers to one of full attention (Qwen 3.5's pattern), 64 wide, tied embeddings; values 64
    wide too, the least bitsandbytes' 4-bit CPU kernel takes as a layer's input; heads 32 wide, roped over 8, which
    Qwen 3.5's rope sections (11, 11, 10) cover as llama.cpp needs."""
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    torch.manual_seed(0)
    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=32, linear_key_head_dim=16,
                linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, max_position_embeddings=128,
                tie_word_embeddings=True)
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
    config = Qwen3_5Config(text_config=text, vision_config=vision, tie_word_embeddings=True)
    Qwen3_5ForConditionalGeneration(config).save_pretrained(folder)
    return Path(folder)


def gemma3(folder: Path, vocab: int = 1000, layers: int = 6) -> Path:
    """Gemma 3 from 4B up, as released: a vision-language checkpoint saved in llava's layout (`language_model.model.`,
    `vision_tower.`), which transformers loads whole (Gemma3ForConditionalGeneration) as `model.language_model.`.
    Heads 256 wide, as llama.cpp's attention scale for Gemma 3 needs; a local layer in six."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    torch.manual_seed(0)
    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=256, query_pre_attn_scalar=256,
                sliding_window=64, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                  patch_size=14)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=1, boi_token_index=3,
                          eoi_token_index=4, image_token_index=5)
    Gemma3ForConditionalGeneration(config).save_pretrained(folder)
    return Path(folder)


def mistral3(folder: Path, vocab: int = 1000, layers: int = 2) -> Path:
    """Mistral Small 3.1 and Ministral 3, as released: a Mistral language model and a Pixtral tower in llava's layout
    (`language_model.model.`), a model AutoModelForCausalLM refuses (core/causal_lm.py loads its language model);
    the head tied, as small ones have it, so it is not in the checkpoint."""
    import torch
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    torch.manual_seed(0)
    text = dict(model_type="mistral", vocab_size=vocab, hidden_size=64, intermediate_size=128,
                num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                sliding_window=None)
    vision = dict(model_type="pixtral", hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, image_size=28, patch_size=14, head_dim=16)
    config = Mistral3Config(text_config=text, vision_config=vision, image_token_index=5, tie_word_embeddings=True)
    Mistral3ForConditionalGeneration(config).save_pretrained(folder)
    return Path(folder)


def gemma4(folder: Path, vocab: int = 1000, layers: int = 4) -> Path:
    """Gemma 4 as released (E2B, E4B): a vision-language checkpoint under `model.language_model.`, loaded whole, with
    per-layer input embeddings; sliding layers with heads 16 wide, the last layer full with heads 32 wide."""
    import torch
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    torch.manual_seed(0)
    text = dict(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, global_head_dim=32,
                vocab_size_per_layer_input=vocab, hidden_size_per_layer_input=16, sliding_window=32,
                num_kv_shared_layers=0, pad_token_id=0)
    vision = dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=2,
                  num_key_value_heads=2, head_dim=16)
    config = Gemma4Config(text_config=text, vision_config=vision, audio_config=None)
    Gemma4ForConditionalGeneration(config).save_pretrained(folder)
    return Path(folder)
