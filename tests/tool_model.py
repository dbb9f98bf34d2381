"""A tiny model that learned one tool-use conversation by heart: asked "What is 36 plus 7?" with the `add` tool it
calls add(a=36, b=7), and given the result 43 it answers "It is 43.". Shared by the call measure's tests and the
tool loop's (chat --result, a conversation giving results)."""

from __future__ import annotations

from pathlib import Path

from core.data.example import Example

TOOLS = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
# row(36, 7) as a conversation kept while trying the model has it, up to the result given to its call.
CALLED = [{"role": "user", "content": "What is 36 plus 7?"},
          {"role": "assistant", "content": "", "tool_calls": [
              {"type": "function", "id": "call00001", "function": {"name": "add", "arguments": {"a": 36, "b": 7}}}]},
          {"role": "tool", "content": "43", "name": "add", "tool_call_id": "call00001"}]


def row(a: int, b: int, source: str = "") -> Example:
    return Example(messages=[
        {"role": "user", "content": f"What is {a} plus {b}?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "add", "arguments": {"a": a, "b": b}}}]},
        {"role": "tool", "content": str(a + b)}, {"role": "assistant", "content": f"It is {a + b}."}],
        tools=TOOLS, source=source)


def train(tiny_model_dir: Path, out: Path) -> Path:
    """The tiny model trained on row(36, 7) until it knows it by heart, saved in `out` with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.data import tokenize

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    enc = tokenize.collate([tokenize.encode(row(36, 7, "learned"), tok, 4096)], tokenize.pad_id_of(tok))
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model(**enc).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if loss.item() < 0.02:
            break
    assert loss.item() < 0.05
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
