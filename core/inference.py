"""Load a base model or a trained run for inference, and answer one prompt through the chat template.

A model whose weights do not fit the GPU in 16 bits is loaded over a 4-bit base where that fits, as QLoRA trains
(`four_bit_model`: Qwen3-30B-A3B, 61 GB in 16 bits, takes 17 with its experts in 4 bits too, and answers at the
GPU's speed on a 24 GB card). One that fits neither way (a 70B trained with offload on a 24 GB card) still
answers: its decoder layers go to RAM (or NVMe) and stream to the GPU one at a time, as in training
(core/offload/install.py). Every token then brings every layer across PCIe, so it is slow, but the
person can try what they trained on the machine they trained it on.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from core import strategies
from core.data import tool_render
from core.data.tokenize import render_chat
from core.errors import KnownError

# transformers builds a model on the meta device by patching torch globally, so two loads at once (the UI asks
# the base and the tuned model side by side) corrupt each other; answering at once is fine.
_loading = threading.Lock()
# Sampling (a temperature above 0) keeps the TOP_K most likely tokens, then the most likely ones that make up TOP_P
# of the probability: Ollama's defaults, so a sampled answer here is drawn as one from the exported GGUF would be.
TOP_K, TOP_P = 40, 0.9
ROOM = 2 << 30  # beside the weights on the GPU: the CUDA context, the KV cache and the activations of a reply
REPLY_TOKENS = 128  # the longest reply by default (chat, Try it, a paused run)
# A model tuned on reasoning thinks before it answers (a line for the demo, pages for distilled reasoning): by
# default it gets this much more room, so that its answer is not cut off in its thinking.
THINKING_TOKENS = 384


def load(model_path: str | Path, strategy: str | None = None, result: str | Path | None = None, progress=None):
    """(model, tokenizer) on the CPU in fp32 (or CUDA when present), with a run's result applied."""
    import torch
    from transformers import AutoTokenizer

    if progress is not None:
        progress.update(None, "Loading the model…")

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    with _loading:
        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
        folder = weights_folder(model_path, strategy, result)
        free = torch.cuda.mem_get_info()[0] if device == "cuda" else 0
        if device == "cuda" and not fits(folder, free):
            adapter = adapter_of(model_path, strategy, result)
            if fits(folder, free, "nf4", experts_4bit=not experts_adapted(adapter)):
                if progress is not None:
                    progress.update(None, "Loading the model over a 4-bit base (it does not fit the GPU in 16 bits)…")
                return four_bit_model(model_path, strategy, result, dtype, device).eval(), tokenizer
            return streamed_model(model_path, strategy, result, dtype, device).eval(), tokenizer
        return trained_model(model_path, strategy, result, dtype).to(device).eval(), tokenizer


def room(thinks: bool, reply: int = REPLY_TOKENS) -> int:
    """The longest answer by default: `reply` tokens, and THINKING_TOKENS more for a model that thinks first."""
    return reply + (THINKING_TOKENS if thinks else 0)


def weights_folder(model_path, strategy: str | None, result) -> Path:
    """Where the model's weights are: the result itself for a whole-model run, else the base."""
    whole = result is not None and strategies.get(strategy or "lora").result == "model"
    return Path(result if whole else model_path)


def adapter_of(model_path, strategy: str | None, result) -> Path | None:
    """The run's adapter folder (None for a base, or a run that saved the whole model)."""
    folder = weights_folder(model_path, strategy, result)
    return None if result is None or folder == Path(result) else Path(result)


def fits(folder: Path, free_bytes: int, storage: str = "bf16", experts_4bit: bool = False) -> bool:
    """Whether the model in `folder` fits `free_bytes` of GPU memory with ROOM to answer, its weights stored as
    `storage` (memory_model.weight_bytes: "bf16", or "nf4" for a 4-bit base, with a mixture of experts' experts in
    4 bits too where `experts_4bit`)."""
    from core import memory_model as mm
    from core.model_shape import ModelShape

    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return mm.weight_bytes(ModelShape.from_config(config), storage, experts_4bit) + ROOM <= free_bytes


def experts_adapted(adapter: Path | None) -> bool:
    """Whether the adapter trained a mixture of experts' experts (peft's target_parameters)."""
    if adapter is None:
        return False
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return bool(config.get("target_parameters"))


