"""Load a base model or a trained run for inference, and answer one prompt through the chat template."""

from __future__ import annotations

import threading
from pathlib import Path

from core import strategies
from core.data.tokenize import render_chat
from core.errors import KnownError

# transformers builds a model on the meta device by patching torch globally, so two loads at once (the UI asks
# the base and the tuned model side by side) corrupt each other; answering at once is fine.
_loading = threading.Lock()


def load(model_path: str | Path, strategy: str | None = None, result: str | Path | None = None):
    """(model, tokenizer) on the CPU in fp32 (or CUDA when present), with a run's result applied."""
    import torch
    from transformers import AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    with _loading:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        return trained_model(model_path, strategy, result, dtype).to(device).eval(), tokenizer


def trained_model(model_path: str | Path, strategy: str | None, result: str | Path | None, dtype):
    """The base with a run's result applied (an adapter on top), or the saved model itself when the
    strategy saved the whole model (full, LISA: no base needed); the plain base without a result."""
    from transformers import AutoModelForCausalLM

    if result is not None and not Path(result).is_dir():
        raise KnownError(f"{result}: the run has no saved result yet; let it finish or stop it to save one.")
    s = strategies.get(strategy or "lora") if result is not None else None
    model = AutoModelForCausalLM.from_pretrained(str(result if s and s.result == "model" else model_path), dtype=dtype)
    return s.load(model, result) if s and s.result == "adapter" else model


def reply(model, tokenizer, prompt: str, system: str | None = None, max_new_tokens: int = 128,
          temperature: float = 0.0) -> str:
    """One answer; greedy unless a temperature is given."""
    import torch

    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    text = render_chat(tokenizer, messages, add_generation_prompt=True)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    sample = temperature > 0
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sample, use_cache=True,
                             temperature=temperature if sample else None, top_p=None, top_k=None,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