def four_bit_model(model_path, strategy: str | None, result, dtype, device):
    """The trained model over a 4-bit base on `device`, as QLoRA loads it (core/strategies/qlora.py: the linear
    layers in 4 bits, and a mixture of experts' experts too where the adapter did not train them)."""
    adapter = adapter_of(model_path, strategy, result)
    qlora = strategies.get("qlora")
    base = qlora.load_model(weights_folder(model_path, strategy, result), dtype, device,
                            qlora.options({"experts": experts_adapted(adapter)}))
    return base if adapter is None else strategies.get(strategy or "lora").load(base, adapter)


def streamed_model(model_path, strategy: str | None, result, dtype, device):
    """The trained model with its decoder layers in RAM (or on NVMe when RAM is short, and then in 4-bit, as QLoRA
    trains) streaming to `device` one layer at a time; the rest, adapters included, on the device."""
    import psutil

    from core import causal_lm
    from core import memory_model as mm
    from core.model_shape import ModelShape
    from core.offload import install
    from core.strategies.lisa import decoder_layers

    folder = weights_folder(model_path, strategy, result)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    layers = mm.layer_weight_bytes(ModelShape.from_config(config), "bf16")
    short = layers + install.RAM_SPARE > psutil.virtual_memory().available
    settings = install.StreamSettings(quantize=short and str(device).startswith("cuda"))
    base = install.load_base(folder, dtype, device, settings, decoder_layers,
                             lambda where: causal_lm.from_pretrained(str(folder), dtype=dtype))
    streamer = install.install(base, decoder_layers, None)
    if adapter_of(model_path, strategy, result) is None:
        return base
    s = strategies.get(strategy or "lora")
    if not getattr(s, "use_dora", False):
        return s.load(base, result)
    # DoRA's adapters read each base weight's norm as they are made: the layers are bound to their host copies
    # while peft makes them (views of the RAM store, or of the layer files mapped into memory), then move over.
    with streamer.on_host():
        model = s.load(base, result)
    return model.to(device)


def trained_model(model_path: str | Path, strategy: str | None, result: str | Path | None, dtype):
    """The base with a run's result applied (an adapter on top), or the saved model itself when the
    strategy saved the whole model (full, LISA: no base needed); the plain base without a result."""
    from core import causal_lm

    if result is not None and not Path(result).is_dir():
        raise KnownError(f"{result}: the run has no saved result yet; let it finish or stop it to save one.")
    s = strategies.get(strategy or "lora") if result is not None else None
    model = causal_lm.from_pretrained(str(result if s and s.result == "model" else model_path), dtype=dtype)
    return s.load(model, result) if s and s.result == "adapter" else model


def messages(prompt: str | None, system: str | None = None, history: list[dict] | None = None) -> list[dict]:
    """The chat messages of a question: the system message, the turns before it, the question (none when the model
    goes on after tool results)."""
    return ([{"role": "system", "content": system}] if system else []) + list(history or []) + (
        [{"role": "user", "content": prompt}] if prompt is not None else [])


def prompt_text(tokenizer, prompt: str | None, system: str | None = None, history: list[dict] | None = None,
                tools: list[dict] | None = None) -> str:
    """What the model reads before its answer: the question after the turns before it, through its chat template,
    with the `tools` it may call written as training wrote them (core/data/tool_render.py)."""
    chat, tools = tool_render.written(tokenizer, messages(prompt, system, history), tools)
    return render_chat(tokenizer, chat, add_generation_prompt=True, tools=tools)


def reply(model, tokenizer, prompt: str | None, system: str | None = None, max_new_tokens: int = 128,
          temperature: float = 0.0, history: list[dict] | None = None, tools: list[dict] | None = None) -> str:
    """One answer; greedy unless a temperature is given (then sampled among the likeliest tokens: TOP_K, TOP_P).
    `history`: the turns before this one (user and assistant messages), for a conversation (core/conversation.py);
    `tools`: functions the model may call (its answer is then a call, which is shown, not made; `prompt` None
    asks for the answer after the results given to it).
    An answer that loops stops there and says so (core/repeat_stop.py)."""
    import torch

    from core import answer_parts, repeat_stop

    text = prompt_text(tokenizer, prompt, system, history, tools)
    enc = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    sample = temperature > 0
    looping = repeat_stop.criterion(enc["input_ids"].shape[1])
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=sample, use_cache=True,
                             temperature=temperature if sample else None, top_p=TOP_P if sample else None,
                             top_k=TOP_K if sample else None,
                             stopping_criteria=[looping],
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    answer = tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    answer = answer_parts.completed(text, answer)
    return "\n".join(filter(None, [answer, repeat_stop.NOTE])) if looping.fired else answer
